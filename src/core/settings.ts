/**
 * The settings table: every setting arbiter has, declared once.
 *
 * This one table drives the CLI and `--help` (src/argv.ts), config-file and env validation
 * (src/config.ts), `--print-config`, the man page and the README table (src/docs.ts), the
 * `Settings` type both processes use and the `ArbiterConfig` type users get from
 * `defineConfig()`. Adding a setting means adding a row here and nothing else.
 */
import { SettingError } from './errors.js';
import { parseBytes } from './units.js';
import { brokerUrlProblem } from './brokers/url.js';
import { closest } from './suggest.js';

export { closest };

/** What a `procName` may be: it names a file (NAME.sock) and is typed on command lines. */
export function nameProblem(name: string): string | null {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name) ? null : 'a name of 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit';
}

export type Section =
  | 'app'
  | 'server'
  | 'workers'
  | 'http'
  | 'tls'
  | 'process'
  | 'logging'
  | 'reload'
  | 'task'
  | 'control'
  | 'config'
  | 'hooks';

export const SECTION_TITLES: Record<Section, string> = {
  app: 'Application',
  server: 'Listening sockets',
  workers: 'Workers',
  http: 'HTTP limits',
  tls: 'TLS',
  process: 'Process',
  logging: 'Logging',
  reload: 'Code reload',
  task: 'Task workers',
  control: 'Control and metrics',
  config: 'Config file and checks',
  hooks: 'Hooks (config file only)',
};

/** How a raw value (a CLI word, an env string, a config-file value) becomes a typed one. */
export type Kind =
  | 'string'
  | 'int'
  | 'seconds'
  | 'boolean'
  | 'enum'
  | 'list'
  | 'bytes'
  | 'workers'
  | 'env'
  | 'octal'
  | 'hook'
  | 'pools'
  | 'schedule';

export interface SettingSpec {
  name: string;
  kind: Kind;
  default: unknown;
  section: Section;
  doc: string;
  /** Short CLI flag, without the dash (`b` for `-b`). */
  short?: string;
  /** Further long flags, as Gunicorn spells them (`keep-alive`, `pid`). */
  aliases?: string[];
  /** Placeholder for help and the man page. */
  meta?: string;
  choices?: readonly string[];
  /** Smallest accepted number, for int and seconds. */
  min?: number;
  /** May be null (unset) — e.g. a pidfile path nobody asked for. */
  nullable?: boolean;
  /** False for settings that only make sense in a config file (hooks). */
  cli?: boolean;
  /** Which process runs a hook and with what, for the docs. */
  hookSignature?: string;
  /** Strings: leading and trailing whitespace is dropped (names people paste). */
  trim?: boolean;
  /** Lists: each item given may itself be a comma-separated list (`--queue high,default`). */
  commas?: boolean;
  /** A check beyond the kind's: returns what was expected when `value` is not acceptable. */
  check?: (value: never) => string | null;
  /**
   * May be set per pool, inside `pools: { NAME: {...} }` (SPEC §10): what one pool of workers
   * runs and how its workers are treated. Rows without it are the master's own (its
   * process, its logs, its control socket) and are set once, at the top level.
   */
  pool?: boolean;
}

/** Hooks about one worker may be set per pool; the master's own (starting, reload, exit) may not. */
const MASTER_WIDE_HOOKS = new Set(['onStarting', 'onReload', 'whenReady', 'preExec', 'onExit']);

const GUNICORN_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"';

