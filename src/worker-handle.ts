/**
 * The master's view of one worker process, and the one state it is in.
 *
 * A worker moves through LIFECYCLE, and only through it: every move is a method here, every
 * method checks the table, and every move that happens is announced to the group's
 * listeners (metrics fold a worker's counters when it exits; `status` and `top` read the
 * state). How long it lived, why the master ended it and what it last reported are facts
 * kept beside the state, not states of their own.
 *
 *     booting ──booted──▶ serving ──retire──▶ retiring
 *        │                 │  ▲                  │
 *        │                 │  └──reinstate───────┤      (a reload whose new code failed)
 *        └──────stop───────┴─────────stop────────┴──▶ stopping(reason) ──exit──▶ exited
 *     kill (timeout) leads to stopping from every live state; exit leads to exited from every
 *     live state (a worker that dies on its own).
 */
import type { ChildProcess } from 'node:child_process';
import { EXIT, type CurrentWork, type MasterMessage, type RetireReason, type StuckReport, type WorkerCounters } from './core/protocol.js';

export type WorkerState = 'booting' | 'serving' | 'retiring' | 'stopping' | 'exited';
export const WORKER_STATES: readonly WorkerState[] = ['booting', 'serving', 'retiring', 'stopping', 'exited'];

export type Move = 'booted' | 'retire' | 'reinstate' | 'stop' | 'kill' | 'exit';

/** Where each move may go from each state. A move a state does not list is refused. */
export const LIFECYCLE: Readonly<Record<WorkerState, Readonly<Partial<Record<Move, WorkerState>>>>> = {
  booting: { booted: 'serving', stop: 'stopping', kill: 'stopping', exit: 'exited' },
  serving: { retire: 'retiring', stop: 'stopping', kill: 'stopping', exit: 'exited' },
  retiring: { reinstate: 'serving', stop: 'stopping', kill: 'stopping', exit: 'exited' },
  stopping: { kill: 'stopping', exit: 'exited' },
  exited: {},
};

/**
 * Why the master ends a worker. `reload`, `memory`, `max-requests` and `timeout` are
 * restarts (counted by reason); `scale-down` and `stop` are not; a worker that exits without
 * having been ended by the master died (`crash`).
 */
export type EndReason = RetireReason | 'reload' | 'timeout' | 'scale-down' | 'stop';
export const RESTART_REASONS = ['timeout', 'memory', 'max-requests', 'crash', 'reload'] as const;
export type RestartReason = (typeof RESTART_REASONS)[number];

export interface Transition {
  worker: WorkerHandle;
  move: Move;
  from: WorkerState;
  to: WorkerState;
  /** The pool the worker belongs to (added by its group). */
  pool?: string;
}

/** What the group gives every handle: where to announce moves. */
export type Announce = (t: Transition) => void;

export class WorkerHandle {
  state: WorkerState = 'booting';
  readonly spawnedAt = Date.now();
  bootedAt: number | undefined;
  lastSeen = this.spawnedAt;
  counters: WorkerCounters | undefined;
  current: CurrentWork | undefined;
  /** Why the master ended (or is ending) it; undefined while it may serve on. */
  reason: EndReason | undefined;
  /** The reload generation that retired it, so a failed reload gives back exactly those. */
  retiredBy: number | undefined;
  /** Where its event loop is stuck, when the master has looked (src/stack-capture.ts). */
  stuck: StuckReport | undefined;
  /** Its inspector's address, while it is open (the worker printed it on stderr). */
  inspector: string | null = null;
  /** The `lastSeen` of the silence the master has looked into (one look per silence). */
  lookedAt: number | undefined;
  /** What the worker said before it exited with EXIT.BOOT. */
  bootError: { message: string; detail?: string } | undefined;
  exit: { code: number | null; signal: NodeJS.Signals | null; from: WorkerState } | undefined;
  private stopMessage: MasterMessage | undefined;

  constructor(
    /** The group (pool) it belongs to. */
    readonly pool: string,
    readonly pid: number,
    /** Gunicorn's "age": the master's sequence number for this worker. */
    readonly age: number,
    /** The reload generation it was started for. */
    readonly generation: number,
    readonly child: ChildProcess,
    private readonly announce: Announce,
  ) {}

  // ------------------------------------------------------------------ moves

  /** It loaded the app and serves. False when it was already being stopped. */
  booted(now = Date.now()): boolean {
    this.bootedAt = now;
    return this.move('booted');
  }

  /** Its replacement is coming: it serves on until the group stops it (see policy.replacements). */
  retire(reason: RetireReason | 'reload', generation?: number): boolean {
    if (!this.move('retire')) return false;
    this.reason = reason;
    this.retiredBy = generation;
    return true;
  }

  /** A failed reload gives it its place back. */
  reinstate(): boolean {
    if (!this.move('reinstate')) return false;
    this.reason = undefined;
    this.retiredBy = undefined;
    return true;
  }

  /** Ask it to stop. A retiring worker keeps the reason it was retired for. */
  stop(reason: EndReason, graceful: boolean, keepAccepting: boolean): boolean {
    if (!this.move('stop')) return false;
    this.reason = this.reason ?? reason;
    this.stopMessage = { t: 'stop', graceful, keepAccepting };
    this.send(this.stopMessage);
    return true;
  }

  /** Send the stop under way again (it reached a worker that was not listening yet). */
  repeatStop(): void {
    if (this.state === 'stopping' && this.stopMessage) this.send(this.stopMessage);
  }

  /** A stop already under way, made quick (INT after TERM, the grace ran out). */
  hurry(): void {
    if (this.state !== 'stopping') return;
    this.stopMessage = { t: 'stop', graceful: false };
    this.send(this.stopMessage);
  }

  /** SIGKILL, for `timeout`: its event loop is stuck and cannot hear a message. */
  kill(reason: 'timeout'): boolean {
    if (!this.move('kill')) return false;
    this.reason = reason;
    this.child.kill('SIGKILL');
    return true;
  }

  /** The process is gone. */
  exited(code: number | null, signal: NodeJS.Signals | null): boolean {
    this.exit = { code, signal, from: this.state };
    return this.move('exit');
  }

  // ------------------------------------------------------------------ facts

  get live(): boolean {
    return this.state !== 'exited';
  }

  /** Counts toward the target: it serves, or will (retiring and stopping ones are on their way out). */
  get counted(): boolean {
    return this.state === 'booting' || this.state === 'serving';
  }

  /** It exited while the master was not stopping it: a crash, an OOM kill, process.exit() in the app. */
  get died(): boolean {
    return this.exit !== undefined && this.exit.from !== 'stopping';
  }

  /** It exited before it ever served, with the code that says the app cannot load. */
  get failedToBoot(): boolean {
    return this.exit !== undefined && this.exit.from === 'booting' && this.exit.code === EXIT.BOOT;
  }

  /** Why it is gone, for the restart counters; null for stops that are not restarts. */
  get restartReason(): RestartReason | null {
    if (this.died) return 'crash';
    return (RESTART_REASONS as readonly string[]).includes(this.reason!) ? (this.reason as RestartReason) : null;
  }

  get livedMs(): number {
    return Date.now() - this.spawnedAt;
  }

  send(msg: MasterMessage): void {
    if (this.child.connected) this.child.send(msg, undefined, undefined, () => {});
  }

  private move(move: Move): boolean {
    const from = this.state;
    const to = LIFECYCLE[from][move];
    if (to === undefined) return false;
    this.state = to;
    this.announce({ worker: this, move, from, to });
    return true;
  }
}
