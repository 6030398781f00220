/**
 * The master: holds the worker groups (one per pool, SPEC §10) and the listening sockets,
 * turns signals into lifecycle actions, re-reads the config on HUP, re-executes itself on
 * USR2, and stops. It never runs app code. What to do about one worker is the group's
 * business (group.ts); what the master does about signals is in SIGNALS below.
 *
 * Several pools: HUP reloads every pool (each on its own: a pool whose new code cannot boot
 * keeps its old workers while the others go ahead), adds the pools the config gained and
 * retires the ones it lost; `reload(pool)` reloads one; TTIN/TTOU as signals move every
 * pool by one (a signal cannot name a pool; the control socket can).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from './core/logging.js';
import type { Resolved } from './config.js';
import { createHooks, type Hooks } from './core/hooks.js';
import { reopenErrorLog } from './core/logging.js';
import { ENV, MAIN_POOL, REEXEC_FD_BASE } from './core/protocol.js';
import { errorMessage, indent } from './core/errors.js';
import type { Settings } from './core/settings.js';
import { WorkerGroup, type GroupConfig } from './group.js';
import type { Launch } from './launch.js';
import * as sd from './notify.js';
import { moveAside } from './pidfile.js';
import { checkBinds, classListens, type PoolPlan } from './pools.js';
import type { Compiled, Scheduler } from './scheduler.js';
import type { BrokerHealth } from './core/brokers/types.js';
import { bindReusing, closeListeners, type Listener } from './sockets.js';
import type { MasterSignal } from './start-signals.js';
import { resolveIds } from './users.js';
import { watchCode, type Watcher } from './watch.js';
import { RESTART_REASONS, type RestartReason, type Transition, type WorkerHandle } from './worker-handle.js';

/** The name of the one group an arbiter without `pools` has. */
export const MAIN_GROUP = MAIN_POOL;

/** Ticks of the supervision timer: timeouts and backoff spawns. */
const TICK_MS = 100;

/** One pool as the master starts it. */
export interface PoolStart {
  name: string;
  settings: Settings;
  listeners: Listener[];
  target: number;
  /** Its class binds listeners (from the app check). */
  listens: boolean;
  /** The app module's file: `reload` watches its directory. */
  appFile?: string;
}

export interface ArbiterOptions {
  /** The top-level settings: the master's own (pidfile, control socket, ...) and what pools inherit. */
  resolved: Resolved;
  pools: PoolStart[];
  log: Logger;
  /** The master-wide hooks; each pool makes its own from its settings. */
  hooks: Hooks;
  /** The config's schedules, compiled (the master enqueues their runs). */
  schedules: Compiled[];
  /** Re-read the config for HUP; throws a one-line error when the new config is bad. */
  reloadConfig: () => Promise<{ resolved: Resolved; pools: PoolPlan[]; hooks: Hooks; schedules: Compiled[] }>;
  /** After a HUP took new settings: the master's own servers (control, metrics) follow them. */
  onSettings?: (next: Settings, prev: Settings) => Promise<void>;
  /** Where arbiter was started, for the new master of a USR2 re-exec. */
  launchCwd: string;
  /** The arbiter's name (procName, or the one derived from the app): a USR2 master keeps it. */
  name?: string;
  launch?: Launch;
  /** At most this many workers of a pool boot at once: the CPUs found (src/cpus.ts). */
  bootAtOnce?: number;
}

export interface ArbiterEvents {
  transition: [Transition];
  /** Every group serves its first `target` workers. */
  ready: [];
  reloaded: [];
  reloadFailed: [reason: string, detail?: string];
  /** The new master a USR2 started serves. */
  upgraded: [pid: number];
  /** The new master a USR2 started has exited; `served`: after it had served. */
  upgradeEnded: [reason: string, detail: string | undefined, served: boolean];
}

/** What a USR2 master tells the old one on the descriptor ARBITER_UPGRADE_FD names. */
export type HandoverMessage = { t: 'ready' } | { t: 'failed'; reason: string; detail?: string };