export const SETTINGS = [
  // app
  { name: 'app', pool: true, kind: 'string', default: null, nullable: true, trim: true, section: 'app', meta: 'MODULE[:EXPORT]',
    doc: 'The app to serve: a file (.js .mjs .cjs .ts .mts, extension optional) or package, and the export to use (`default` when omitted). Also the first positional argument.' },
  { name: 'interface', pool: true, kind: 'enum', default: 'auto', choices: ['auto', 'node', 'fetch', 'listen'], section: 'app',
    doc: 'How to call the app: `node` (req, res) listener, `fetch` (Request) => Response, `listen` (a script that creates its server and calls listen() itself; -k http only), or `auto` to pick by shape.' },
  { name: 'chdir', kind: 'string', default: null, nullable: true, section: 'app', meta: 'DIR',
    doc: 'Change to this directory before loading the app; the app module is resolved from here.' },
  { name: 'env', pool: true, kind: 'env', default: {}, short: 'e', section: 'app', meta: 'KEY=VALUE',
    doc: 'Set an environment variable in the master and workers (repeatable).' },

  // server
  { name: 'bind', pool: true, kind: 'list', default: ['127.0.0.1:8000'], short: 'b', section: 'server', meta: 'ADDRESS',
    doc: 'Where to listen (repeatable): `HOST:PORT`, `[V6]:PORT`, `PORT`, `unix:PATH`, `fd://N`. With no bind and `PORT` set, `0.0.0.0:$PORT`.' },
  { name: 'backlog', pool: true, kind: 'int', default: 2048, min: 1, section: 'server', meta: 'INT',
    doc: 'Maximum number of pending connections queued on each listener.' },
  { name: 'reusePort', pool: true, kind: 'boolean', default: false, section: 'server',
    doc: 'Set SO_REUSEPORT on TCP listeners (needs Node >= 22.12; ignored with a warning before).' },

  // workers
  { name: 'workers', pool: true, kind: 'workers', default: 1, short: 'w', section: 'workers', meta: 'INT|auto',
    doc: 'Number of worker processes: a number, `auto` (the CPUs the container may use), or in a config file `(cpus) => n`. With no value and `WEB_CONCURRENCY` set, that.' },
  { name: 'workerClass', pool: true, kind: 'string', default: 'http', trim: true, short: 'k', section: 'workers', meta: 'CLASS',
    doc: 'Worker class: `http` (Node\'s server), `h11` (arbiter\'s own HTTP/1.1 engine), `task` (task consumer), or a module path exporting a custom class.' },
  { name: 'workerConnections', pool: true, kind: 'int', default: 1000, min: 1, section: 'workers', meta: 'INT',
    doc: 'Most connections a worker holds at once. At the cap it closes idle keep-alive connections to make room, then stops accepting, so that new connections wait in the backlog for it or another worker.' },
  { name: 'timeout', pool: true, kind: 'seconds', default: 30, min: 0, short: 't', section: 'workers', meta: 'SECONDS',
    doc: 'A worker whose event loop has been silent this long is killed and replaced (0 disables).' },
  { name: 'gracefulTimeout', pool: true, kind: 'seconds', default: 30, min: 0, section: 'workers', meta: 'SECONDS',
    doc: 'On a graceful stop, how long workers may finish in-flight work before they are killed.' },
  { name: 'keepalive', pool: true, kind: 'seconds', default: 5, min: 0, section: 'workers', aliases: ['keep-alive'], meta: 'SECONDS',
    doc: 'How long an idle keep-alive connection stays open (0 closes after each response).' },
  { name: 'maxRequests', pool: true, kind: 'int', default: 0, min: 0, section: 'workers', meta: 'INT',
    doc: 'Retire a worker gracefully after this many requests or tasks (0 = never).' },
  { name: 'maxRequestsJitter', pool: true, kind: 'int', default: 0, min: 0, section: 'workers', meta: 'INT',
    doc: 'Add a random 0..N to maxRequests per worker so they do not all retire at once.' },
  { name: 'maxWorkerMemory', pool: true, kind: 'bytes', default: 0, section: 'workers', meta: 'BYTES',
    doc: 'Retire a worker gracefully when its RSS passes this (`512MB`, `1GiB`; 0 = off).' },
  { name: 'heartbeatInterval', pool: true, kind: 'seconds', default: 1, min: 0.05, section: 'workers', meta: 'SECONDS',
    doc: 'How often workers report liveness and counters to the master.' },
  { name: 'nodeArgs', pool: true, kind: 'list', default: [], section: 'workers', meta: 'FLAG',
    doc: 'Extra `node` flags for worker processes, e.g. `--max-old-space-size=512` (repeatable).' },
  { name: 'maxRestarts', pool: true, kind: 'int', default: 5, min: 0, section: 'workers', meta: 'INT',
    doc: 'A pool is degraded (logged, in status and metrics) when more than this many of its workers die unexpectedly (crash, timeout) within `restartWindow` (0 = never).' },
  { name: 'restartWindow', pool: true, kind: 'seconds', default: 60, min: 1, section: 'workers', meta: 'SECONDS',
    doc: 'The window `maxRestarts` counts deaths in.' },
  { name: 'exitOnDegraded', pool: true, kind: 'boolean', default: false, section: 'workers',
    doc: 'When a pool becomes degraded, stop the arbiter gracefully and exit 1, so an orchestrator replaces the container.' },
  { name: 'pools', kind: 'pools', default: null, nullable: true, cli: false, section: 'workers', meta: '{ NAME: {...} }',
    doc: 'Several pools under one master, each its own app, class, workers, bind and worker policy over the top-level values (config file only; see "Pools").' },

  // http
  { name: 'limitRequestLine', pool: true, kind: 'int', default: 4094, min: 0, section: 'http', meta: 'BYTES',
    doc: 'Longest request line accepted (414 beyond; 0 = Node\'s own limit only).' },
  { name: 'limitRequestFields', pool: true, kind: 'int', default: 100, min: 0, section: 'http', meta: 'INT',
    doc: 'Most header fields accepted in a request (431 beyond).' },
  { name: 'limitRequestFieldSize', pool: true, kind: 'int', default: 8190, min: 0, section: 'http', aliases: ['limit-request-field_size'], meta: 'BYTES',
    doc: 'Longest header field line accepted (431 beyond).' },
  { name: 'headerTimeout', pool: true, kind: 'seconds', default: 20, min: 0, section: 'http', meta: 'SECONDS',
    doc: 'A connection that has not sent a complete request head this long after it opened, or after its previous response, gets 408 and is closed; a trickle of bytes does not extend it (0 = no limit).' },
  { name: 'limitRequestBody', pool: true, kind: 'bytes', default: 0, section: 'http', meta: 'BYTES',
    doc: 'Largest request body the h11 worker accepts (413 beyond; 0 = no limit).' },
  { name: 'forwardedAllowIps', pool: true, kind: 'list', default: ['127.0.0.1', '::1'], section: 'http', meta: 'IPS',
    doc: 'Front-end addresses trusted to set X-Forwarded-For/-Proto (`*` trusts all); used for the access log\'s remote address.' },

  // tls
  { name: 'certfile', pool: true, kind: 'string', default: null, nullable: true, section: 'tls', meta: 'FILE',
    doc: 'TLS certificate (PEM); with keyfile, listeners speak HTTPS.' },
  { name: 'keyfile', pool: true, kind: 'string', default: null, nullable: true, section: 'tls', meta: 'FILE',
    doc: 'TLS private key (PEM).' },

  // process
  { name: 'procName', kind: 'string', default: null, nullable: true, trim: true, check: nameProblem, short: 'n', section: 'process', aliases: ['name'], meta: 'NAME',
    doc: 'This arbiter\'s name: its control socket `NAME.sock` in the runtime directory, the process titles, and what `arbiter status` lists and `-n NAME` picks. Default: from the app (`hello` for `examples/hello.js:handler`), with `-2`, `-3` and so on added while that name is taken.' },
  { name: 'pidfile', kind: 'string', default: null, nullable: true, short: 'p', section: 'process', aliases: ['pid'], meta: 'FILE',
    doc: 'Write the master\'s pid here; removed on exit (renamed `*.oldbin` during a USR2 upgrade).' },
  { name: 'daemon', kind: 'boolean', default: false, short: 'D', section: 'process',
    doc: 'Detach from the terminal and run in the background.' },
  { name: 'user', pool: true, kind: 'string', default: null, nullable: true, short: 'u', section: 'process', meta: 'USER',
    doc: 'Run workers as this user (name or uid); the master keeps its privileges to bind.' },
  { name: 'group', pool: true, kind: 'string', default: null, nullable: true, short: 'g', section: 'process', meta: 'GROUP',
    doc: 'Run workers as this group (name or gid).' },
  { name: 'umask', kind: 'octal', default: null, nullable: true, short: 'm', section: 'process', meta: 'OCTAL',
    doc: 'File mode creation mask for the master and workers, e.g. `0o027` or `027`.' },

  // logging
  { name: 'logLevel', kind: 'enum', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'], section: 'logging', meta: 'LEVEL',
    doc: 'Lowest level of error-log lines written.' },
  { name: 'errorLog', kind: 'string', default: '-', section: 'logging', aliases: ['error-logfile', 'log-file'], meta: 'FILE',
    doc: 'Where the master writes the one log (`-` = stderr): its own lines and every worker\'s, with the app\'s stdout and stderr tagged by worker. JSON lines; readable one-line events on a terminal. A daemon (`-D`) without it logs to `NAME.log` in the runtime directory.' },
  { name: 'accessLog', pool: true, kind: 'string', default: null, nullable: true, section: 'logging', aliases: ['access-logfile'], meta: 'FILE',
    doc: 'Access log file (`-` = stdout); none when unset.' },
  { name: 'accessLogFormat', pool: true, kind: 'string', default: GUNICORN_ACCESS_FORMAT, section: 'logging', aliases: ['access-logformat'], meta: 'FORMAT',
    doc: 'Access log line: Gunicorn atoms such as `%(h)s %(r)s %(s)s %(D)s %({x-request-id}i)s`, or `json`.' },

  // reload
  { name: 'reload', kind: 'boolean', default: false, section: 'reload',
    doc: 'Watch the app\'s source files and reload workers (as HUP does) when they change. For development.' },
  { name: 'reloadExtraFiles', kind: 'list', default: [], section: 'reload', aliases: ['reload-extra-file'], meta: 'PATH',
    doc: 'Further files or directories that trigger a reload (repeatable).' },

  // task
  { name: 'broker', pool: true, kind: 'string', default: 'spool:.arbiter-spool', check: brokerUrlProblem, section: 'task', meta: 'URL',
    doc: 'Task broker: `spool:PATH` (embedded, durable on one machine), `redis://HOST:PORT/DB` (Redis Streams; `rediss://` for TLS), or `redis+sentinel://H1:P1,H2:P2/MASTER/DB` (a primary that Sentinel fails over; `?wait=1` makes enqueue wait for a replica).' },
  { name: 'queue', pool: true, kind: 'list', commas: true, default: ['default'], section: 'task', meta: 'NAME',
    doc: 'Queues the task workers consume, in priority order (`high,default`): a worker takes from the first while it has tasks. Producers and `arbiter enqueue` need one.' },
  { name: 'concurrency', pool: true, kind: 'int', default: 10, min: 1, section: 'task', meta: 'INT',
    doc: 'Tasks each worker runs at once.' },
  { name: 'maxRetries', pool: true, kind: 'int', default: 3, min: 0, section: 'task', meta: 'INT',
    doc: 'Retries after a failed attempt, with exponential backoff and jitter, before the dead-letter queue.' },
  { name: 'dlq', pool: true, kind: 'string', default: null, nullable: true, section: 'task', meta: 'NAME',
    doc: 'Dead-letter queue name (default `QUEUE:dead`).' },
  { name: 'taskTimeout', pool: true, kind: 'seconds', default: 0, min: 0, section: 'task', meta: 'SECONDS',
    doc: 'Abort a task\'s signal after this long and count it as failed (0 = no limit).' },
  { name: 'resultTtl', pool: true, kind: 'seconds', default: 0, min: 0, section: 'task', meta: 'SECONDS',
    doc: 'Keep each task\'s return value (JSON) or final error this long, for `result()` and `arbiter result ID` (0 = keep none).' },
  { name: 'maxResultSize', pool: true, kind: 'bytes', default: 1048576, section: 'task', meta: 'BYTES',
    doc: 'Largest result kept (as JSON); a bigger one is kept as an error that says so.' },
  { name: 'schedule', kind: 'schedule', default: [], cli: false, section: 'task', meta: '[{ cron, task, ... }]',
    doc: 'Tasks the master enqueues on a cron schedule: `{ cron, task, payload?, queue?, tz?, catchUp?, name? }` (config file only; see "Schedules").' },

  // control
  { name: 'controlSocket', kind: 'string', default: null, nullable: true, section: 'control', meta: 'PATH',
    doc: 'The master\'s control socket (mode 0600) for `arbiter status`, `reload`, `scale`, `stop`, `upgrade` and `top`. Unset: `NAME.sock` in the per-user runtime directory (`$XDG_RUNTIME_DIR/arbiter`, else `/tmp/arbiter-UID`, mode 0700).' },
  { name: 'metricsBind', kind: 'string', default: null, nullable: true, section: 'control', meta: 'ADDRESS',
    doc: 'Serve Prometheus metrics from the master at `HOST:PORT/metrics`; a bare `PORT` listens on 127.0.0.1 only (give `0.0.0.0:PORT` for a remote scraper).' },

  // config
  { name: 'config', kind: 'string', default: null, nullable: true, short: 'c', section: 'config', meta: 'FILE',
    doc: 'Config file (.ts .js .mjs .cjs .json .yaml); otherwise `arbiter.conf.*`, `arbiter.config.*`, `.arbiterrc*` or `package.json#arbiter` is searched for.' },
  { name: 'checkConfig', kind: 'boolean', default: false, section: 'config',
    doc: 'Load the config and the app, bind nothing, and exit 0 (fine) or 2 (with the reason).' },
  { name: 'printConfig', kind: 'boolean', default: false, section: 'config',
    doc: 'Print every effective setting and where it came from (default, file, env, cli), then exit.' },

  // hooks — config file only
  ...hooks([
    ['onStarting', 'master', '(arbiter) — before the master binds and forks'],
    ['onReload', 'master', '(arbiter) — on HUP, before new workers start'],
    ['whenReady', 'master', '(arbiter) — once the first workers serve'],
    ['preFork', 'master', '(arbiter, worker) — before a worker is spawned'],
    ['postFork', 'worker', '(worker) — in the new worker, before the app loads'],
    ['postWorkerInit', 'worker', '(worker) — in the worker, after the app loaded'],
    ['workerInt', 'worker', '(worker) — in the worker, on INT or QUIT'],
    ['workerAbort', 'master', '(arbiter, worker, report) — when a worker is killed for timeout (it cannot run code itself)'],
    ['preExec', 'master', '(arbiter) — before a USR2 re-exec starts the new master'],
    ['childExit', 'master', '(arbiter, worker) — after a worker exited'],
    ['workerExit', 'worker', '(worker) — in the worker, just before it exits'],
    ['nworkersChanged', 'master', '(arbiter, newValue, oldValue) — when the target worker count changes'],
    ['onExit', 'master', '(arbiter) — just before the master exits'],
    ['preRequest', 'worker', '(worker, req) — before each HTTP request is handed to the app'],
    ['postRequest', 'worker', '(worker, req, res, durationMs) — after each HTTP response finished'],
  ]),
] as const satisfies readonly SettingSpec[];

