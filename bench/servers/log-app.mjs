// The app of `node bench/logs.mjs`: GET / answers after one console.log line (an app that
// logs each request); GET /flood?n=N prints N lines first (a burst of output).
const LINE = 'x'.repeat(60);
export function handler(req, res) {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/flood') {
    const n = Number(url.searchParams.get('n') ?? 100000);
    for (let i = 0; i < n; i++) console.log(`flood ${i} ${LINE}`);
  } else console.log(`${req.method} ${req.url} ${LINE}`);
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '3' });
  res.end('ok\n');
}
export default handler;
