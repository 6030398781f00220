/**
 * Signals that arrive while arbiter is starting, before the master's own handlers exist.
 * Node's default action for TERM, INT, QUIT and HUP is to die on the spot, which would leave
 * a pidfile, a unix socket or a half-started arbiter behind; so these handlers are the first
 * thing a start installs. TERM, INT and QUIT stop the start cleanly (exit 0); the others are
 * noted and ignored: there are no workers yet to reload, scale or replace.
 */
export const STOPPING_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGQUIT'];

/** Every signal the master acts on (its SIGNALS table, src/master.ts, has one entry each). */
export const MASTER_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGTTIN', 'SIGTTOU', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const;
export type MasterSignal = (typeof MASTER_SIGNALS)[number];

export class StartSignals {
  /** The stop that was asked for, if any. */
  stopBy: NodeJS.Signals | null = null;
  /** Resolves when a stop is asked for. */
  readonly stopped: Promise<NodeJS.Signals>;
  readonly ignored: NodeJS.Signals[] = [];
  private resolveStopped!: (sig: NodeJS.Signals) => void;
  private readonly handlers = new Map<NodeJS.Signals, () => void>();

  /**
   * `takeEarlier` stops whoever noted signals before this existed (bin/arbiter, from its first
   * line) and says which came. It is called only once these handlers are in place: a signal's
   * last listener going away closes Node's handle for it, and a signal the kernel already
   * delivered to that handle, not yet read by the event loop, would be lost (or, between the
   * two, take Node's default action and kill the start).
   */
  constructor(signals: readonly NodeJS.Signals[], takeEarlier: () => readonly NodeJS.Signals[] = () => []) {
    this.stopped = new Promise((resolve) => (this.resolveStopped = resolve));
    for (const sig of signals) {
      const handler = STOPPING_SIGNALS.includes(sig)
        ? () => {
            this.stopBy ??= sig;
            this.resolveStopped(sig);
          }
        : () => void this.ignored.push(sig);
      this.handlers.set(sig, handler);
      process.on(sig, handler);
    }
    for (const sig of takeEarlier()) this.handlers.get(sig)?.();
  }

  /** The master has taken over: its own handlers are installed (the same rule as above). */
  remove(): void {
    for (const [sig, handler] of this.handlers) process.off(sig, handler);
    this.handlers.clear();
  }
}