function hooks<const N extends string>(list: [N, 'master' | 'worker', string][]) {
  return list.map(([name, where, sig]) => ({
    name,
    kind: 'hook' as const,
    default: null,
    nullable: true as const,
    section: 'hooks' as const,
    cli: false as const,
    pool: !MASTER_WIDE_HOOKS.has(name),
    hookSignature: sig,
    doc: `Runs in the ${where}: ${sig.replace(/^\([^)]*\) — /, '')}.`,
  }) satisfies SettingSpec);
}

export type SettingName = (typeof SETTINGS)[number]['name'];
export const SETTING_NAMES: readonly string[] = SETTINGS.map((s) => s.name);
export const BY_NAME: ReadonlyMap<string, SettingSpec> = new Map(SETTINGS.map((s) => [s.name, s as SettingSpec]));
export const HOOK_NAMES = SETTINGS.filter((s) => s.kind === 'hook').map((s) => s.name);

// ---------------------------------------------------------------------------------------
// Names in each face of the table.

export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}
export function envName(name: string): string {
  return 'ARBITER_' + name.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
}
export function cliFlags(s: SettingSpec): string[] {
  const flags = [`--${kebab(s.name)}`, ...(s.aliases ?? []).map((a) => `--${a}`)];
  return s.short ? [`-${s.short}`, ...flags] : flags;
}