/** SIGNALS[name] is what the master does on that signal (SPEC §4). */
const SIGNALS: Record<MasterSignal, (a: Arbiter) => void> = {
  SIGTERM: (a) => a.stop(true),
  SIGINT: (a) => a.stop(false),
  SIGQUIT: (a) => a.stop(false),
  SIGHUP: (a) => void a.reload(),
  SIGTTIN: (a) => a.scaleAll(+1),
  SIGTTOU: (a) => a.scaleAll(-1),
  SIGUSR1: (a) => a.reopenLogs(),
  SIGUSR2: (a) => void a.reexec(),
  SIGWINCH: (a) => a.winch(),
};

export class Arbiter {
  readonly events = new EventEmitter<ArbiterEvents>();
  readonly startedAt = Date.now();
  settings: Settings;
  configFile: string | null;
  readonly groups = new Map<string, WorkerGroup>();
  stopping: 'graceful' | 'quick' | null = null;
  /** Its name: the control socket's, the process title's; set once the socket is placed. */
  name: string;
  /** Why the arbiter is stopping on its own (workers cannot boot), for a USR2 parent. */
  haltReason: { reason: string; detail?: string } | null = null;
  readonly done: Promise<number>;
  private resolveDone!: (code: number) => void;
  private exitCode: number | null = null;
  private hooks: Hooks;
  private readonly log: Logger;
  private age = 0;
  private tick: NodeJS.Timeout | null = null;
  private readonly reloadConfig: ArbiterOptions['reloadConfig'];
  private readonly onSettings?: ArbiterOptions['onSettings'];
  private readonly launchCwd: string;
  private readonly appFiles: string[];
  private readonly launch?: Launch;
  private readonly bootAtOnce?: number;
  /** The new master started by USR2, while it runs. */
  private reexecChild: ChildProcess | null = null;
  private watcher: Watcher | null = null;
  private finished = false;
  private wasReady = false;
  /** The task pools' brokers as the master sees them (src/task-brokers.ts's TaskBrokers), when a pool runs tasks. */
  brokers: { status(): (BrokerHealth & { url: string })[] } | null = null;
  /** Runs the config's schedules; made when there is one. */
  scheduler: Scheduler | null = null;
  private schedules: Compiled[];

  constructor(opts: ArbiterOptions) {
    this.done = new Promise<number>((resolve) => (this.resolveDone = resolve));
    this.settings = opts.resolved.settings;
    this.configFile = opts.resolved.configFile;
    this.hooks = opts.hooks;
    this.log = opts.log;
    this.reloadConfig = opts.reloadConfig;
    this.onSettings = opts.onSettings;
    this.launchCwd = opts.launchCwd;
    this.launch = opts.launch;
    this.bootAtOnce = opts.bootAtOnce;
    this.name = opts.name ?? 'arbiter';
    this.appFiles = opts.pools.flatMap((p) => (p.appFile ? [p.appFile] : []));
    this.schedules = opts.schedules;
    for (const p of opts.pools) {
      const { name, listens, ...config } = p;
      this.addGroup(name, { ...config, configFile: this.configFile, hooks: this.poolHooks(p.settings) }, listens);
    }
  }

  /** Several pools under this master (the config has `pools`): logs and errors name them. */
  get named(): boolean {
    return this.settings.pools !== null;
  }

  private poolHooks(s: Settings): Hooks {
    return createHooks(s as unknown as Record<string, unknown>, this.log);
  }

