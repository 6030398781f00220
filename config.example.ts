/**
 * Every arbiter setting, with its default. Copy what you need into arbiter.config.ts (or
 * any file given with -c); leave out the rest. Durations are seconds; sizes take 512MB, 1GiB.
 * This file is type-checked against defineConfig() by the test suite.
 */
import { defineConfig } from 'arbiterd';

export default defineConfig({
  // Application
  // The app to serve: a file (.js .mjs .cjs .ts .mts, extension optional) or package, and the export to use (default default). Also the first positional argument.
  app: "examples/hello.js:handler",
  // How to call the app: node (req, res) listener, fetch (Request) => Response, listen (a script that
  // creates its server and calls listen() itself; -k http only), or auto to pick by shape.
  interface: "auto",
  // Change to this directory before loading the app; the app module is resolved from here.
  chdir: null,
  // Set an environment variable in the master and workers (repeatable).
  env: {},

  // Listening sockets
  // Where to listen (repeatable): HOST:PORT, [V6]:PORT, PORT, unix:PATH, fd://N. With no bind and PORT set, 0.0.0.0:$PORT.
  bind: ["127.0.0.1:8000"],
  // Maximum number of pending connections queued on each listener.
  backlog: 2048,
  // Set SO_REUSEPORT on TCP listeners (needs Node >= 22.12; ignored with a warning before).
  reusePort: false,

  // Workers
  // Number of worker processes: a number, auto (the CPUs the container may use), or in a config file (cpus) => n. With no value and WEB_CONCURRENCY set, that.
  workers: (cpus) => cpus,
  // Worker class: http (Node's server), h11 (arbiter's own HTTP/1.1 engine), task (task consumer), or a module path exporting a custom class.
  workerClass: "http",
  // Most connections a worker holds at once. At the cap it closes idle keep-alive connections to make room, then stops accepting, so that new connections wait in the backlog for it or another worker.
  workerConnections: 1000,
  // A worker whose event loop has been silent this long is killed and replaced (0 disables).
  timeout: 30,
  // On a graceful stop, how long workers may finish in-flight work before they are killed.
  gracefulTimeout: 30,
  // How long an idle keep-alive connection stays open (0 closes after each response).
  keepalive: 5,
  // Retire a worker gracefully after this many requests or tasks (0 = never).
  maxRequests: 0,
  // Add a random 0..N to maxRequests per worker so they do not all retire at once.
  maxRequestsJitter: 0,
  // Retire a worker gracefully when its RSS passes this (512MB, 1GiB; 0 = off).
  maxWorkerMemory: 0,
  // How often workers report liveness and counters to the master.
  heartbeatInterval: 1,
  // Extra node flags for worker processes, e.g. --max-old-space-size=512 (repeatable).
  nodeArgs: [],
  // A pool is degraded (logged, in status and metrics) when more than this many of its workers die unexpectedly (crash, timeout) within restartWindow (0 = never).
  maxRestarts: 5,
  // The window maxRestarts counts deaths in.
  restartWindow: 60,
  // When a pool becomes degraded, stop the arbiter gracefully and exit 1, so an orchestrator replaces the container.
  exitOnDegraded: false,
  // Several pools under one master, each its own app, class, workers, bind and worker policy over the top-level values.
  // Every setting above this line may be set per pool, and the task settings and worker hooks below; the master's own
  // (pidfile, logs, control socket, schedule...) may not. With pools, only the pools run: the top level is what they inherit.
  // workers: 'auto' (or a function) in several pools splits the CPUs evenly among those pools: each sees floor(cpus / n).
  // For example:
  //   pools: {
  //     web: { app: 'dist/server.js', workerClass: 'h11', workers: 'auto', bind: ['0.0.0.0:8000'] },
  //     tasks: { app: 'dist/tasks.js:handlers', workerClass: 'task', workers: 2, broker: 'redis://127.0.0.1:6379/0', timeout: 120 },
  //   },
  pools: null,

  // HTTP limits
  // Longest request line accepted (414 beyond; 0 = Node's own limit only).
  limitRequestLine: 4094,
  // Most header fields accepted in a request (431 beyond).
  limitRequestFields: 100,
  // Longest header field line accepted (431 beyond).
  limitRequestFieldSize: 8190,
  // A connection that has not sent a complete request head this long after it opened, or after its previous response, gets 408 and is closed; a trickle of bytes does not extend it (0 = no limit).
  headerTimeout: 20,
  // Largest request body the h11 worker accepts (413 beyond; 0 = no limit).
  limitRequestBody: 0,
  // Front-end addresses trusted to set X-Forwarded-For/-Proto (* trusts all); used for the access log's remote address.
  forwardedAllowIps: ["127.0.0.1","::1"],

  // TLS
  // TLS certificate (PEM); with keyfile, listeners speak HTTPS.
  certfile: null,
  // TLS private key (PEM).
  keyfile: null,

  // Process
  // This arbiter's name: its control socket NAME.sock in the runtime directory, the process
  // titles, and what `arbiter status` lists and `-n NAME` picks. Default: from the app.
  procName: 'web',
  // Write the master's pid here; removed on exit (renamed *.oldbin during a USR2 upgrade).
  pidfile: null,
  // Detach from the terminal and run in the background.
  daemon: false,
  // Run workers as this user (name or uid); the master keeps its privileges to bind.
  user: null,
  // Run workers as this group (name or gid).
  group: null,
  // File mode creation mask for the master and workers, e.g. 0o027 or 027.
  umask: null,

  // Logging
  // Lowest level of error-log lines written.
  logLevel: "info",
  // Where the master writes the one log (- = stderr): its own lines and every worker's, with
  // the app's stdout and stderr tagged by worker. JSON lines; readable lines on a terminal.
  errorLog: "-",
  // Access log file (- = stdout); none when unset.
  accessLog: null,
  // Access log line: Gunicorn atoms such as %(h)s %(r)s %(s)s %(D)s %({x-request-id}i)s, or json.
  accessLogFormat: "%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\"",

  // Code reload
  // Watch the app's source files and reload workers (as HUP does) when they change. For development.
  reload: false,
  // Further files or directories that trigger a reload (repeatable).
  reloadExtraFiles: [],

  // Task workers
  // Task broker: spool:PATH (embedded, durable on one machine), redis://HOST:PORT/DB (Redis Streams; rediss:// for TLS), or redis+sentinel://H1:P1,H2:P2/MASTER/DB (a primary that Sentinel fails over; ?wait=1 makes enqueue wait for a replica).
  broker: "spool:.arbiter-spool",
  // Queues the task workers consume, in priority order (high,default): a worker takes from the first while it has tasks. Producers and arbiter enqueue need one.
  queue: ["default"],
  // Tasks each worker runs at once.
  concurrency: 10,
  // Retries after a failed attempt, with exponential backoff and jitter, before the dead-letter queue.
  maxRetries: 3,
  // Dead-letter queue name (default QUEUE:dead).
  dlq: null,
  // Abort a task's signal after this long and count it as failed (0 = no limit).
  taskTimeout: 0,
  // Keep each task's return value (JSON) or final error this long, for result() and arbiter result ID (0 = keep none).
  resultTtl: 0,
  // Largest result kept (as JSON); a bigger one is kept as an error that says so.
  maxResultSize: "1MiB",
  // Tasks the master enqueues on a cron schedule (five fields, or six with seconds first; tz: an IANA zone).
  // With several arbiters on one Redis (or one spool), each run is enqueued once between them.
  // catchUp: on start, enqueue once the latest run missed while no arbiter was up.
  schedule: [
    // { cron: '0 3 * * *', task: 'cleanup', payload: { olderThanDays: 30 }, tz: 'Europe/Paris' },
    // { cron: '*/10 * * * * *', task: 'poll', queue: 'high', catchUp: false, name: 'poll-feeds' },
  ],

  // Control and metrics
  // The control socket (mode 0600) for arbiter status, reload, scale, stop, upgrade and top.
  // Unset: NAME.sock in the per-user runtime directory.
  controlSocket: null,
  // Serve Prometheus metrics from the master at HOST:PORT/metrics; a bare PORT listens on 127.0.0.1 only (give 0.0.0.0:PORT for a remote scraper).
  metricsBind: null,

  // Config file and checks
  // Config file (.ts .js .mjs .cjs .json .yaml); otherwise arbiter.config.*, .arbiterrc* or package.json#arbiter is searched for.
  config: null,
  // Load the config and the app, bind nothing, and exit 0 (fine) or 2 (with the reason).
  checkConfig: false,
  // Print every effective setting and where it came from (default, file, env, cli), then exit.
  printConfig: false,

  // Hooks (config file only)
  // Runs in the master: before the master binds and forks.
  onStarting: (arbiter) => {},
  // Runs in the master: on HUP, before new workers start.
  onReload: (arbiter) => {},
  // Runs in the master: once the first workers serve.
  whenReady: (arbiter) => {},
  // Runs in the master: before a worker is spawned.
  preFork: (arbiter, worker) => {},
  // Runs in the worker: in the new worker, before the app loads.
  postFork: (worker) => {},
  // Runs in the worker: in the worker, after the app loaded.
  postWorkerInit: (worker) => {},
  // Runs in the worker: in the worker, on INT or QUIT.
  workerInt: (worker) => {},
  // Runs in the master: when a worker is killed for timeout (it cannot run code itself).
  workerAbort: (arbiter, worker, report) => { console.error("timed out:", worker.pid, report.working); },
  // Runs in the master: before a USR2 re-exec starts the new master.
  preExec: (arbiter) => {},
  // Runs in the master: after a worker exited.
  childExit: (arbiter, worker) => {},
  // Runs in the worker: in the worker, just before it exits.
  workerExit: (worker) => {},
  // Runs in the master: when the target worker count changes.
  nworkersChanged: (arbiter, newValue, oldValue) => {},
  // Runs in the master: just before the master exits.
  onExit: (arbiter) => {},
  // Runs in the worker: before each HTTP request is handed to the app.
  preRequest: (worker, req) => {},
  // Runs in the worker: after each HTTP response finished.
  postRequest: (worker, req, res, durationMs) => {},
});