// ---------------------------------------------------------------------------------------
// Typed values.

export type Hook = (...args: any[]) => unknown;
export type WorkersSpec = number | 'auto' | ((cpus: number) => number);

/** One entry of `schedule`: the master enqueues `task` with `payload` at every tick of `cron`. */
export interface ScheduleEntry {
  /** Five fields (minute precision) or six (the first is seconds), as cron and croner read them. */
  cron: string;
  /** The task name to enqueue. */
  task: string;
  /** JSON payload of every run (default null). */
  payload?: unknown;
  /** Queue to enqueue on (default: the first of the top-level `queue`). */
  queue?: string;
  /** IANA time zone the expression is read in (default: the master's, usually UTC in containers). */
  tz?: string;
  /** On start, enqueue once the latest run missed while no arbiter was up (default false). */
  catchUp?: boolean;
  /** Names the schedule in status and logs and keys its state; default `TASK@CRON`. */
  name?: string;
}

/** What each kind of row holds once parsed. */
interface KindTypes {
  string: string;
  int: number;
  seconds: number;
  boolean: boolean;
  list: string[];
  bytes: number;
  workers: WorkersSpec;
  env: Record<string, string>;
  octal: number;
  hook: Hook;
  /** Pool name → that pool's own values, parsed by their rows (see `PoolConfig` for the typed view). */
  pools: Record<string, Partial<Record<string, unknown>>>;
  schedule: ScheduleEntry[];
}
type ValueOf<R> = R extends { kind: 'enum'; choices: readonly (infer C)[] }
  ? C
  : R extends { kind: infer K extends keyof KindTypes }
    ? KindTypes[K]
    : never;
