/**
 * A worker group: one pool of identical workers (same app, class, settings and listeners)
 * that the master keeps at `target`. The group turns what happens to its workers (a
 * message, an exit, a silent heartbeat) into moves of their lifecycle (worker-handle.ts)
 * and asks policy.ts what to do next; it never decides inline.
 *
 * It tells the master what the master must know through events:
 *   transition  every lifecycle move of every worker (metrics, status)
 *   ready       the first `target` workers serve
 *   reloaded    a reload has fully rolled out
 *   reloadFailed  a reload's new workers cannot boot; the old ones serve on
 *   fatal       no worker can boot and none serves: the arbiter must stop (exit 3)
 *   degraded    too many unexpected deaths within restartWindow (policy.degraded)
 *   recovered   its workers live again
 *   drained     stopping, and no worker is left
 */
import { EventEmitter } from 'node:events';
import type { Logger } from './core/logging.js';
import { serializable } from './config.js';
import type { Hooks } from './core/hooks.js';
import type { WorkerBoot, WorkerMessage } from './core/protocol.js';
import type { Settings, WorkerSettings } from './core/settings.js';
import { captureStack, inspectorArgs } from './stack-capture.js';
import { inheritedListeners, launchWorker, type Launch } from './launch.js';
import { captureOutput } from './worker-output.js';
import {
  BOOT_FAILURE_HOLD_MS, decide, degraded, isStuck, lookWhereStuckAfterMs, replacements, rollback, scaleDown, steadyFor, stopGraceMs, toSpawn, withinWindow,
} from './policy.js';
import type { Listener } from './sockets.js';
import { RESTART_REASONS, WorkerHandle, type EndReason, type RestartReason, type Transition, type WorkerState } from './worker-handle.js';

/** Public view of a worker, for hooks. */
export interface WorkerInfo {
  pid: number;
  age: number;
  state: WorkerState;
  pool: string;
}

export interface GroupConfig {
  settings: Settings;
  configFile: string | null;
  listeners: Listener[];
  target: number;
  hooks: Hooks;
}

export interface GroupOptions extends GroupConfig {
  name: string;
  /** One of several pools: log messages start with `pool NAME: `. */
  named?: boolean;
  /** Its class binds listeners (the app check said so); a task pool does not. */
  listens?: boolean;
  log: Logger;
  /** The master-wide worker sequence number (Gunicorn's age). */
  nextAge: () => number;
  /** What hooks get as their first argument. */
  hookTarget: unknown;
  launch?: Launch;
  /** At most this many workers boot at once (policy.toSpawn): the CPUs there are. */
  bootAtOnce?: number;
}

export interface GroupEvents {
  transition: [Transition];
  ready: [];
  reloaded: [generation: number];
  reloadFailed: [reason: string, detail?: string];
  fatal: [reason: string, detail: string | undefined];
  degraded: [reason: string];
  recovered: [];
  drained: [];
}

export class WorkerGroup {
  readonly events = new EventEmitter<GroupEvents>();
  readonly name: string;
  settings: Settings;
  configFile: string | null;
  listeners: Listener[];
  target: number;
  hooks: Hooks;
  readonly workers = new Map<number, WorkerHandle>();
  /** Restarts by reason, since the master started. */
  readonly restarts = Object.fromEntries(RESTART_REASONS.map((r) => [r, 0])) as Record<RestartReason, number>;
  generation = 1;
  ready = false;
  /** A reload is rolling out. */
  reloading = false;
  /** What `target` was before the reload now rolling out (a failed one goes back to it). */
  private targetBeforeReload: number | null = null;
  /** Too many unexpected deaths lately (policy.degraded); still restarting at the backoff rate. */
  degraded = false;
  /** Removed from the config by a HUP: its workers are leaving and it takes no commands. */
  leaving = false;
  listens: boolean;
  /** Epoch ms of recent unexpected deaths, oldest first (pruned to restartWindow). */
  private deaths: number[] = [];
  /** `pool NAME: ` when the master runs several pools, else ''. */
  private readonly prefix: string;
  private stopping: { graceful: boolean; keepAccepting: boolean } | null = null;
  private quickDeaths = 0;
  private nextSpawnAt = 0;
  /** WINCH set the target to 0; this is what it was. */
  private winchedFrom: number | null = null;
  private readonly log: Logger;
  private readonly nextAge: () => number;
  private readonly hookTarget: unknown;
  private readonly launch: Launch;
  private readonly bootAtOnce: number;

