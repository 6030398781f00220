// The h11 request object as a stream, side by side with node:http: every way apps and body
// parsers read a body (events, pipe, async iteration, 'readable', stream.finished, raw-body,
// express.json, listeners attached late, pause/resume) gives the same answer under -k h11 as
// under a plain http.createServer, for requests with no body (born ended, see node.ts), a
// Content-Length body and a chunked body, on fresh and on kept-alive connections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, freePort, serve, stop, tmpDir, writeFiles } from './helpers.ts';

const APP = `
import { Writable, finished } from 'node:stream';
import { createRequire } from 'node:module';
const require = createRequire(${JSON.stringify(path.join(ROOT, 'package.json'))});
const getRawBody = require('raw-body');
const express = require('express');

const json = express.json();
const reply = (res, o) => res.end(JSON.stringify(o));

export function handler(req, res) {
  const log = [];
  const url = req.url;
  if (url === '/events' || url === '/late') {
    const attach = () => {
      let n = 0;
      req.on('data', (c) => (n += c.length));
      req.on('end', () => log.push('end:' + n + ':' + req.complete));
      req.on('close', () => {
        log.push('close:' + req.readableEnded + ':' + req.destroyed);
        reply(res, log);
      });
    };
    if (url === '/late') setTimeout(attach, 20);
    else attach();
  } else if (url === '/pipe') {
    const parts = [];
    const sink = new Writable({ write(c, _e, cb) { parts.push(c); cb(); } });
    sink.on('finish', () => reply(res, ['finish', Buffer.concat(parts).toString()]));
    req.pipe(sink);
  } else if (url === '/iter') {
    (async () => {
      let s = '';
      for await (const c of req) s += c;
      reply(res, ['iter', s, req.readableEnded]);
    })();
  } else if (url === '/readable') {
    let s = '';
    let readables = 0;
    req.on('readable', () => {
      readables++;
      let c;
      while ((c = req.read()) !== null) s += c;
    });
    req.on('end', () => reply(res, ['readable', s, readables > 0]));
  } else if (url === '/finished') {
    req.resume();
    finished(req, (err) => reply(res, ['finished', err ? err.code : null, req.readableEnded]));
  } else if (url === '/raw-body') {
    getRawBody(req).then((b) => reply(res, ['raw-body', b.toString()]), (e) => reply(res, ['raw-body error', e.message]));
  } else if (url === '/json') {
    json(req, res, (err) => reply(res, ['json', err ? err.message : req.body ?? null, req.readableEnded]));
  } else if (url === '/pause') {
    let s = '';
    req.pause();
    req.on('data', (c) => (s += c));
    log.push('paused:' + req.isPaused());
    setTimeout(() => {
      req.on('end', () => reply(res, [...log, 'end', s]));
      req.resume();
    }, 10);
  } else if (url === '/ignore') {
    req.on('end', () => log.push('end'));
    reply(res, ['ignored']);
  } else {
    res.statusCode = 404;
    res.end();
  }
}
`;

const ROUTES = ['/events', '/late', '/pipe', '/iter', '/readable', '/finished', '/raw-body', '/json', '/pause', '/ignore'];
const BODIES: { name: string; method: string; headers: Record<string, string>; body?: string }[] = [
  { name: 'GET, no body', method: 'GET', headers: {} },
  { name: 'POST, Content-Length', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': '13' }, body: '{"a":"hello"}' },
  { name: 'POST, chunked', method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, body: '{"b":[1,2,3]}' },
];

function ask(port: number, agent: http.Agent | false, route: string, b: (typeof BODIES)[number]): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: route, method: b.method, headers: b.headers, agent }, (res) => {
      let s = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (s += d));
      res.on('end', () => resolve(`${res.statusCode} ${s}`));
    });
    req.setTimeout(5000, () => req.destroy(new Error(`${route} timed out`)));
    req.on('error', reject);
    if (b.body !== undefined && b.headers['transfer-encoding'] === 'chunked') {
      // two chunks, so the body arrives in pieces
      req.write(b.body.slice(0, 5));
      setTimeout(() => req.end(b.body!.slice(5)), 5);
    } else req.end(b.body);
  });
}

async function answers(port: number, agent: http.Agent | false): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const b of BODIES) for (const r of ROUTES) out[`${b.name} ${r}`] = await ask(port, agent, r, b);
  return out;
}

test('the h11 request stream reads like node:http for every reading style, with and without a body', { timeout: 60_000 }, async () => {
  const dir = tmpDir('h11-streams-');
  writeFiles(dir, { 'app.mjs': APP });
  const { handler } = await import(pathToFileURL(path.join(dir, 'app.mjs')).href);
  const bare = http.createServer(handler);
  await new Promise<void>((r) => bare.listen(0, '127.0.0.1', r));
  const barePort = (bare.address() as { port: number }).port;
  const port = await freePort();
  const h11 = await serve([path.join(dir, 'app.mjs') + ':handler', '-k', 'h11', '-w', '1', '-b', `127.0.0.1:${port}`]);
  try {
    const expected = await answers(barePort, false);
    // every route answered something sensible on node:http
    for (const [k, v] of Object.entries(expected)) assert.match(v, /^200 \[/, `${k} on node:http`);
    assert.deepEqual(await answers(port, false), expected, 'a new connection per request');
    const keep = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      assert.deepEqual(await answers(port, keep), expected, 'one kept-alive connection');
    } finally {
      keep.destroy();
    }
  } finally {
    bare.close();
    await stop(h11);
  }
});