type Typed<R> = R extends { nullable: true } ? ValueOf<R> | null : ValueOf<R>;
type Row = (typeof SETTINGS)[number];

/** The resolved settings, as the master and workers see them: one field per row, typed by its kind. */
export type Settings = { -readonly [R in Row as R['name']]: Typed<R> };

/** The settings a worker sees: `workers` resolved to a count, hooks left in the config file. */
export type WorkerSettings = Omit<Settings, 'workers'> & { workers: number };

/** The settings rows that may be set per pool. */
type PoolRow = Extract<Row, { pool: true }>;
type PoolName = PoolRow['name'];

/** Loosened where a config file may write a value another way (`'512MB'`, a comma list). */
type Loose = {
  maxWorkerMemory?: number | string;
  maxResultSize?: number | string;
  umask?: number | string | null;
  queue?: string | string[];
  bind?: string | string[];
};

/** What one pool may set: the per-pool rows, each optional; the rest comes from the top level. */
export type PoolConfig = Partial<Omit<Pick<Settings, PoolName>, keyof Loose>> & Pick<Loose, Extract<keyof Loose, PoolName>>;

/** What a config file may contain: any subset of the settings, hooks typed loosely. */
export type ArbiterConfig = Partial<Omit<Settings, keyof Loose | 'pools'>> & Loose & {
  pools?: Record<string, PoolConfig> | null;
};

