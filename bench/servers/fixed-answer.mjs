// The fixed bytes raw-net.mjs and raw-handle.mjs answer with, and how they count request
// heads: the same hello response as examples/hello.js, its Date refreshed every second.
const body = 'Hello, world!\n';
const head = (close) =>
  `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n` +
  `Date: ${new Date().toUTCString()}\r\n${close ? 'Connection: close\r\n' : ''}\r\n${body}`;
let keep = head(false);
/** The answer that closes the connection. */
export const closing = head(true);
const repeated = [''];
setInterval(() => {
  keep = head(false);
  repeated.length = 1;
}, 1000).unref();

/** n keep-alive answers in one string. */
export const answers = (n) => (repeated[n] ??= keep.repeat(n));

/**
 * Reads of one connection: each call takes the bytes read (latin1) and returns how many
 * request heads they completed, negated when one asked to close (no object per read). A
 * "\r\n\r\n" may straddle reads.
 */
export function headCounter() {
  let tail = '';
  return (text) => {
    const s = tail + text;
    let n = 0;
    for (let i = s.indexOf('\r\n\r\n'); i !== -1; i = s.indexOf('\r\n\r\n', i + 4)) n++;
    tail = s.slice(-3);
    return n > 0 && (s.includes('onnection: close') || s.includes('onnection: Close')) ? -n : n;
  };
}
