/** Byte sizes as users write them: settings (`maxWorkerMemory`) and the cgroup memory limit. */

/*
 * Byte units. KB/MB/GB/TB are powers of 1000 and KiB/MiB/GiB/TiB powers of 1024, as SI and
 * IEC say; bare K/M/G/T (either case) are 1024-based, because that is what `docker run -m
 * 512m` and Kubernetes-adjacent habits mean by them. Units are case-insensitive.
 */
// A Map, not an object literal, so that `12constructor` cannot find Object.prototype.
const UNITS = new Map<string, number>([
  ['', 1],
  ['b', 1],
  ['k', 1024],
  ['m', 1024 ** 2],
  ['g', 1024 ** 3],
  ['t', 1024 ** 4],
  ['kb', 1000],
  ['mb', 1000 ** 2],
  ['gb', 1000 ** 3],
  ['tb', 1000 ** 4],
  ['kib', 1024],
  ['mib', 1024 ** 2],
  ['gib', 1024 ** 3],
  ['tib', 1024 ** 4],
]);

/** Parses a byte size such as `512MB`, `1.5GiB`, `100k`, `2G` or a plain number of bytes. */
export function parseBytes(text: string | number): number {
  const bad = () =>
    new Error(`invalid byte size ${JSON.stringify(text)}: expected a number of bytes or a number with a unit such as 512MB, 1.5GiB, 100k, 2G`);
  if (typeof text === 'number') {
    if (!Number.isFinite(text) || text < 0) throw bad();
    return Math.floor(text);
  }
  if (typeof text !== 'string') throw bad();
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) throw bad();
  const factor = UNITS.get(m[2]!.toLowerCase());
  if (factor === undefined) throw bad();
  // Fractions of a byte are meaningless; round down so 1.5k is 1536, 0.3k is 307.
  const bytes = Math.floor(Number(m[1]) * factor);
  if (!Number.isSafeInteger(bytes)) throw bad();
  return bytes;
}