export const DEFAULTS: Settings = Object.fromEntries(
  SETTINGS.map((s) => [s.name, structuredClone(s.default)]),
) as unknown as Settings;

// ---------------------------------------------------------------------------------------
// Parsing and validation. Every failure is one line naming the setting, the value and
// what was expected.


function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'function') return 'a function';
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function expected(s: SettingSpec, value: unknown, what: string, origin: string): SettingError {
  return new SettingError(`invalid value ${show(value)} for ${s.name} (${origin}): expected ${what}`);
}

/**
 * Turn a raw value into the setting's typed value. `raw` is a string from the CLI or the
 * environment, or any JSON-ish value from a config file; `origin` names where it came from
 * for the message ("--workers", "ARBITER_WORKERS", "arbiter.conf.ts").
 */
export function parseValue(s: SettingSpec, raw: unknown, origin: string): unknown {
  if (raw === null && s.nullable) return null;
  const fromText = typeof raw === 'string';
  switch (s.kind) {
    case 'string': {
      if (typeof raw !== 'string' || raw === '') throw expected(s, raw, 'a non-empty string', origin);
      const text = s.trim ? raw.trim() : raw;
      const problem = s.check?.(text as never);
      if (problem) throw expected(s, raw, problem, origin);
      return text;
    }
    case 'int': {
      const n = fromText && /^\s*\d+\s*$/.test(raw) ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < (s.min ?? 0))
        throw expected(s, raw, `a whole number >= ${s.min ?? 0}`, origin);
      return n;
    }
    case 'seconds': {
      const n = fromText && /^\s*\d+(\.\d+)?\s*$/.test(raw) ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isFinite(n) || n < (s.min ?? 0))
        throw expected(s, raw, `a number of seconds >= ${s.min ?? 0}`, origin);
      return n;
    }
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (fromText && /^(1|true|yes|on)$/i.test(raw)) return true;
      if (fromText && /^(0|false|no|off)$/i.test(raw)) return false;
      throw expected(s, raw, 'true or false', origin);
    case 'enum':
      if (typeof raw !== 'string' || !s.choices!.includes(raw))
        throw expected(s, raw, `one of ${s.choices!.join(', ')}`, origin);
      return raw;
    case 'list': {
      let items = Array.isArray(raw) ? raw : fromText ? splitList(raw) : null;
      if (items && s.commas) items = items.flatMap((x) => (typeof x === 'string' ? splitList(x) : [x]));
      if (!items || !items.every((x) => typeof x === 'string' && x !== ''))
        throw expected(s, raw, 'a list of strings', origin);
      return items;
    }
    case 'bytes':
      try {
        return parseBytes(raw as string | number);
      } catch {
        throw expected(s, raw, 'a size in bytes such as 536870912, 512MB or 1GiB', origin);
      }
    case 'workers': {
      if (raw === 'auto' || typeof raw === 'function') return raw;
      const n = fromText && /^\s*\d+\s*$/.test(raw) ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1)
        throw expected(s, raw, 'a whole number >= 1, "auto", or (in a config file) a function of the CPU count', origin);
      return n;
    }
    case 'env': {
      const pairs = Array.isArray(raw) ? raw : fromText ? [raw] : null;
      if (pairs) {
        const out: Record<string, string> = {};
        for (const p of pairs) {
          const m = typeof p === 'string' ? /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(p) : null;
          if (!m) throw expected(s, p, 'KEY=VALUE', origin);
          out[m[1]!] = m[2]!;
        }
        return out;
      }
      if (raw && typeof raw === 'object' && Object.values(raw).every((v) => typeof v === 'string'))
        return { ...(raw as Record<string, string>) };
      throw expected(s, raw, 'KEY=VALUE pairs or an object of strings', origin);
    }
    case 'octal': {
      const n = typeof raw === 'number' ? raw : fromText && /^\s*(0o?)?[0-7]{1,4}\s*$/i.test(raw) ? parseInt(raw.trim().replace(/^0o/i, ''), 8) : NaN;
      if (!Number.isInteger(n) || n < 0 || n > 0o777) throw expected(s, raw, 'an octal mode such as 027 or 0o027', origin);
      return n;
    }
    case 'hook':
      if (typeof raw !== 'function') throw expected(s, raw, 'a function', origin);
      return raw;
    case 'pools':
      return parsePools(s, raw, origin);
    case 'schedule':
      return parseSchedule(s, raw, origin);
  }
}

