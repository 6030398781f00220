/**
 * The master: keeps `workers` healthy worker processes on the listening sockets, applies
 * the policies that need an outside view (timeout, recycling, crash-loop backoff), and
 * turns signals into lifecycle actions. It never runs app code on the request path.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { moveAside } from './pidfile.js';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Resolved } from './config.js';
import { serializable } from './config.js';
import type { Hooks } from '../workers/contract.js';
import type { MasterMessage, WorkerCounters, WorkerMessage, CurrentWork } from './messages.js';
import { closeListeners, labelOf, openListeners, parseAddress, type Listener, type InheritedListener } from './sockets.js';
import { reopenErrorLog } from './logging.js';
import type { Settings } from './settings.js';
import type { StuckReport } from '../workers/watchdog.js';
import { decide, type Policy } from './policy.js';
import * as sd from './notify.js';

const RUNTIME = fileURLToPath(new URL('../workers/runtime.js', import.meta.url));
/** Matches BOOT_ERROR_EXIT in workers/runtime.ts. */
const WORKER_BOOT_ERROR = 3;

export type WorkerState = 'booting' | 'serving' | 'retiring' | 'stopping';

export interface WorkerHandle {
  pid: number;
  age: number;
  generation: number;
  child: ChildProcess;
  state: WorkerState;
  spawnedAt: number;
  bootedAt?: number;
  lastSeen: number;
  counters?: WorkerCounters;
  current?: CurrentWork;
  /** Why the master ended it, for the exit log line and the restart counters. */
  endedFor?: 'timeout' | 'memory' | 'max-requests' | 'reload' | 'scale-down' | 'stop' | 'crash';
  /** The reload generation that retired this worker, so a failed reload can give it back its place. */
  retiredBy?: number;
  bootError?: { message: string; detail?: string };
  reportFile: string;
}

export interface ArbiterOptions {
  resolved: Resolved;
  listeners: Listener[];
  workers: number;
  log: Logger;
  hooks: Hooks;
  /** Re-read the config for HUP; throws a one-line error when the new config is bad. */
  reloadConfig: () => Promise<{ resolved: Resolved; workers: number; hooks: Hooks }>;
  /** Called once, when the first `workers` workers serve. */
  onReady?: () => void;
  /** After a HUP took new settings: the master's own servers (control, metrics) follow them. */
  onSettings?: (next: Settings, prev: Settings) => Promise<void>;
  /** Where arbiter was started, for the new master of a USR2 re-exec. */
  launchCwd: string;
  /** Files to watch for `reload`: the app's own source tree. */
  appFile?: string;
}

/** Public view for hooks, status and tests. */
export interface WorkerInfo {
  pid: number;
  age: number;
  state: WorkerState;
}

export class Arbiter {
  readonly startedAt = Date.now();
  settings: Settings;
  configFile: string | null;
  listeners: Listener[];
  target: number;
  readonly workers = new Map<number, WorkerHandle>();
  /** Restarts by reason, for metrics and status. */
  readonly restarts: Record<string, number> = { timeout: 0, memory: 0, 'max-requests': 0, crash: 0, reload: 0 };
  private log: Logger;
  private hooks: Hooks;
  private age = 0;
  private generation = 1;
  private stopping: 'graceful' | 'quick' | null = null;
  private ready = false;
  private quickDeaths = 0;
  private nextSpawnAt = 0;
  private readonly runDir = mkdtempSync(path.join(os.tmpdir(), 'arbiter-'));
  private tick: NodeJS.Timeout | null = null;
  private exitCode: number | null = null;
  private resolveDone!: (code: number) => void;
  readonly done = new Promise<number>((resolve) => (this.resolveDone = resolve));
  private readonly reloadConfig: ArbiterOptions['reloadConfig'];
  private reloading = false;
  private initialTarget = 1;
  private readonly onReady?: () => void;
  private readonly onSettings?: ArbiterOptions['onSettings'];
  private readonly launchCwd: string;
  private readonly appFile?: string;
  /** The new master started by USR2, while it runs. */
  private reexecChild: ChildProcess | null = null;
  private watcher: { close(): Promise<void> } | null = null;

  constructor(opts: ArbiterOptions) {
    this.settings = opts.resolved.settings;
    this.configFile = opts.resolved.configFile;
    this.listeners = opts.listeners;
    this.target = opts.workers;
    this.log = opts.log;
    this.hooks = opts.hooks;
    this.reloadConfig = opts.reloadConfig;
    this.onReady = opts.onReady;
    this.onSettings = opts.onSettings;
    this.launchCwd = opts.launchCwd;
    this.appFile = opts.appFile;
  }

