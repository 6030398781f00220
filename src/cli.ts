/**
 * `arbiter`: the operator commands, or the server. A command is found by its first word
 * (src/commands/catalog.ts describes each); anything else is the server's command line
 * (src/boot.ts). Commands are loaded on demand: `arbiter status` does not load the master.
 * `arbiter help COMMAND` and `arbiter COMMAND --help` print the command's help.
 *
 * Exit codes: 0 clean stop, 1 runtime failure (including a bind that fails), 2 usage or
 * config error, 3 the app cannot be loaded or a worker failed to boot.
 */
import { startCheckerAhead } from './appcheck.js';
import { MASTER_SIGNALS, StartSignals } from './start-signals.js';
import { endQuietStart } from './core/v8-at-start.js';

type Command = (argv: string[]) => Promise<number>;

const control = async () => (await import('./commands/control.js')).controlCommand;
const tasks = async () => (await import('./commands/tasks.js')).taskCommand;

const COMMANDS: Record<string, () => Promise<Command>> = {
  status: control,
  scale: control,
  reload: control,
  stop: control,
  upgrade: control,
  top: async () => (await import('./commands/top.js')).topCommand,
  enqueue: tasks,
  result: tasks,
  dlq: tasks,
  help: async () => help,
};

async function help(argv: string[]): Promise<number> {
  const { helpFor } = await import('./help.js');
  const name = argv[1] === '--help' || argv[1] === '-h' ? 'help' : argv[1];
  const text = helpFor(name);
  if (text === null) {
    const { fatalLine } = await import('./core/logging.js');
    fatalLine(`unknown command "${name}": commands are ${Object.keys(COMMANDS).join(', ')} (arbiter help)`);
    return 2;
  }
  process.stdout.write(text);
  return 0;
}

/** `--help` or `-h` among a command's arguments (before a `--`). */
function asksHelp(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/**
 * `takeEarlySignals`: bin/arbiter notes signals from its first line on; this stops that and
 * says which came.
 */
export async function main(argv: string[] = process.argv.slice(2), takeEarlySignals: () => NodeJS.Signals[] = () => []): Promise<number> {
  const name = argv[0];
  const command = name !== undefined && Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command) {
    // A command's own Ctrl-C (`arbiter top`) is its own business.
    takeEarlySignals();
    // Only the server's start is run quiet: `arbiter top` runs as long as it is watched.
    endQuietStart();
    if (name !== 'help' && asksHelp(argv.slice(1))) return help(['help', name!]);
    return (await command())(argv);
  }
  // The server: handlers before anything else is loaded, so a TERM in its first moments
  // cannot kill it with Node's default action (src/start-signals.ts).
  const signals = new StartSignals(MASTER_SIGNALS, takeEarlySignals);
  // The app check's process starts now, while the master loads (src/appcheck.ts).
  if (!asksHelp(argv)) startCheckerAhead();
  const { serve } = await import('./boot.js');
  return serve(argv, signals);
}