// ---------------------------------------------------------------------------------------
// Pools and schedules: values made of further values, each checked where it stands.

/** The rows a pool may set, for "did you mean" inside a pool. */
export const POOL_SETTING_NAMES: readonly string[] = SETTINGS.filter((s) => (s as SettingSpec).pool).map((s) => s.name);
const POOL_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && typeof v !== 'function';
}

function parsePools(s: SettingSpec, raw: unknown, origin: string): Settings['pools'] {
  if (!isPlainObject(raw) || Object.keys(raw).length === 0)
    throw expected(s, raw, 'an object of pools, e.g. { web: { workerClass: "h11", bind: ["0.0.0.0:8000"] }, tasks: { workerClass: "task" } }', origin);
  const out: Settings['pools'] = {};
  for (const [name, layer] of Object.entries(raw)) {
    if (!POOL_NAME.test(name))
      throw new SettingError(`invalid pool name ${show(name)} in ${origin}: expected 1-64 letters, digits, _ or -, starting with a letter or digit`);
    const where = `pools.${name} in ${origin}`;
    if (!isPlainObject(layer)) throw new SettingError(`invalid value ${show(layer)} for pools.${name} (${origin}): expected an object of settings`);
    const parsed: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(layer)) {
      const spec = BY_NAME.get(key);
      if (!spec) throw unknownSetting(key, where, POOL_SETTING_NAMES);
      if (!spec.pool) throw new SettingError(`setting "${key}" cannot be set per pool (${where}): it is the master's own; set it at the top level`);
      if (value === undefined) continue;
      parsed[key] = parseValue(spec, value, where);
    }
    out[name] = parsed;
  }
  return out;
}