  constructor(opts: GroupOptions) {
    this.name = opts.name;
    this.prefix = opts.named ? `pool ${opts.name}: ` : '';
    this.listens = opts.listens ?? true;
    this.settings = opts.settings;
    this.configFile = opts.configFile;
    this.listeners = opts.listeners;
    this.target = opts.target;
    this.hooks = opts.hooks;
    this.log = opts.log;
    this.nextAge = opts.nextAge;
    this.hookTarget = opts.hookTarget;
    this.launch = opts.launch ?? launchWorker;
    this.bootAtOnce = opts.bootAtOnce ?? Infinity;
  }

  info(w: WorkerHandle): WorkerInfo {
    return { pid: w.pid, age: w.age, state: w.state, pool: this.name };
  }

  private get list(): WorkerHandle[] {
    return [...this.workers.values()];
  }

  private hook(name: string, ...args: unknown[]): Promise<void> {
    return this.hooks.run(name, this.hookTarget, ...args);
  }

  // ------------------------------------------------------------------ spawning

  private spawnOne(): void {
    const age = this.nextAge();
    const s = this.settings;
    const boot: WorkerBoot = {
      settings: { ...serializable(s), workers: this.target } as WorkerSettings,
      listeners: inheritedListeners(this.listeners),
      configFile: this.configFile,
      pool: this.name,
      age,
    };
    let child;
    try {
      child = this.launch(boot, s, this.listeners);
    } catch (err) {
      return this.spawnFailed(String(err));
    }
    if (child.pid === undefined) {
      // spawn failed synchronously (EAGAIN, ENOMEM, EMFILE): an 'error' event follows.
      child.on('error', () => {});
      return this.spawnFailed('could not spawn a worker process');
    }
    const w = new WorkerHandle(this.name, child.pid, age, this.generation, child, (t) => this.events.emit('transition', t));
    this.workers.set(w.pid, w);
    this.log.info({ event: 'worker_booting', worker: w.pid, age, pool: this.name }, `${this.prefix}booting worker with pid ${w.pid}`);
    void this.hook('preFork', this.info(w));
    child.on('message', (msg: WorkerMessage) => this.onMessage(w, msg));
    child.on('error', (err) => this.log.error({ event: 'worker_ipc_error', worker: w.pid, pool: this.name, err }, `${this.prefix}worker ${w.pid}: ${err.message}`));
    // The exit is handled once what the worker wrote last is in the log (its pipes ended).
    const output = captureOutput(child, { pid: w.pid, age, onInspector: this.inspectable ? (url) => (w.inspector = url) : undefined });
    child.once('exit', (code, signal) => output.whenDrained(() => this.onExit(w, code, signal)));
  }

  /** A worker that could not even start counts as a quick death, so backoff applies. */
  private spawnFailed(why: string): void {
    this.log.error({ event: 'spawn_failed', pool: this.name }, this.prefix + why);
    this.quickDeaths++;
    const { delayMs } = decide({ livedMs: 0, quickDeaths: this.quickDeaths });
    this.nextSpawnAt = Date.now() + Math.max(delayMs, 100);
  }