  info(w: WorkerHandle): WorkerInfo {
    return { pid: w.pid, age: w.age, state: w.state };
  }

  start(): void {
    this.installSignals();
    this.maintain();
    this.tick = setInterval(() => this.supervise(), 100);
    if (this.settings.reload) void this.watch();
  }

  /** `reload`: watch the app's source tree and reload as HUP does, once a burst of writes settles. */
  private async watch(): Promise<void> {
    const { watch } = await import('chokidar');
    const roots = [this.appFile ? path.dirname(this.appFile) : process.cwd(), ...this.settings.reloadExtraFiles.map((f) => path.resolve(f))];
    const watcher = watch(roots, {
      ignoreInitial: true,
      ignored: (p: string) => /(^|[/\\])(node_modules|\.git|dist)([/\\]|$)/.test(p) || p.endsWith('.log') || p.endsWith('.pid') || p.endsWith('.sock'),
    });
    this.watcher = watcher;
    let timer: NodeJS.Timeout | null = null;
    const changed: Set<string> = new Set();
    watcher.on('all', (_event: string, file: string) => {
      changed.add(path.relative(process.cwd(), file));
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        this.log.info({ event: 'code_changed', files: [...changed] }, `changed: ${[...changed].slice(0, 5).join(', ')}; reloading`);
        changed.clear();
        void this.reload();
      }, 200);
    });
    watcher.once('ready', () => this.log.info({ event: 'watching', roots }, `reload: watching ${roots.join(', ')}`));
  }

  // ------------------------------------------------------------------ workers

  private spawnWorker(): void {
    const age = ++this.age;
    const s = this.settings;
    const inherited: InheritedListener[] = this.listeners.map((l, i) => ({ fd: 4 + i, label: l.label, kind: l.kind }));
    const reportFile = path.join(this.runDir, `worker-${age}.stuck.json`);
    const workerSettings = { ...serializable(s), workers: this.target };
    const env = {
      ...process.env,
      ...s.env,
      ARBITER_WORKER: JSON.stringify({ settings: workerSettings, listeners: inherited, configFile: this.configFile, age, reportFile }),
    };
    const ids = resolveIds(s.user, s.group);
    const child = spawn(process.execPath, [...s.nodeArgs, RUNTIME], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...this.listeners.map((l) => l.fd)],
      env,
      ...ids,
    });
    if (child.pid === undefined) {
      // spawn failed synchronously (EAGAIN, ENOMEM): treat it as a crash so backoff applies.
      this.log.error({ event: 'spawn_failed' }, 'could not spawn a worker process');
      this.quickDeaths++;
      child.on('error', () => {});
      return;
    }
    const now = Date.now();
    const w: WorkerHandle = { pid: child.pid, age, generation: this.generation, child, state: 'booting', spawnedAt: now, lastSeen: now, reportFile };
    this.workers.set(w.pid, w);
    this.log.info({ event: 'worker_booting', worker: w.pid, age }, `booting worker with pid ${w.pid}`);
    void this.hooks.run('preFork', this, this.info(w));
    child.on('message', (msg: WorkerMessage) => this.onMessage(w, msg));
    child.on('error', (err) => this.log.error({ event: 'worker_ipc_error', worker: w.pid, err }, `worker ${w.pid}: ${err.message}`));
    child.once('exit', (code, signal) => this.onExit(w, code, signal));
  }

  private send(w: WorkerHandle, msg: MasterMessage): void {
    if (w.child.connected) w.child.send(msg, undefined, undefined, () => {});
  }

  private onMessage(w: WorkerHandle, msg: WorkerMessage): void {
    // A custom worker class may send anything; only our own messages mean something.
    if (!msg || typeof msg !== 'object') return;
    w.lastSeen = Date.now();
    switch (msg.t) {
      case 'heartbeat':
        w.counters = msg.counters;
        w.current = msg.current;
        break;
      case 'booted':
        if (w.state === 'booting') w.state = 'serving';
        w.bootedAt = w.lastSeen;
        this.log.info({ event: 'worker_ready', worker: w.pid, age: w.age }, `worker ${w.pid} serving`);
        this.afterBoot();
        break;
      case 'retire':
        if (w.state === 'serving' && !this.stopping) {
          w.state = 'retiring';
          w.endedFor = msg.reason;
          this.restarts[msg.reason] = (this.restarts[msg.reason] ?? 0) + 1;
          this.log.info({ event: 'worker_retire', worker: w.pid, reason: msg.reason }, `worker ${w.pid} retiring (${msg.detail}); starting its replacement`);
          this.maintain();
        }
        break;
      case 'bootError':
        w.bootError = { message: msg.message, detail: msg.detail };
        break;
    }
  }

  /** A worker started serving: retire old ones it replaces, and say when we are ready. */
  /** Retire old workers as far as the serving ones allow: one leaves per new one ready. */
  private retireExcess(): { serving: number; retiring: WorkerHandle[] } {
    const serving = [...this.workers.values()].filter((w) => w.state === 'serving').length;
    const retiring = [...this.workers.values()].filter((w) => w.state === 'retiring' && w.bootedAt !== undefined).sort((a, b) => a.age - b.age);
    let excess = serving + retiring.length - this.target;
    for (const old of retiring) {
      if (excess-- <= 0) break;
      this.stopWorker(old, true);
    }
    return { serving, retiring };
  }

  private afterBoot(): void {
    const { serving, retiring } = this.retireExcess();
    if (!this.ready && serving >= this.target) {
      this.ready = true;
      this.log.info({ event: 'ready', workers: serving }, `ready: ${serving} worker${serving === 1 ? '' : 's'} serving`);
      void this.hooks.run('whenReady', this);
      this.onReady?.();
    }
    if (this.reloading && !retiring.some((w) => w.state === 'retiring') && serving >= this.target) {
      this.reloading = false;
      void sd.ready();
    }
  }

  private stopWorker(w: WorkerHandle, graceful: boolean): void {
    if (w.state === 'stopping') {
      if (!graceful) this.send(w, { t: 'stop', graceful: false });
      return;
    }
    w.state = 'stopping';
    w.endedFor ??= 'stop';
    // Only a stop of the whole arbiter leaves nobody else to take new connections.
    this.send(w, { t: 'stop', graceful, keepAccepting: graceful && this.stopping !== null && this.reexecChild === null });
    const grace = graceful ? this.settings.gracefulTimeout * 1000 : 1000;
    const timer = setTimeout(() => {
      if (w.child.exitCode === null && w.child.signalCode === null) {
        this.log.warn({ event: 'worker_killed', worker: w.pid }, `worker ${w.pid} still running after ${grace / 1000} s; killing it`);
        w.child.kill('SIGKILL');
      }
    }, grace + 100);
    timer.unref();
  }

  private onExit(w: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void {
    this.workers.delete(w.pid);
    rmSync(w.reportFile, { force: true });
    const lived = Date.now() - w.spawnedAt;
    const expected = w.state === 'stopping' || w.endedFor === 'timeout';
    const how = signal ? `signal ${signal}` : `code ${code}`;
    const fields = { event: 'worker_exit', worker: w.pid, age: w.age, code, signal, reason: w.endedFor ?? 'crash', livedMs: lived };
    if (expected) this.log.info(fields, `worker ${w.pid} exited (${how}, ${w.endedFor})`);
    else this.log.error(fields, `worker ${w.pid} died unexpectedly (${how}) after ${(lived / 1000).toFixed(1)} s`);
    void this.hooks.run('childExit', this, this.info(w));
    if (w.endedFor === 'reload') this.restarts.reload!++;

    if (this.stopping) return this.maybeFinished();

    if (code === WORKER_BOOT_ERROR && w.bootedAt === undefined) return this.onBootFailure(w);

    if (!expected) {
      this.restarts.crash!++;
      const verdict = decide({ livedMs: lived, quickDeaths: this.quickDeaths } satisfies Policy);
      this.quickDeaths = verdict.quickDeaths;
      if (verdict.delayMs > 0) {
        this.nextSpawnAt = Date.now() + verdict.delayMs;
        this.log.error(
          { event: 'crash_loop', deaths: this.quickDeaths, delayMs: verdict.delayMs },
          `WORKER CRASH LOOP: ${this.quickDeaths} workers died within ${verdict.quickMs / 1000} s of starting; next start in ${(verdict.delayMs / 1000).toFixed(1)} s`,
        );
      }
    }
    this.maintain();
  }

  private onBootFailure(w: WorkerHandle): void {
    const reason = w.bootError?.message ?? 'the worker exited before it could serve';
    const servingOthers = [...this.workers.values()].some((o) => o.state === 'serving' || o.state === 'retiring');
    if (servingOthers) {
      // A reload (HUP, --reload) or a replacement brought code that does not load: the
      // workers already serving keep the old code and keep serving.
      this.log.error({ event: 'worker_boot_failed', worker: w.pid, detail: w.bootError?.detail }, `new worker failed to boot, keeping the running workers: ${reason}`);
      // Only the workers this reload retired come back; older ones go on leaving.
      for (const o of this.workers.values())
        if (o.state === 'retiring' && o.retiredBy === this.generation) {
          o.state = 'serving';
          o.endedFor = undefined;
          o.retiredBy = undefined;
        }
      this.retireExcess();
      this.generation++;
      this.nextSpawnAt = Date.now() + 5000;
      if (this.reloading) void sd.ready();
      this.reloading = false;
      return;
    }
    this.log.error({ event: 'worker_boot_failed', worker: w.pid, detail: w.bootError?.detail }, `worker failed to boot: ${reason}`);
    this.halt(3, reason, w.bootError?.detail);
  }

  /** Start workers until `target` are up or coming up, respecting crash-loop backoff. */
  private maintain(): void {
    if (this.stopping) return;
    const live = [...this.workers.values()].filter((w) => w.state === 'booting' || w.state === 'serving');
    let missing = this.target - live.length;
    if (missing < 0) {
      // TTOU or a smaller `workers` after HUP: the oldest leave first, gracefully.
      for (const w of live.sort((a, b) => a.age - b.age).slice(0, -missing)) {
        w.endedFor = 'scale-down';
        this.stopWorker(w, true);
      }
      return;
    }
    if (Date.now() < this.nextSpawnAt) return;
    // During a crash loop, one at a time.
    if (this.quickDeaths > 1) missing = Math.min(missing, 1);
    for (let i = 0; i < missing; i++) this.spawnWorker();
  }

  /** Periodic: timeouts, and spawns that were waiting on backoff. */
  private supervise(): void {
    const now = Date.now();
    const limit = this.settings.timeout * 1000;
    if (limit > 0) {
      for (const w of this.workers.values()) {
        if (w.state === 'stopping' && w.endedFor === 'timeout') continue;
        if (now - w.lastSeen > limit) this.timeoutKill(w, now - w.lastSeen);
      }
    }
    if (!this.stopping && now >= this.nextSpawnAt) this.maintain();
  }

  private timeoutKill(w: WorkerHandle, silentMs: number): void {
    let report: StuckReport | null = null;
    try {
      report = JSON.parse(readFileSync(w.reportFile, 'utf8')) as StuckReport;
    } catch {
      /* the watchdog had nothing to say (or timeout is shorter than its first look) */
    }
    const working = report?.working || w.current?.what || '';
    const stack = report?.stack ?? [];
    this.log.error(
      { event: 'worker_timeout', worker: w.pid, silentMs, working: working || null, stack },
      `WORKER TIMEOUT (pid:${w.pid}) silent for ${(silentMs / 1000).toFixed(1)} s` +
        (working ? ` while serving ${working}` : '') +
        (stack.length ? `\n    ${stack.slice(0, 12).join('\n    ')}` : ''),
    );
    w.state = 'stopping';
    w.endedFor = 'timeout';
    this.restarts.timeout!++;
    void this.hooks.run('workerAbort', this, this.info(w), { silentMs, working, stack });
    w.child.kill('SIGKILL');
  }

  // ------------------------------------------------------------------ signals

  private installSignals(): void {
    const on = (sig: NodeJS.Signals, fn: () => void) => process.on(sig, () => {
      this.log.info({ event: 'signal', signal: sig }, `received ${sig}`);
      try {
        fn();
      } catch (err) {
        this.log.error({ err }, `error handling ${sig}`);
      }
    });
    on('SIGTERM', () => this.stop(true));
    on('SIGINT', () => this.stop(false));
    on('SIGQUIT', () => this.stop(false));
    on('SIGHUP', () => void this.reload());
    on('SIGTTIN', () => this.scale(this.target + 1));
    on('SIGTTOU', () => this.scale(this.target - 1));
    on('SIGUSR1', () => this.reopenLogs());
    on('SIGWINCH', () => this.winch());
    on('SIGUSR2', () => void this.reexec());
  }

  scale(n: number): void {
    if (this.stopping) return;
    const next = Math.max(1, Math.floor(n));
    if (next === this.target) return;
    const old = this.target;
    this.target = next;
    this.log.info({ event: 'workers_changed', from: old, to: next }, `workers: ${old} -> ${next}`);
    void this.hooks.run('nworkersChanged', this, next, old);
    this.maintain();
  }

  reopenLogs(): void {
    reopenErrorLog();
    for (const w of this.workers.values()) this.send(w, { t: 'reopenLogs' });
  }

  /** WINCH: let every worker go, keep the master and its sockets (for a USR2 hand-over). */
  winch(): void {
    if (!this.reexecChild) {
      // Gunicorn ignores WINCH unless daemonized; without a new master, stopping every
      // worker would just stop serving.
      this.log.warn({ event: 'winch_ignored' }, 'WINCH ignored: no new master (USR2) is running to take over');
      return;
    }
    this.initialTarget = this.target;
    this.target = 0;
    for (const w of this.workers.values()) {
      w.endedFor = 'scale-down';
      this.stopWorker(w, true);
    }
  }

  /** HUP: new config, new code, new workers; old workers leave as new ones are ready. */
  async reload(): Promise<void> {
    if (this.stopping) return;
    void sd.reloading();
    let next: Awaited<ReturnType<ArbiterOptions['reloadConfig']>>;
    try {
      next = await this.reloadConfig();
    } catch (err) {
      this.log.error({ event: 'reload_failed', err: String(err) }, `reload failed, keeping the running config: ${err instanceof Error ? err.message : String(err)}`);
      void sd.ready();
      return;
    }
    await this.hooks.run('onReload', this);
    const s = next.resolved.settings;
    const oldLabels = this.listeners.map((l) => l.label).join('\n');
    if (s.bind.join('\n') !== this.settings.bind.join('\n')) {
      try {
        this.listeners = await this.rebind(s);
      } catch (err) {
        this.log.error({ event: 'reload_failed', err: String(err) }, `reload failed, keeping the running config: ${err instanceof Error ? err.message : String(err)}`);
        void sd.ready();
        return;
      }
    }
    const prev = this.settings;
    this.settings = s;
    this.configFile = next.resolved.configFile;
    this.hooks = next.hooks;
    await this.onSettings?.(s, prev);
    if (next.workers !== this.target) void this.hooks.run('nworkersChanged', this, next.workers, this.target);
    this.target = next.workers;
    this.generation++;
    this.reloading = true;
    const newLabels = this.listeners.map((l) => l.label).join('\n');
    this.log.info(
      { event: 'reload', generation: this.generation, workers: this.target, listeners: this.listeners.map((l) => l.label) },
      `reloading: starting ${this.target} new worker${this.target === 1 ? '' : 's'}` + (oldLabels !== newLabels ? `; listening at ${this.listeners.map((l) => l.label).join(', ')}` : ''),
    );
    for (const w of this.workers.values()) {
      w.endedFor = 'reload';
      if (w.state === 'serving') {
        w.state = 'retiring';
        w.retiredBy = this.generation;
      }
      else if (w.state === 'booting') this.stopWorker(w, true);
    }
    this.quickDeaths = 0;
    this.nextSpawnAt = 0;
    this.maintain();
  }

  /** The listeners for a changed `bind`: kept where the address stays, bound where it is new. */
  private async rebind(s: Settings): Promise<Listener[]> {
    const byLabel = new Map(this.listeners.map((l) => [l.label, l]));
    const next: Listener[] = [];
    const fresh: Listener[] = [];
    try {
      for (const text of s.bind) {
        const kept = byLabel.get(labelOf(parseAddress(text)));
        if (kept) next.push(kept);
        else {
          const [l] = await openListeners([text], { reusePort: s.reusePort, cwd: process.cwd() });
          fresh.push(l!);
          next.push(l!);
        }
      }
    } catch (err) {
      closeListeners(fresh, { unlink: true });
      throw err;
    }
    // Workers of the old generation hold their own copies and keep accepting until they leave.
    closeListeners(this.listeners.filter((l) => !next.includes(l)), { unlink: true });
    return next;
  }

  /**
   * USR2: start a new master from the current binary and code, handing it every listener
   * (ARBITER_FDS). Both masters serve until the operator sends WINCH and QUIT (or TERM) to
   * the old one. If the new master dies first, the pidfile is given back.
   */
  async reexec(): Promise<void> {
    if (this.stopping || this.reexecChild) {
      this.log.warn({ event: 'reexec_refused' }, this.reexecChild ? `a new master (pid ${this.reexecChild.pid}) is already running` : 'stopping; not re-executing');
      return;
    }
    const pidfile = this.settings.pidfile;
    if (pidfile) {
      try {
        moveAside(pidfile);
      } catch (err) {
        this.log.warn({ event: 'pidfile_move_failed', err: String(err) }, `cannot move ${pidfile} aside: ${(err as Error).message}`);
      }
    }
    await this.hooks.run('preExec', this);
    const fds = this.listeners.map((l, i) => `${3 + i}=${l.label}`).join(',');
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      cwd: this.launchCwd,
      stdio: ['inherit', 'inherit', 'inherit', ...this.listeners.map((l) => l.fd)],
      env: { ...process.env, ARBITER_FDS: fds, ARBITER_UPGRADE_FROM: String(process.pid) },
    });
    this.reexecChild = child;
    this.log.info({ event: 'reexec', newMaster: child.pid, listeners: this.listeners.map((l) => l.label) }, `USR2: started a new master, pid ${child.pid}; send this master WINCH then QUIT (or TERM) when it serves`);
    child.once('exit', (code, signal) => {
      this.reexecChild = null;
      this.log.error({ event: 'reexec_exit', newMaster: child.pid, code, signal }, `the new master ${child.pid} exited (${signal ?? `code ${code}`})`);
      if (pidfile && !existsSync(pidfile) && existsSync(`${pidfile}.oldbin`)) {
        renameSync(`${pidfile}.oldbin`, pidfile);
        this.log.info({ event: 'pidfile_restored' }, `${pidfile} restored`);
      }
      if (this.target === 0 && !this.stopping) {
        // WINCH had let our workers go for the new master, which is gone: serve again.
        this.target = this.initialTarget;
        this.maintain();
      }
    });
    child.on('error', (err) => this.log.error({ event: 'reexec_failed', err: String(err) }, `USR2: cannot start a new master: ${err.message}`));
  }

  // ------------------------------------------------------------------ stopping

  stop(graceful: boolean): void {
    if (this.stopping === 'quick' || (this.stopping === 'graceful' && graceful)) return;
    this.stopping = graceful ? 'graceful' : 'quick';
    // After a USR2 hand-over the new master is systemd's main process; do not stop the unit.
    if (this.reexecChild === null) void sd.stopping();
    this.log.info({ event: 'stopping', graceful }, graceful ? `stopping gracefully (up to ${this.settings.gracefulTimeout} s)` : 'stopping now');
    for (const w of this.workers.values()) this.stopWorker(w, graceful);
    this.maybeFinished();
  }

  /** Stop everything and exit with `code` (3: workers cannot boot). */
  private halt(code: number, reason: string, detail?: string): void {
    this.exitCode = code;
    process.stderr.write(`arbiter: error: ${reason}\n${detail ? indent(detail) + '\n' : ''}`);
    this.stop(false);
  }

  private maybeFinished(): void {
    if (this.workers.size > 0) return;
    if (this.tick) clearInterval(this.tick);
    void this.watcher?.close();
    // After USR2 the new master owns the sockets: close ours, but leave the files in place.
    closeListeners(this.listeners, { unlink: this.reexecChild === null });
    if (this.settings.pidfile && this.reexecChild) rmSync(`${this.settings.pidfile}.oldbin`, { force: true });
    rmSync(this.runDir, { recursive: true, force: true });
    void this.hooks.run('onExit', this).finally(() => this.resolveDone(this.exitCode ?? 0));
  }
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => '    ' + l.trim())
    .join('\n');
}

/** `user`/`group` as names or numbers → spawn's uid/gid, read from /etc/passwd and /etc/group. */
export function resolveIds(user: string | null, group: string | null): { uid?: number; gid?: number } {
  const out: { uid?: number; gid?: number } = {};
  const lookup = (file: string, name: string, idField: number): { id: number; gid?: number } | null => {
    if (/^\d+$/.test(name)) return { id: Number(name) };
    try {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const f = line.split(':');
        if (f[0] === name) return { id: Number(f[idField]), gid: Number(f[3]) };
      }
    } catch {
      /* no such file: names cannot be resolved */
    }
    return null;
  };
  if (user) {
    const u = lookup('/etc/passwd', user, 2);
    if (!u) throw new Error(`unknown user "${user}"`);
    out.uid = u.id;
    if (u.gid !== undefined && !group) out.gid = u.gid;
  }
  if (group) {
    const g = lookup('/etc/group', group, 2);
    if (!g) throw new Error(`unknown group "${group}"`);
    out.gid = g.id;
  }
  return out;
}