const SCHEDULE_KEYS = ['cron', 'task', 'payload', 'queue', 'tz', 'catchUp', 'name'];

function parseSchedule(s: SettingSpec, raw: unknown, origin: string): ScheduleEntry[] {
  if (!Array.isArray(raw)) throw expected(s, raw, 'a list of { cron, task, payload?, queue?, tz?, catchUp?, name? }', origin);
  return raw.map((entry, i) => {
    const at = `schedule[${i}]`;
    const bad = (key: string, v: unknown, what: string) => new SettingError(`invalid value ${show(v)} for ${at}.${key} (${origin}): expected ${what}`);
    if (!isPlainObject(entry)) throw new SettingError(`invalid value ${show(entry)} for ${at} (${origin}): expected { cron, task, ... }`);
    for (const key of Object.keys(entry)) {
      if (SCHEDULE_KEYS.includes(key)) continue;
      const near = closest(key, SCHEDULE_KEYS);
      throw new SettingError(`unknown key "${key}" in ${at} (${origin})` + (near ? ` — did you mean "${near}"?` : `; expected ${SCHEDULE_KEYS.join(', ')}`));
    }
    const { cron, task, payload, queue, tz, catchUp, name } = entry;
    if (typeof cron !== 'string' || cron.trim().split(/\s+/).length < 5 || cron.trim().split(/\s+/).length > 6)
      throw bad('cron', cron, 'a cron expression of five fields (minute hour day month weekday) or six (seconds first)');
    if (typeof task !== 'string' || task === '') throw bad('task', task, 'a task name');
    if (queue !== undefined && (typeof queue !== 'string' || !/^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,199}$/.test(queue))) throw bad('queue', queue, 'one queue name');
    if (tz !== undefined && (typeof tz !== 'string' || !validTimeZone(tz))) throw bad('tz', tz, 'an IANA time zone such as "Europe/Paris" or "UTC"');
    if (catchUp !== undefined && typeof catchUp !== 'boolean') throw bad('catchUp', catchUp, 'true or false');
    if (name !== undefined && (typeof name !== 'string' || !/^[^\s]{1,100}$/.test(name))) throw bad('name', name, '1-100 characters without spaces');
    let json: string | undefined;
    try {
      json = JSON.stringify(payload);
    } catch {
      throw bad('payload', payload, 'a JSON value');
    }
    const out: ScheduleEntry = { cron: cron.trim(), task, payload: json === undefined ? null : JSON.parse(json) };
    if (queue !== undefined) out.queue = queue;
    if (tz !== undefined) out.tz = tz;
    if (catchUp !== undefined) out.catchUp = catchUp;
    if (name !== undefined) out.name = name;
    return out;
  });
}

function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/**
 * One pool's settings: the top level's, with the pool's own values over them (`env` is
 * merged, the pool's variables winning). Both processes use it: the master for each pool,
 * a worker for the hooks of its pool. A pool has no pools and no schedule of its own.
 */
export function overlayPool<T extends Record<string, unknown>>(top: T, own: Partial<Record<string, unknown>>): T {
  const out: Record<string, unknown> = { ...top, pools: null, schedule: [] };
  for (const [k, v] of Object.entries(own)) {
    if (v === undefined) continue;
    out[k] = k === 'env' ? { ...((top.env as Record<string, string> | undefined) ?? {}), ...(v as Record<string, string>) } : v;
  }
  return out as T;
}

function splitList(text: string): string[] {
  return text.split(',').map((x) => x.trim()).filter((x) => x !== '');
}

export function unknownSetting(key: string, origin: string, candidates: readonly string[] = SETTING_NAMES): SettingError {
  const near = closest(key, candidates);
  return new SettingError(`unknown setting "${key}" in ${origin}` + (near ? ` — did you mean "${near}"?` : ''));
}