  private addGroup(name: string, config: GroupConfig, listens: boolean, added = false): WorkerGroup {
    const g = new WorkerGroup({ ...config, name, named: this.named, listens, log: this.log, nextAge: () => ++this.age, hookTarget: this, launch: this.launch, bootAtOnce: this.bootAtOnce });
    g.events.on('transition', (t) => this.events.emit('transition', t));
    g.events.on('ready', () => this.groupReady());
    g.events.on('reloaded', () => this.groupReloaded());
    g.events.on('reloadFailed', (reason, detail) => {
      void sd.ready();
      this.events.emit('reloadFailed', reason, detail);
    });
    g.events.on('fatal', (reason, detail) => {
      // A pool a HUP added whose app cannot boot is a failed reload, not a failed start.
      if (!this.wasReady || !added) return this.halt(3, reason, detail);
      this.log.error({ event: 'reload_failed', pool: name }, `reload failed: ${reason}; pool ${name} is not started`);
      this.events.emit('reloadFailed', reason);
      this.retirePool(g);
    });
    g.events.on('degraded', (reason) => {
      if (g.settings.exitOnDegraded) this.halt(1, `${reason} (exitOnDegraded)`, undefined, true);
    });
    g.events.on('drained', () => {
      if (g.leaving && !this.stopping) return this.forget(g);
      this.maybeFinished();
    });
    this.groups.set(name, g);
    return g;
  }

  /** A pool the config lost has no worker left: its listeners close unless another pool took them. */
  private forget(g: WorkerGroup): void {
    this.groups.delete(g.name);
    const kept = new Set(this.listeners);
    closeListeners(g.listeners.filter((l) => !kept.has(l)), { unlink: true });
    this.log.info({ event: 'pool_removed', pool: g.name }, `pool ${g.name}: removed`);
  }

  // ------------------------------------------------------------------ views

  /** Every worker of every group. */
  workers(): WorkerHandle[] {
    return [...this.groups.values()].flatMap((g) => [...g.workers.values()]);
  }

  /** Every listener of every group that stays, each once. */
  get listeners(): Listener[] {
    return [...new Set([...this.groups.values()].filter((g) => !g.leaving).flatMap((g) => g.listeners))];
  }

  get target(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.target;
    return n;
  }

  /** Restarts by reason, over all groups. */
  get restarts(): Record<RestartReason, number> {
    const out = Object.fromEntries(RESTART_REASONS.map((r) => [r, 0])) as Record<RestartReason, number>;
    for (const g of this.groups.values()) for (const r of RESTART_REASONS) out[r] += g.restarts[r];
    return out;
  }

  private groupReady(): void {
    // Once per master: a pool a HUP adds becoming ready is not the arbiter becoming ready.
    if (this.wasReady || ![...this.groups.values()].every((g) => g.ready)) return;
    this.wasReady = true;
    const serving = this.workers().filter((w) => w.state === 'serving').length;
    this.log.info({ event: 'ready', workers: serving }, `ready: ${serving} worker${serving === 1 ? '' : 's'} serving`);
    void this.hooks.run('whenReady', this);
    this.events.emit('ready');
  }

  private groupReloaded(): void {
    if ([...this.groups.values()].some((g) => g.reloading)) return;
    void sd.ready();
    this.events.emit('reloaded');
  }

  // ------------------------------------------------------------------ running

  start(): void {
    this.installSignals();
    for (const g of this.groups.values()) g.maintain();
    this.tick = setInterval(() => {
      const now = Date.now();
      for (const g of this.groups.values()) g.supervise(now);
    }, TICK_MS);
    if (this.settings.reload) void this.watch();
    void this.runSchedules(this.schedules);
  }

  /** Loaded with the first schedule: most arbiters have none (and croner, the brokers, crypto stay unloaded). */
  private async runSchedules(list: Compiled[]): Promise<void> {
    if (this.scheduler) return this.scheduler.update(list, this.settings);
    if (!list.length) return;
    const { Scheduler } = await import('./scheduler.js');
    if (this.scheduler || this.finished) return;
    this.scheduler = new Scheduler(this.log, this.settings);
    this.scheduler.start(list);
  }

  private async watch(): Promise<void> {
    const apps = this.appFiles.length ? [...new Set(this.appFiles.map((f) => path.dirname(f)))] : [process.cwd()];
    const roots = [...apps, ...this.settings.reloadExtraFiles.map((f) => path.resolve(f))];
    this.watcher = await watchCode(roots, this.log, (files) => {
      this.log.info({ event: 'code_changed', files }, `changed: ${files.slice(0, 5).join(', ')}; reloading`);
      void this.reload();
    });
  }

