/**
 * What every subcommand is, as data: `arbiter help [COMMAND]`, `arbiter COMMAND --help`, the
 * Commands list of `arbiter --help` and the man page's COMMANDS section all come from here.
 * Adding a command means a row here and its entry in src/cli.ts.
 */
export interface CommandDoc {
  name: string;
  /** Synopsis lines, without the leading `arbiter `. */
  usage: string[];
  /** One line for the list of commands. */
  summary: string;
  /** Paragraphs. */
  description: string[];
  /** Flags and what they do. */
  options: [flags: string, doc: string][];
}

/** How every control command finds its arbiter. */
const SELECT: [string, string][] = [
  ['-n, --name NAME', 'The arbiter of that name (`procName`): its socket `NAME.sock` in the runtime directory.'],
  ['-p, --pidfile FILE', 'The arbiter whose pid that file holds.'],
  ['--control-socket PATH', 'The arbiter listening on that control socket.'],
  ['-c, --config FILE', 'Take procName, controlSocket or pidfile from this config file (the one found in the current directory is read otherwise).'],
];
const SELECT_NOTE = 'With none of -n, -p or --control-socket (and nothing in a config file), the command talks to the one arbiter this user runs, and refuses when there are several.';

export const COMMANDS: readonly CommandDoc[] = [
  {
    name: 'status',
    usage: ['status [--json]', 'status [--json] -n NAME | -p PIDFILE | --control-socket PATH'],
    summary: 'list the running arbiters, or show one and its workers',
    description: [
      'With no argument, lists every running arbiter of this user, one row each: name, master pid, uptime, workers serving of the target, worker class, app, listeners. Sockets left behind by masters that are gone are removed on the way.',
      'With -n, -p or --control-socket, shows that arbiter: its master and every worker with pid, age, state, uptime, requests or tasks, in-flight work, memory and the last heartbeat.',
    ],
    options: [['--json', 'Print JSON: an array of status objects for the list, or the one status object of the arbiter selected.'], ...SELECT],
  },
  {
    name: 'reload',
    usage: ['reload [-n NAME | -p PIDFILE | --control-socket PATH]'],
    summary: 'reload config and code (as HUP) and wait for the outcome',
    description: [
      'Re-reads the config file, starts new workers with the new code and settings, and retires the old ones as the new ones serve. Waits until the new workers serve, then prints which workers were replaced and which settings changed, and exits 0.',
      'When the new code or config cannot boot, the old workers keep serving, and the command prints the reason (and the error\'s stack) and exits 1.',
      `${SELECT_NOTE} An arbiter found only through its pidfile, with no control socket, is sent HUP, and the outcome is not waited for.`,
    ],
    options: SELECT,
  },
  {
    name: 'scale',
    usage: ['scale N | +N | -N [-n NAME | -p PIDFILE | --control-socket PATH]'],
    summary: 'set the number of workers, or add or remove some',
    description: [
      '`N` sets the target, `+N` and `-N` change it (as N times TTIN or TTOU). Waits until the target count of workers serves; workers beyond it leave gracefully, the oldest first.',
      SELECT_NOTE,
    ],
    options: SELECT,
  },
  {
    name: 'stop',
    usage: ['stop [-n NAME | -p PIDFILE | --control-socket PATH]'],
    summary: 'stop gracefully (as TERM) and wait until the master exits',
    description: ['Workers finish what they are serving within gracefulTimeout; the command exits 0 once the master is gone.', SELECT_NOTE],
    options: SELECT,
  },
  {
    name: 'upgrade',
    usage: ['upgrade [-n NAME | -p PIDFILE | --control-socket PATH]'],
    summary: 'replace the master itself (USR2 hand-over) and wait for the outcome',
    description: [
      'Starts a new master from the current binary and code, which inherits every listener; once it serves it takes over the pidfile and the control socket, and the old master stops gracefully. Exits 0 once the old master is gone.',
      'When the new master cannot start, the old one keeps serving (and its pidfile and socket), and the command prints the reason and exits 1.',
      SELECT_NOTE,
    ],
    options: SELECT,
  },
  {
    name: 'top',
    usage: ['top [-n NAME | -p PIDFILE | --control-socket PATH]'],
    summary: 'a live view of the workers, refreshed every second',
    description: [
      'Shows every worker with pid, state, age, requests (or tasks) per second, work in flight, memory, CPU and event-loop delay, the restarts by reason and the master\'s uptime, refreshed every second. `q` or Ctrl-C quits and leaves the terminal as it was.',
      SELECT_NOTE,
    ],
    options: SELECT,
  },
  {
    name: 'enqueue',
    usage: ['enqueue NAME [JSON_PAYLOAD|-] [--delay MS] [--max-retries N] [--id ID]'],
    summary: 'add a task to a queue of task workers',
    description: ['Prints the task id once the broker holds the task durably. `-` reads the payload from stdin.'],
    options: [
      ['--delay MS', 'Run it no earlier than this many milliseconds from now.'],
      ['--max-retries N', 'Retries after a failed attempt, for this task.'],
      ['--id ID', 'The task id (default: a random UUID).'],
      ['--broker URL, --queue NAME', 'Where (default: ARBITER_BROKER, ARBITER_QUEUE, the config file, spool:.arbiter-spool, default).'],
      ['-c, --config FILE', 'Take broker and queue from this config file.'],
    ],
  },
  {
    name: 'dlq',
    usage: ['dlq list [--json] [--limit N]', 'dlq retry [ID...]', 'dlq purge [ID...]', 'dlq stats [--json]'],
    summary: 'dead tasks and queue depth',
    description: [
      '`list` shows dead tasks (id, name, attempts, when, last error); `retry` sends them back to their queue and `purge` deletes them (every dead task when no id is given); `stats` shows the queue depth: ready, delayed, in flight, dead.',
    ],
    options: [
      ['--json', 'Print JSON (list, stats).'],
      ['--broker URL, --queue NAME, --dlq NAME', 'Where (default: ARBITER_BROKER, ARBITER_QUEUE, ARBITER_DLQ, the config file, spool:.arbiter-spool, default, QUEUE:dead).'],
      ['-c, --config FILE', 'Take them from this config file.'],
    ],
  },
  {
    name: 'help',
    usage: ['help [COMMAND]'],
    summary: 'this help, or a command\'s',
    description: ['`arbiter COMMAND --help` shows the same.'],
    options: [],
  },
];

export function commandDoc(name: string): CommandDoc | undefined {
  return COMMANDS.find((c) => c.name === name);
}
