/**
 * The app's own prom-client metrics, seen from its worker (SPEC §9): the default registry of
 * the prom-client the app itself uses, found from the app's directory, read as
 * `register.getMetricsAsJSON()` when the master asks (a scrape of `metricsBind`) and once
 * more when the worker stops, so that what it counted outlives it. The app writes no code
 * for this. prom-client is never loaded here: an app that does not use it has nothing to
 * report, and one that loads it later is seen from then on.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import type { AppMetric } from '../src/core/protocol.js';

interface Registry {
  getMetricsAsJSON(): Promise<AppMetric[]>;
}

export class AppMetricsSource {
  private readonly require: NodeJS.Require;
  private resolved: string | null | undefined;

  constructor(appFile: string) {
    this.require = createRequire(path.join(path.dirname(appFile), 'index.js'));
  }

  /** The app's default registry, once the app has loaded prom-client; null before (or never). */
  private registry(): Registry | null {
    if (this.resolved === undefined) {
      try {
        this.resolved = this.require.resolve('prom-client');
      } catch {
        this.resolved = null;
      }
    }
    if (this.resolved === null) return null;
    const mod = this.require.cache[this.resolved];
    const register = (mod?.exports as { register?: Registry } | undefined)?.register;
    return register && typeof register.getMetricsAsJSON === 'function' ? register : null;
  }

  /** The metrics now, or null when the app has no prom-client registry. */
  async read(): Promise<AppMetric[] | null> {
    const registry = this.registry();
    if (!registry) return null;
    // Exemplars and timestamps do not cross processes; prom-client's own aggregation drops them too.
    const metrics = await registry.getMetricsAsJSON();
    return metrics.map((m) => ({
      name: m.name,
      help: m.help,
      type: m.type,
      aggregator: m.aggregator,
      values: m.values.map((v) => (v.metricName === undefined ? { value: v.value, labels: v.labels } : { value: v.value, labels: v.labels, metricName: v.metricName })),
    }));
  }
}
