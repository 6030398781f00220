/**
 * The app's own prom-client metrics on the master's `/metrics` (SPEC §9), with no code in the
 * app: every scrape asks each worker for its registry (workers/app-metrics.ts), and the
 * answers are merged the way prom-client's cluster aggregation (AggregatorRegistry) merges
 * them: series grouped by name and labels, combined by the metric's `aggregator` (sum by
 * default: counters and histograms add up; a gauge may say first, min, max, average or
 * omit). The master never loads prom-client; this is the part of it that it needs.
 *
 * A worker that exits takes its gauges with it but not its counts: the counters and
 * histograms it last reported (it reports once more when it stops) are kept in a running
 * sum, as arbiter's own request counters are, so a total never goes backwards across
 * reloads, recycling and crashes.
 */
import type { Logger } from './core/logging.js';
import type { AppMetric, WorkerMessage } from './core/protocol.js';
import type { Arbiter } from './master.js';
import type { Transition, WorkerHandle } from './worker-handle.js';

type Value = AppMetric['values'][number];
type Combine = (values: Value[]) => number;

/** prom-client's aggregators (lib/metricAggregators.js), by name. `omit` drops the metric. */
export const AGGREGATORS: Record<string, Combine | null> = {
  sum: (v) => v.reduce((p, c) => p + c.value, 0),
  first: (v) => v[0]!.value,
  min: (v) => v.reduce((p, c) => Math.min(p, c.value), Infinity),
  max: (v) => v.reduce((p, c) => Math.max(p, c.value), -Infinity),
  average: (v) => v.reduce((p, c) => p + c.value, 0) / v.length,
  omit: null,
};

/** The key prom-client groups a value by: its series name and its labels. */
function seriesKey(v: Value): string {
  const labels = Object.keys(v.labels).sort().map((k) => `${k}=${String(v.labels[k])}`).join(',');
  return `${v.metricName ?? ''}\n${labels}`;
}

/**
 * Merge the registries of several workers into one, as AggregatorRegistry.aggregate does:
 * per metric name, the first worker's help, type and aggregator; per series, the aggregator
 * applied to every worker's value. An unknown aggregator keeps the first worker's values.
 */
export function aggregate(registries: readonly (readonly AppMetric[])[]): AppMetric[] {
  const byName = new Map<string, AppMetric[]>();
  for (const reg of registries) for (const m of reg) (byName.get(m.name) ?? byName.set(m.name, []).get(m.name)!).push(m);
  const out: AppMetric[] = [];
  for (const [name, metrics] of byName) {
    const first = metrics[0]!;
    const aggregator = first.aggregator ?? 'sum';
    const combine = Object.hasOwn(AGGREGATORS, aggregator) ? AGGREGATORS[aggregator]! : AGGREGATORS.first!;
    if (combine === null) continue;
    const series = new Map<string, Value[]>();
    for (const m of metrics) for (const v of m.values) (series.get(seriesKey(v)) ?? series.set(seriesKey(v), []).get(seriesKey(v))!).push(v);
    const values: Value[] = [];
    for (const vs of series.values()) {
      const v: Value = { value: combine(vs), labels: vs[0]!.labels };
      if (vs[0]!.metricName !== undefined) v.metricName = vs[0]!.metricName;
      values.push(v);
    }
    out.push({ name, help: first.help, type: first.type, aggregator, values });
  }
  return out;
}

/** What outlives a worker: counters and histograms that add up across workers. */
function lasting(m: AppMetric): boolean {
  return (m.type === 'counter' || m.type === 'histogram') && (m.aggregator ?? 'sum') === 'sum';
}