  private installSignals(): void {
    for (const [sig, action] of Object.entries(SIGNALS)) {
      process.on(sig, () => {
        this.log.info({ event: 'signal', signal: sig }, `received ${sig}`);
        try {
          action(this);
        } catch (err) {
          this.log.error({ err }, `error handling ${sig}`);
        }
      });
    }
  }

  /** TTIN/TTOU (`relative`) or `arbiter scale N`. False when stopping or no such group. */
  scale(group: string, n: number, relative = false): boolean {
    const g = this.groups.get(group);
    if (!g || g.leaving || this.stopping) return false;
    return g.scale(relative ? g.target + n : n);
  }

  /** TTIN / TTOU as signals: one worker more or fewer in every pool. */
  scaleAll(by: number): void {
    for (const g of this.groups.values()) if (!g.leaving) this.scale(g.name, by, true);
  }

  reopenLogs(): void {
    reopenErrorLog();
    for (const g of this.groups.values()) g.reopenLogs();
  }

  /** WINCH: let every worker go, keep the master and its sockets (for a USR2 hand-over). */
  winch(): void {
    if (!this.reexecChild) {
      // Gunicorn ignores WINCH unless daemonized; without a new master, stopping every
      // worker would just stop serving.
      this.log.warn({ event: 'winch_ignored' }, 'WINCH ignored: no new master (USR2) is running to take over');
      return;
    }
    for (const g of this.groups.values()) g.winch();
  }

  /**
   * HUP (or `arbiter reload`): new config, new code, new workers; old workers leave as new
   * ones are ready. With `only`, just that pool takes its part of the new config; the master's
   * own settings and the other pools stay as they are.
   */
  async reload(only?: string): Promise<void> {
    if (this.stopping) return;
    void sd.reloading();
    const failed = (err: unknown) => {
      const reason = errorMessage(err);
      this.log.error({ event: 'reload_failed', pool: only, err: String(err) }, `reload failed, keeping the running config: ${only ? `pool ${only}: ` : ''}${reason}`);
      void sd.ready();
      this.events.emit('reloadFailed', reason);
    };
    let next: Awaited<ReturnType<ArbiterOptions['reloadConfig']>>;
    try {
      next = await this.reloadConfig();
      if (only && !next.pools.some((p) => p.name === only)) throw new Error(`pool ${only} is not in the config any more`);
      const plans = next.pools.map((p) => ({ name: p.name, settings: p.settings, listens: classListens(p.settings.workerClass, this.groups.get(p.name)) }));
      checkBinds(only ? plans.filter((p) => p.name === only || this.groups.has(p.name)) : plans, process.cwd());
    } catch (err) {
      return failed(err);
    }
    if (!only) await this.hooks.run('onReload', this);
    const before = this.listeners;
    if (!only) {
      const prev = this.settings;
      this.settings = next.resolved.settings;
      this.configFile = next.resolved.configFile;
      this.hooks = next.hooks;
      await this.onSettings?.(this.settings, prev);
      void this.runSchedules(next.schedules);
    }
    const plans = only ? next.pools.filter((p) => p.name === only) : next.pools;
    for (const plan of plans) await this.reloadPool(plan);
    if (!only) for (const g of this.groups.values()) if (!g.leaving && !plans.some((p) => p.name === g.name)) this.retirePool(g);
    const kept = new Set(this.listeners);
    const leavingHold = new Set([...this.groups.values()].filter((g) => g.leaving).flatMap((g) => g.listeners));
    closeListeners(before.filter((l) => !kept.has(l) && !leavingHold.has(l)), { unlink: true });
  }