  // ------------------------------------------------------------------ what workers say

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
        if (w.booted(w.lastSeen)) {
          this.log.info({ event: 'worker_ready', worker: w.pid, age: w.age, pool: this.name }, `${this.prefix}worker ${w.pid} serving`);
          this.afterBoot();
          // Its place among those booting at once is free.
          if (!this.stopping) this.maintain();
        } else {
          // Stopped while it was still loading: the stop may have come before it listened to
          // the channel, and an IPC message nobody listens to is lost. Say it again.
          w.repeatStop();
        }
        break;
      case 'retire':
        if (!this.stopping && w.retire(msg.reason)) {
          this.log.info({ event: 'worker_retire', worker: w.pid, pool: this.name, reason: msg.reason }, `${this.prefix}worker ${w.pid} retiring (${msg.detail}); starting its replacement`);
          this.maintain();
        }
        break;
      case 'bootError':
        w.bootError = { message: msg.message, detail: msg.detail };
        break;
      case 'listener': {
        // A worker at workerConnections closed its copy; it wants one again.
        const l = this.listeners[msg.index];
        if (l && w.child.connected) w.child.send({ t: 'listener', index: msg.index }, l.handle as never, undefined, () => {});
        break;
      }
    }
  }

  /** A worker started serving: old ones it replaces may leave; say when we are ready. */
  private afterBoot(): void {
    this.retireReplaced();
    const serving = this.count('serving');
    if (!this.ready && serving >= this.target) {
      this.ready = true;
      this.events.emit('ready');
    }
    if (this.reloading && this.count('retiring') === 0 && serving >= this.target) {
      this.reloading = false;
      this.events.emit('reloaded', this.generation);
    }
  }

  private retireReplaced(): void {
    for (const old of replacements(this.list, this.target)) this.stopWorker(old, true, old.reason ?? 'reload');
  }

  private count(state: WorkerState): number {
    let n = 0;
    for (const w of this.workers.values()) if (w.state === state) n++;
    return n;
  }

  // ------------------------------------------------------------------ exits

  private onExit(w: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void {
    this.workers.delete(w.pid);
    w.exited(code, signal);
    const how = signal ? `signal ${signal}` : `code ${code}`;
    const fields = { event: 'worker_exit', worker: w.pid, age: w.age, pool: this.name, code, signal, reason: w.died ? 'crash' : w.reason, livedMs: w.livedMs };
    if (w.died) this.log.error(fields, `${this.prefix}worker ${w.pid} died unexpectedly (${how}) after ${(w.livedMs / 1000).toFixed(1)} s`);
    else this.log.info(fields, `${this.prefix}worker ${w.pid} exited (${how}, ${w.reason})`);
    void this.hook('childExit', this.info(w));
    if (w.failedToBoot && !this.stopping) return this.onBootFailure(w);
    const restart = w.restartReason;
    if (restart) this.restarts[restart]++;
    if (this.stopping) {
      if (this.workers.size === 0) this.events.emit('drained');
      return;
    }
    if (w.died) {
      const verdict = decide({ livedMs: w.livedMs, quickDeaths: this.quickDeaths, killedAfterServing: w.bootedAt !== undefined && signal !== null });
      this.quickDeaths = verdict.quickDeaths;
      if (verdict.delayMs > 0) {
        this.nextSpawnAt = Date.now() + verdict.delayMs;
        this.log.error(
          { event: 'crash_loop', pool: this.name, deaths: this.quickDeaths, delayMs: verdict.delayMs },
          `${this.prefix}WORKER CRASH LOOP: ${this.quickDeaths} workers died within ${verdict.quickMs / 1000} s of starting; next start in ${(verdict.delayMs / 1000).toFixed(1)} s`,
        );
      }
    }
    // May stop the arbiter (exitOnDegraded): after the backoff is decided, before a replacement starts.
    if (restart === 'crash' || restart === 'timeout') this.unexpectedDeath(Date.now());
    this.maintain();
  }

  private onBootFailure(w: WorkerHandle): void {
    const reason = w.bootError?.message ?? 'the worker exited before it could serve';
    const detail = w.bootError?.detail;
    const serving = this.list.some((o) => o.state === 'serving' || o.state === 'retiring');
    if (!serving) {
      this.log.error({ event: 'worker_boot_failed', worker: w.pid, pool: this.name, detail }, `${this.prefix}worker failed to boot: ${reason}`);
      this.events.emit('fatal', this.prefix + reason, detail);
      return;
    }
    // A reload (HUP, --reload) or a replacement brought code that does not load: the
    // workers already serving keep the old code and keep serving.
    this.log.error({ event: 'worker_boot_failed', worker: w.pid, pool: this.name, detail }, `${this.prefix}new worker failed to boot, keeping the running workers: ${reason}`);
    for (const o of rollback(this.list, this.generation)) o.reinstate();
    // Its siblings still booting load the same code: they go too; and the old workers serve
    // on as many as they were (the reload's `workers` came with the code that failed).
    for (const o of this.list) if (o.state === 'booting' && o.generation === w.generation) this.stopWorker(o, false, 'reload');
    if (this.reloading && this.targetBeforeReload !== null) this.target = this.targetBeforeReload;
    this.retireReplaced();
    this.generation++;
    this.nextSpawnAt = Date.now() + BOOT_FAILURE_HOLD_MS;
    if (this.reloading) {
      this.reloading = false;
      this.events.emit('reloadFailed', this.prefix + reason, detail);
    }
  }

  // ------------------------------------------------------------------ restart limiting

  private unexpectedDeath(now: number): void {
    this.deaths.push(now);
    this.checkHealth(now);
  }

  /** On every unexpected death and every tick: degraded, or recovered (policy.degraded). */
  private checkHealth(now: number): void {
    const s = this.settings;
    const windowMs = s.restartWindow * 1000;
    if (this.deaths.length > 0) this.deaths = withinWindow(this.deaths, now, windowMs);
    if (!this.degraded && this.deaths.length <= s.maxRestarts) return;
    const serving: number[] = [];
    for (const w of this.workers.values()) if (w.state === 'serving') serving.push(w.bootedAt ?? w.spawnedAt);
    const next = degraded({ deaths: this.deaths.length, maxRestarts: s.maxRestarts, degraded: this.degraded, steadyMs: steadyFor(serving, this.target, now) });
    if (next === this.degraded) return;
    this.degraded = next;
    if (next) {
      const reason = `${this.deaths.length} workers died unexpectedly within ${s.restartWindow} s (maxRestarts ${s.maxRestarts})`;
      this.log.error(
        { event: 'pool_degraded', pool: this.name, deaths: this.deaths.length, maxRestarts: s.maxRestarts, restartWindow: s.restartWindow },
        `POOL DEGRADED: ${this.prefix || `pool ${this.name}: `}${reason}; ` + (s.exitOnDegraded ? 'exitOnDegraded is set: stopping the arbiter' : 'still restarting its workers, with backoff'),
      );
      this.events.emit('degraded', `pool ${this.name} is degraded: ${reason}`);
    } else {
      this.log.warn({ event: 'pool_recovered', pool: this.name, workers: this.target }, `${this.prefix || `pool ${this.name}: `}recovered: ${this.target} worker${this.target === 1 ? '' : 's'} serving again`);
      this.events.emit('recovered');
    }
  }

  // ------------------------------------------------------------------ keeping target

  /** Start what is missing, let go of what is too much (the oldest first). */
  maintain(): void {
    if (this.stopping) return;
    for (const w of scaleDown(this.list, this.target)) this.stopWorker(w, true, 'scale-down');
    const n = toSpawn({ target: this.target, workers: this.list, quickDeaths: this.quickDeaths, now: Date.now(), nextSpawnAt: this.nextSpawnAt, bootAtOnce: this.bootAtOnce });
    for (let i = 0; i < n; i++) this.spawnOne();
  }

  /** Periodic (the master's tick): stuck workers, and spawns that waited for a backoff. */
  supervise(now: number): void {
    const timeout = this.settings.timeout;
    const lookAfter = this.inspectable ? lookWhereStuckAfterMs(timeout, this.settings.heartbeatInterval) : null;
    for (const w of this.workers.values()) {
      if (w.reason === 'timeout') continue;
      if (isStuck(now, w.lastSeen, timeout)) this.timeoutKill(w, now - w.lastSeen);
      else if (lookAfter !== null && w.live && w.lookedAt !== w.lastSeen && now - w.lastSeen > lookAfter) void this.lookWhereStuck(w, now);
    }
    if (!this.stopping && now >= this.nextSpawnAt) this.maintain();
    if (this.degraded && !this.stopping) this.checkHealth(now);
  }

  /** Its workers start with an inspector the master can open (not when the user set one up). */
  private get inspectable(): boolean {
    return inspectorArgs(this.settings.nodeArgs, this.settings.timeout).length > 0;
  }

  /**
   * SIGUSR1 opens the worker's inspector (it prints the address on stderr), and the master
   * takes the stack through it (src/stack-capture.ts), to have it when the timeout kills.
   */
  private async lookWhereStuck(w: WorkerHandle, now: number): Promise<void> {
    w.lookedAt = w.lastSeen;
    w.stuck = undefined; // what an earlier silence showed is not this one's
    const deadline = w.lastSeen + this.settings.timeout * 1000;
    if (!w.inspector) {
      if (!w.child.kill('SIGUSR1')) return;
      while (!w.inspector && w.live && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    }
    if (!w.inspector || !w.live) return;
    const report = await captureStack(w.inspector, w.pid, now - w.lastSeen, Math.max(100, deadline - Date.now()));
    if (report) {
      w.stuck = report;
      this.log.debug({ event: 'stuck_stack', worker: w.pid, pool: this.name, silentMs: report.silentMs, stack: report.stack }, `${this.prefix}worker ${w.pid} silent for ${(report.silentMs / 1000).toFixed(1)} s: read where it is stuck`);
    } else this.log.debug({ event: 'stack_capture_failed', worker: w.pid, pool: this.name }, `${this.prefix}could not read where worker ${w.pid} is stuck`);
    // It reads this once it is free again (if it ever is), and closes what SIGUSR1 opened.
    w.inspector = null;
    w.send({ t: 'closeInspector' });
  }

  private timeoutKill(w: WorkerHandle, silentMs: number): void {
    // Where the master found it stuck, if it had time to look (timeout may be shorter).
    const report = w.stuck;
    const working = report?.working || w.current?.what || '';
    const stack = report?.stack ?? [];
    this.log.error(
      { event: 'worker_timeout', worker: w.pid, pool: this.name, silentMs, working: working || null, stack },
      `${this.prefix}WORKER TIMEOUT (pid:${w.pid}) silent for ${(silentMs / 1000).toFixed(1)} s` +
        (working ? ` while serving ${working}` : '') +
        (stack.length ? `\n    ${stack.slice(0, 12).join('\n    ')}` : ''),
    );
    if (w.kill('timeout')) void this.hook('workerAbort', this.info(w), { silentMs, working, stack });
  }

  private stopWorker(w: WorkerHandle, graceful: boolean, reason: EndReason): void {
    if (w.state === 'stopping') {
      if (!graceful) w.hurry();
      return;
    }
    // Only a stop of the whole arbiter leaves nobody else to take new connections.
    const keepAccepting = graceful && this.stopping !== null && this.stopping.keepAccepting;
    if (!w.stop(reason, graceful, keepAccepting)) return;
    const grace = stopGraceMs(graceful, this.settings.gracefulTimeout);
    const timer = setTimeout(() => {
      if (w.live) {
        this.log.warn({ event: 'worker_killed', worker: w.pid, pool: this.name }, `${this.prefix}worker ${w.pid} still running after ${grace / 1000} s; killing it`);
        w.child.kill('SIGKILL');
      }
    }, grace + 100);
    timer.unref();
  }

  // ------------------------------------------------------------------ commands

  /** TTIN / TTOU / `arbiter scale`. Returns false when stopping. */
  scale(n: number): boolean {
    if (this.stopping) return false;
    const next = Math.max(1, Math.floor(n));
    if (next === this.target) return true;
    const old = this.target;
    this.target = next;
    this.log.info({ event: 'workers_changed', pool: this.name, from: old, to: next }, `${this.prefix}workers: ${old} -> ${next}`);
    void this.hook('nworkersChanged', next, old);
    this.maintain();
    return true;
  }

  /** HUP: new settings and code; every worker now serving is retired as new ones serve. */
  reload(next: GroupConfig): void {
    if (this.stopping) return;
    if (next.target !== this.target) void this.hook('nworkersChanged', next.target, this.target);
    this.targetBeforeReload = this.target;
    this.settings = next.settings;
    this.configFile = next.configFile;
    this.listeners = next.listeners;
    this.hooks = next.hooks;
    this.target = next.target;
    this.generation++;
    this.reloading = true;
    for (const w of this.list) {
      if (w.state === 'serving') w.retire('reload', this.generation);
      else if (w.state === 'booting') this.stopWorker(w, true, 'reload');
    }
    this.quickDeaths = 0;
    this.nextSpawnAt = 0;
    // New code, a fresh count: a deploy that fixes a crashing app is not held to the old deaths.
    this.deaths = [];
    this.maintain();
  }

  /** WINCH: let every worker go gracefully, keep the listeners (a USR2 master serves). */
  winch(): void {
    this.winchedFrom = this.target;
    this.target = 0;
    for (const w of this.list) this.stopWorker(w, true, 'scale-down');
  }

  /** The USR2 master is gone after a WINCH: serve again. */
  unwinch(): void {
    if (this.winchedFrom === null || this.stopping) return;
    this.target = this.winchedFrom;
    this.winchedFrom = null;
    this.maintain();
  }

  /** Stop every worker. `keepAccepting`: no other master takes the connections meanwhile. */
  stopAll(graceful: boolean, keepAccepting: boolean): void {
    this.stopping = { graceful, keepAccepting };
    for (const w of this.list) this.stopWorker(w, graceful, 'stop');
    if (this.workers.size === 0) this.events.emit('drained');
  }

  reopenLogs(): void {
    for (const w of this.workers.values()) w.send({ t: 'reopenLogs' });
  }
}
