// The app of the example image (../../Dockerfile): a plain node handler.
export default function handler(req, res) {
  res.writeHead(200, { 'content-type': 'text/plain', 'x-pid': String(process.pid) });
  res.end(`Hello from worker ${process.pid}\n`);
}