  /** One pool takes its new plan, or starts when the config gained it; a bind that fails keeps it as it was. */
  private async reloadPool(plan: PoolPlan): Promise<void> {
    const g = this.groups.get(plan.name);
    const where = this.named ? `pool ${plan.name}: ` : '';
    const s = plan.settings;
    const listens = classListens(s.workerClass, g);
    let listeners: Listener[] = [];
    const same = g && !g.leaving && g.listens === listens && s.bind.join('\n') === g.settings.bind.join('\n');
    // An unchanged bind keeps the listeners as they are, whatever they are labelled (systemd's, a USR2 parent's).
    if (same) listeners = g.listeners;
    else if (listens) {
      try {
        listeners = await bindReusing(this.listeners, s.bind, { reusePort: s.reusePort, cwd: process.cwd(), owner: resolveIds(s.user, s.group) });
      } catch (err) {
        const reason = errorMessage(err);
        this.log.error({ event: 'reload_failed', pool: plan.name, err: String(err) }, `reload failed, keeping the running config: ${where}${reason}`);
        this.events.emit('reloadFailed', where + reason);
        return;
      }
    }
    const config: GroupConfig = { settings: s, configFile: this.configFile, listeners, target: plan.workers, hooks: this.poolHooks(s) };
    const labels = listeners.map((l) => l.label);
    if (!g || g.leaving) {
      if (g) this.forget(g);
      const added = this.addGroup(plan.name, config, listens, true);
      this.log.info({ event: 'pool_added', pool: plan.name, workers: added.target, listeners: labels }, `${where}added: starting ${added.target} worker${added.target === 1 ? '' : 's'}` + (labels.length ? `; listening at ${labels.join(', ')}` : ''));
      added.maintain();
      return;
    }
    const before = g.listeners.map((l) => l.label).join(', ');
    g.listens = listens;
    g.reload(config);
    const after = labels.join(', ');
    this.log.info(
      { event: 'reload', pool: plan.name, generation: g.generation, workers: g.target, listeners: labels },
      `${where}reloading: starting ${g.target} new worker${g.target === 1 ? '' : 's'}` + (before !== after ? `; listening at ${after}` : ''),
    );
  }

  /** A pool the config lost: its workers leave gracefully, then it is forgotten. */
  private retirePool(g: WorkerGroup): void {
    g.leaving = true;
    this.log.info({ event: 'pool_removing', pool: g.name }, `pool ${g.name}: no longer in the config; stopping its workers`);
    g.stopAll(true, false);
  }

