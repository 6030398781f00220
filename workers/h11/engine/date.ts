/** Timer-free IMF-fixdate cache for the Date header: recomputed at most once per second, on demand. */
export function createDateCache(now: () => number = Date.now): () => string {
  let sec = -1;
  let str = '';
  return () => {
    const ms = now();
    const s = Math.floor(ms / 1000);
    if (s !== sec) {
      sec = s;
      str = new Date(s * 1000).toUTCString();
    }
    return str;
  };
}
