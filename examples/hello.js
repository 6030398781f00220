// The smallest app arbiter serves: a plain Node request listener.
//   arbiter examples/hello.js:handler -w 2
export function handler(req, res) {
  const body = 'Hello, world!\n';
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

// The same app for the fetch interface: arbiter examples/hello.js:fetchHandler
export function fetchHandler(request) {
  return new Response('Hello, world!\n', { headers: { 'content-type': 'text/plain' } });
}

export default handler;