function num(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const escapeHelp = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');

/** The Prometheus text exposition (0.0.4) of merged metrics. */
export function renderAppMetrics(metrics: readonly AppMetric[]): string {
  let out = '';
  for (const m of metrics) {
    out += `# HELP ${m.name} ${escapeHelp(m.help)}\n# TYPE ${m.name} ${m.type}\n`;
    for (const v of m.values) {
      const labels = Object.entries(v.labels).map(([k, x]) => `${k}="${escapeLabel(String(x))}"`).join(',');
      out += `${v.metricName ?? m.name}${labels ? `{${labels}}` : ''} ${num(v.value)}\n`;
    }
  }
  return out;
}

/** How long a scrape waits for the workers' answers; a worker that is late counts with its last one. */
const ASK_MS = 1000;
/** How long an exited worker's last report waits for a late final one before it is summed. */
const SETTLE_MS = 1000;

/**
 * Collects the app's metrics from an arbiter's workers. One per arbiter, made when the
 * metrics endpoint opens (metrics.ts).
 */
export class AppMetricsCollector {
  private seq = 0;
  /** Each worker's last report, by pid. */
  private readonly last = new Map<number, AppMetric[]>();
  /** Counters and histograms of every worker gone, summed. */
  private retired: AppMetric[] = [];
  private readonly waiting = new Map<number, { left: Set<number>; done: () => void }>();
  private readonly warned = new Set<string>();
  /** Workers whose messages this collector hears. */
  private readonly heard = new WeakSet<WorkerHandle>();

  constructor(
    private readonly arbiter: Arbiter,
    private readonly log: Logger,
  ) {
    arbiter.events.on('transition', this.onTransition);
  }

  private readonly onTransition = (t: Transition) => {
    if (t.move === 'booted') this.hear(t.worker);
    if (t.to === 'exited') this.onExit(t.worker.pid);
  };

  private hear(w: WorkerHandle): void {
    if (this.heard.has(w)) return;
    this.heard.add(w);
    w.child.on('message', (msg: WorkerMessage) => this.onMessage(w, msg));
  }

  private onMessage(w: WorkerHandle, msg: WorkerMessage): void {
    if (!msg || typeof msg !== 'object' || msg.t !== 'metrics') return;
    if (Array.isArray(msg.metrics)) this.last.set(w.pid, msg.metrics);
    const wait = this.waiting.get(msg.id);
    if (wait?.left.delete(w.pid) && wait.left.size === 0) wait.done();
  }

  private onExit(pid: number): void {
    if (!this.last.has(pid)) return;
    // Until then its last report counts as a live one.
    setTimeout(() => {
      const report = this.last.get(pid);
      this.last.delete(pid);
      if (report) this.retired = aggregate([this.retired, report.filter(lasting)]);
    }, SETTLE_MS).unref();
  }

  /** Ask every serving worker, wait (briefly) for the answers. */
  private ask(): Promise<void> {
    const targets = this.arbiter.workers().filter((w) => (w.state === 'serving' || w.state === 'retiring') && w.child.connected);
    for (const w of this.arbiter.workers()) this.hear(w);
    if (targets.length === 0) return Promise.resolve();
    const id = ++this.seq;
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve();
      };
      const timer = setTimeout(done, ASK_MS);
      this.waiting.set(id, { left: new Set(targets.map((w) => w.pid)), done });
      for (const w of targets) w.send({ t: 'metrics', id });
    });
  }

  /** The app's metrics, merged over all workers past and present, as Prometheus text ('' when the app has none). */
  async render(reserved: (name: string) => boolean): Promise<string> {
    await this.ask();
    const merged = aggregate([...this.last.values(), this.retired]).filter((m) => {
      if (!reserved(m.name)) return true;
      if (!this.warned.has(m.name)) {
        this.warned.add(m.name);
        this.log.warn({ event: 'app_metric_clash', metric: m.name }, `the app's metric ${m.name} has the name of one of arbiter's; it is left out`);
      }
      return false;
    });
    return renderAppMetrics(merged);
  }

  close(): void {
    this.arbiter.events.off('transition', this.onTransition);
  }
}

const collectors = new WeakMap<Arbiter, AppMetricsCollector>();

/** The one collector for this arbiter (created on first use). */
export function appMetricsFor(arbiter: Arbiter, log: Logger): AppMetricsCollector {
  let c = collectors.get(arbiter);
  if (!c) collectors.set(arbiter, (c = new AppMetricsCollector(arbiter, log)));
  return c;
}
