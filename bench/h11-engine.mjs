// Micro-benchmark of the h11 engine alone (no sockets): 1e6 requests through
// H11Connection.receive() + respond(), one per chunk (depth 1) and 16 pipelined per chunk.
//
//   node bench/h11-engine.mjs                      the last build (dist/workers/h11/engine)
//   node bench/h11-engine.mjs DIR_A DIR_B [...]    compiled engines side by side: each run is a
//                                                  fresh process, the engines take turns (RUNS rounds)
// env: RUNS (5), N (1e6 requests per depth), REQ (the request, JSON string escapes),
//      NODE_FLAGS (default --single-threaded: no concurrent JIT/GC threads, steadier numbers).
// To compare with an older engine: build it, copy its dist/workers/h11/engine somewhere, pass both.
import { execFileSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

const here = fileURLToPath(import.meta.url);
const REQ = process.env.REQ ? JSON.parse(`"${process.env.REQ}"`) : 'GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: wrk\r\n\r\n';
const N = Number(process.env.N ?? 1e6);

async function child(dir) {
  const { H11Connection } = await import(pathToFileURL(path.join(dir, 'index.js')).href);
  const run = (depth, n) => {
    const chunk = Buffer.from(REQ.repeat(depth), 'latin1');
    const c = new H11Connection({});
    let done = 0;
    const t0 = process.hrtime.bigint();
    while (done < n) {
      let evs = c.receive(Buffer.from(chunk)); // a fresh buffer per read, as a socket gives
      for (;;) {
        let got = false;
        for (let i = 0; i < evs.length; i++) if (evs[i].type === 'end') (c.respond(200, null, 'hello'), done++, (got = true));
        if (!got || c.bufferedBytes === 0) break;
        evs = c.receive();
      }
    }
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  run(1, N / 5), run(16, N / 5); // warm-up
  process.stdout.write(JSON.stringify({ depth1: run(1, N), depth16: run(16, N) }));
}

if (process.argv[2] === '--child') {
  await child(process.argv[3]);
} else {
  const dirs = process.argv.length > 2 ? process.argv.slice(2) : [path.join(here, '../../dist/workers/h11/engine')];
  const runs = Number(process.env.RUNS ?? 5);
  const flags = (process.env.NODE_FLAGS ?? '--single-threaded').split(' ').filter(Boolean);
  const res = dirs.map(() => ({ depth1: [], depth16: [] }));
  for (let r = 0; r < runs; r++) {
    for (let k = 0; k < dirs.length; k++) {
      const out = JSON.parse(execFileSync(process.execPath, [...flags, here, '--child', path.resolve(dirs[k])], { encoding: 'utf8' }));
      res[k].depth1.push(out.depth1);
      res[k].depth16.push(out.depth16);
    }
  }
  const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
  console.log(`${N} requests per run, ms (median of ${runs}; runs in order)`);
  for (let k = 0; k < dirs.length; k++) {
    const row = ['depth1', 'depth16'].map((d) => `${d} ${median(res[k][d]).toFixed(0)} [${res[k][d].map((x) => x.toFixed(0)).join(' ')}]`);
    console.log(`${dirs[k]}\n  ${row.join('\n  ')}`);
  }
}
