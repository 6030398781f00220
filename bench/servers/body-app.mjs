// The hello handler, but reading its (empty) request body through 'data'/'end' before it
// answers, as many handlers and body parsers (raw-body, express.json) do: what the request
// object's stream machinery costs.
//   arbiter bench/servers/body-app.mjs:handler -k h11
export function handler(req, res) {
  let n = 0;
  req.on('data', (chunk) => (n += chunk.length));
  req.on('end', () => {
    const body = `Hello, world! (${n})\n`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}

export default handler;
