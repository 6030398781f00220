/**
 * The broker URL grammar, in one place: the settings table checks `broker` with it, the
 * factory (open.ts) dispatches on it, the commands redact it for display.
 *
 *   spool:PATH              embedded spool directory (relative to chdir / the current directory)
 *   redis://[:PASS@]HOST[:PORT][/DB]   Redis Streams; rediss:// for TLS
 */
export type BrokerUrl = { kind: 'spool'; path: string } | { kind: 'redis'; url: string };

export const DEFAULT_BROKER = 'spool:.arbiter-spool';

const EXPECTED = 'spool:PATH or redis://HOST:PORT/DB (rediss:// for TLS)';

export function parseBrokerUrl(url: string): BrokerUrl | null {
  if (url.startsWith('spool:')) return { kind: 'spool', path: url.slice('spool:'.length) || '.arbiter-spool' };
  if (/^rediss?:\/\/./.test(url)) return { kind: 'redis', url };
  return null;
}

/** For the settings table: what was expected, or null when `url` is a broker URL. */
export function brokerUrlProblem(url: string): string | null {
  return parseBrokerUrl(url) ? null : EXPECTED;
}

/** The URL without its password, for logs and command output. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