  /**
   * USR2: start a new master from the current binary and code, handing it every listener
   * (ARBITER_FDS) and, on one more descriptor (ARBITER_UPGRADE_FD), a pipe on which it says
   * when it serves or why it failed. Both masters serve until the operator sends WINCH and
   * QUIT (or TERM) to the old one (`arbiter upgrade` does that). If the new master dies
   * first, the pidfile is given back.
   */
  async reexec(): Promise<{ pid: number } | { refused: string }> {
    if (this.stopping || this.reexecChild) {
      const refused = this.reexecChild ? `a new master (pid ${this.reexecChild.pid}) is already running` : 'stopping; not re-executing';
      this.log.warn({ event: 'reexec_refused' }, refused);
      return { refused };
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
    const listeners = this.listeners;
    const fds = listeners.map((l, i) => `${REEXEC_FD_BASE + i}=${l.label}`).join(',');
    const handoverFd = REEXEC_FD_BASE + listeners.length;
    const env: NodeJS.ProcessEnv = { ...process.env, [ENV.FDS]: fds, [ENV.UPGRADE_FROM]: String(process.pid), [ENV.UPGRADE_NAME]: this.name, [ENV.UPGRADE_FD]: String(handoverFd) };
    // A daemon's launcher is long gone: the new master must not report to it, but it is still
    // a daemon (its log goes where this one's does).
    if (env[ENV.DAEMON] !== undefined) env[ENV.DAEMON] = '1';
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      cwd: this.launchCwd,
      stdio: ['inherit', 'inherit', 'inherit', ...listeners.map((l) => l.fd), 'pipe'],
      env,
    });
    this.reexecChild = child;
    if (child.pid === undefined) {
      this.reexecChild = null;
      child.on('error', () => {});
      return { refused: 'cannot start a new master (spawn failed)' };
    }
    const pid = child.pid;
    this.log.info({ event: 'reexec', newMaster: pid, listeners: listeners.map((l) => l.label) }, `USR2: started a new master, pid ${pid}; send this master WINCH then QUIT (or TERM) when it serves`);
    let served = false;
    let failure: { reason: string; detail?: string } | null = null;
    let buf = '';
    const handover = child.stdio[handoverFd] as NodeJS.ReadableStream | null;
    handover?.setEncoding('utf8');
    handover?.on('error', () => {});
    handover?.on('data', (chunk: string) => {
      buf += chunk;
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let msg: HandoverMessage;
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        if (msg.t === 'ready' && !served) {
          served = true;
          this.log.info({ event: 'reexec_ready', newMaster: pid }, `the new master ${pid} serves`);
          this.events.emit('upgraded', pid);
        } else if (msg.t === 'failed') failure = { reason: msg.reason, detail: msg.detail };
      }
    });
    child.once('exit', (code, signal) => {
      this.reexecChild = null;
      const how = signal ?? `code ${code}`;
      this.log.error({ event: 'reexec_exit', newMaster: pid, code, signal }, `the new master ${pid} exited (${how})` + (failure ? `: ${failure.reason}` : ''));
      this.events.emit('upgradeEnded', failure?.reason ?? `it exited (${how}) before serving`, failure?.detail, served);
      if (pidfile && !existsSync(pidfile) && existsSync(`${pidfile}.oldbin`)) {
        renameSync(`${pidfile}.oldbin`, pidfile);
        this.log.info({ event: 'pidfile_restored' }, `${pidfile} restored`);
      }
      // WINCH had let our workers go for the new master, which is gone: serve again.
      for (const g of this.groups.values()) g.unwinch();
    });
    child.on('error', (err) => this.log.error({ event: 'reexec_failed', err: String(err) }, `USR2: cannot start a new master: ${err.message}`));
    return { pid };
  }

  // ------------------------------------------------------------------ stopping

  stop(graceful: boolean): void {
    if (this.stopping === 'quick' || (this.stopping === 'graceful' && graceful)) return;
    this.stopping = graceful ? 'graceful' : 'quick';
    // After a USR2 hand-over the new master is systemd's main process; do not stop the unit.
    if (this.reexecChild === null) void sd.stopping();
    this.log.info({ event: 'stopping', graceful }, graceful ? `stopping gracefully (up to ${this.settings.gracefulTimeout} s)` : 'stopping now');
    void this.scheduler?.close();
    // Only a stop of the whole arbiter, with no new master, leaves nobody else to take new connections.
    for (const g of this.groups.values()) g.stopAll(graceful, this.reexecChild === null);
  }

  /** Stop everything and exit with `code` (3: workers cannot boot; 1: a pool is degraded and exitOnDegraded). */
  private halt(code: number, reason: string, detail?: string, graceful = false): void {
    if (this.exitCode === null) this.exitCode = code;
    this.haltReason ??= { reason, detail };
    process.stderr.write(`arbiter: error: ${reason}\n${detail ? indent(detail) + '\n' : ''}`);
    this.stop(graceful);
  }

  private maybeFinished(): void {
    if (this.finished || !this.stopping || this.workers().length > 0) return;
    this.finished = true;
    if (this.tick) clearInterval(this.tick);
    void this.watcher?.close();
    // After USR2 the new master owns the sockets: close ours, but leave the files in place.
    const all = [...new Set([...this.groups.values()].flatMap((g) => g.listeners))];
    closeListeners(all, { unlink: this.reexecChild === null });
    if (this.settings.pidfile && this.reexecChild) rmSync(`${this.settings.pidfile}.oldbin`, { force: true });
    void this.hooks.run('onExit', this).finally(() => this.resolveDone(this.exitCode ?? 0));
  }
}
