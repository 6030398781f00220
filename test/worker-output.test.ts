// One log (issue 12): every worker's stdout and stderr reach the master line by line, tagged
// with pid, age and stream; lines never mix; the last lines before a crash are kept; a
// terminal gets readable one-line events; the error log file is the master's alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync, renameSync } from 'node:fs';
import path from 'node:path';
import { BIN, RUNTIME_DIR, alive, cleanEnv, command, freePort, killTree, request, run, serve, stop, tmpDir, track, waitFor, writeFiles, type LogLine } from './helpers.ts';

const APP = `
console.log('IMPORTED in', process.pid);
export default (req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/marker') { console.log('MARKER-' + url.searchParams.get('id')); console.error('ERR-' + url.searchParams.get('id')); }
  if (url.pathname === '/flood') {
    const n = Number(url.searchParams.get('n'));
    for (let i = 0; i < n; i++) console.log('flood ' + process.pid + ' ' + i + ' ' + 'x'.repeat(i % 200));
  }
  if (url.pathname === '/crash') {
    for (let i = 0; i < 2000; i++) console.log('last ' + i + ' ' + 'y'.repeat(100));
    console.error('LAST-WORDS');
    process.exit(7);
  }
  res.writeHead(200, { 'x-pid': String(process.pid) });
  res.end('ok');
};
`;

function appDir(): string {
  const dir = tmpDir();
  writeFiles(dir, { 'app.mjs': APP });
  return dir;
}

test('an app\'s console.log appears once in the master\'s output, tagged with the worker\'s pid, age and stream', { timeout: 30_000 }, async () => {
  const dir = appDir();
  const port = await freePort();
  const r = await serve(['app.mjs', '-w', '1', '-b', `127.0.0.1:${port}`], { cwd: dir });
  try {
    const res = await request({ port }, { path: '/marker?id=7f3a' });
    const pid = Number(res.headers['x-pid']);
    const line = await r.waitLog((l) => l.msg === 'MARKER-7f3a', 5000, 'the marker');
    assert.equal(line.pid, pid);
    assert.equal(line.role, 'worker');
    assert.equal(line.stream, 'stdout');
    assert.equal(typeof line.age, 'number');
    const err = await r.waitLog((l) => l.msg === 'ERR-7f3a', 5000, 'the stderr marker');
    assert.equal(err.stream, 'stderr');
    assert.equal(err.pid, pid);
    // Once, and never raw: every line of the master's output is a JSON log line.
    const all = r.stderr() + r.stdout();
    assert.equal(all.split('MARKER-7f3a').length - 1, 1);
    for (const l of r.stderr().split('\n').filter(Boolean)) assert.doesNotThrow(() => JSON.parse(l), l);
    // What the app prints when imported: once, from the worker (not from the master's check).
    const imported = r.logs().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('IMPORTED in'));
    assert.equal(imported.length, 1);
    assert.equal(imported[0]!.msg, `IMPORTED in ${pid}`);
  } finally {
    await stop(r);
  }
});

test('2 workers printing 50,000 lines each give 100,000 intact lines', { timeout: 120_000 }, async () => {
  const dir = appDir();
  const port = await freePort();
  const r = await serve(['app.mjs', '-w', '2', '-b', `127.0.0.1:${port}`], { cwd: dir });
  try {
    // Keep asking until both workers have flooded (each connection may land on either; a
    // worker may flood more than once). A response comes after its flood has been written.
    const floods = new Map<number, number>();
    await waitFor(async () => {
      const res = await request({ port }, { path: '/flood?n=50000', timeoutMs: 60_000 });
      const pid = Number(res.headers['x-pid']);
      floods.set(pid, (floods.get(pid) ?? 0) + 1);
      return floods.size === 2;
    }, 60_000, 'both workers to flood');
    const expected = 50_000 * [...floods.values()].reduce((a, b) => a + b, 0);
    const count = () => r.stderr().split('\n').filter((l) => l.includes('"msg":"flood ')).length;
    await waitFor(() => count() >= expected, 30_000, `${expected} flood lines in the log`);
    const seen = new Map<number, number[]>();
    for (const l of r.stderr().split('\n')) {
      if (!l.includes('"msg":"flood ')) continue;
      const rec = JSON.parse(l) as LogLine; // throws on a line that two writers mixed
      const m = /^flood (\d+) (\d+) (x*)$/.exec(rec.msg);
      assert.ok(m, `mangled line: ${l.slice(0, 200)}`);
      const [pid, i] = [Number(m[1]), Number(m[2])];
      assert.equal(rec.pid, pid, 'tagged with the pid of the worker that wrote it');
      assert.equal(m[3]!.length, i % 200, 'the whole line');
      (seen.get(pid) ?? seen.set(pid, []).get(pid)!).push(i);
    }
    // Every flood is complete and in order: 0..49999, once per request the worker served.
    let total = 0;
    for (const [pid, idx] of seen) {
      assert.equal(idx.length, 50_000 * floods.get(pid)!, `worker ${pid}: ${idx.length} lines`);
      for (let k = 0; k < idx.length; k++) assert.equal(idx[k], k % 50_000);
      total += idx.length;
    }
    assert.equal(seen.size, 2);
    assert.ok(total >= 100_000);
  } finally {
    await stop(r);
  }
});

test('the lines a worker writes just before it dies are all in the log, before the line saying it died', { timeout: 30_000 }, async () => {
  const dir = appDir();
  const port = await freePort();
  const r = await serve(['app.mjs', '-w', '1', '-b', `127.0.0.1:${port}`], { cwd: dir });
  try {
    const pid = r.workers()[0]!;
    await request({ port }, { path: '/crash' }).catch(() => {});
    const died = await r.waitLog((l) => l.event === 'worker_exit' && l.worker === pid, 10_000, 'the worker exit');
    const logs = r.logs();
    const at = logs.indexOf(logs.find((l) => l === died) ?? died);
    const before = logs.slice(0, at);
    assert.equal(before.filter((l) => l.pid === pid && typeof l.msg === 'string' && l.msg.startsWith('last ')).length, 2000);
    assert.ok(before.some((l) => l.pid === pid && l.msg === 'LAST-WORDS' && l.stream === 'stderr'));
    assert.equal(died.code, 7);
  } finally {
    await stop(r);
  }
});

test('errorLog is written by the master alone: worker lines go there, USR1 reopens it, workers never open it', { timeout: 30_000 }, async () => {
  const dir = appDir();
  const port = await freePort();
  const file = path.join(dir, 'error.log');
  const r = run(['app.mjs', '-w', '2', '-b', `127.0.0.1:${port}`, '--error-log', file], { cwd: dir });
  const fileLogs = (f = file): LogLine[] => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogLine) : []);
  try {
    await waitFor(() => fileLogs().some((l) => l.event === 'ready'), 15_000, 'ready in the error log');
    await request({ port }, { path: '/marker?id=a1' });
    await waitFor(() => fileLogs().some((l) => l.msg === 'MARKER-a1' && l.role === 'worker'), 5000, 'the marker in the file');
    assert.ok(fileLogs().some((l) => l.event === 'worker_booting'), 'the master\'s own lines are there too');
    for (const w of r.workers()) {
      for (const fd of readdirSync(`/proc/${w}/fd`)) {
        let target = '';
        try {
          target = readlinkSync(`/proc/${w}/fd/${fd}`);
        } catch {
          continue;
        }
        assert.notEqual(target, file, `worker ${w} has the error log open on fd ${fd}`);
      }
    }
    // logrotate: move the file away, USR1, and the next lines start a new file.
    renameSync(file, `${file}.1`);
    r.signal('SIGUSR1');
    await waitFor(() => existsSync(file), 5000, 'a new error log after USR1');
    await request({ port }, { path: '/marker?id=b2' });
    await waitFor(() => fileLogs().some((l) => l.msg === 'MARKER-b2'), 5000, 'the next marker in the new file');
    assert.ok(!readFileSync(`${file}.1`, 'utf8').includes('MARKER-b2'));
    assert.equal(r.stderr(), '', 'nothing goes to stderr');
  } finally {
    await stop(r);
  }
});

test('on a terminal, every line is one readable event: time, level, who, message; no JSON tail', { timeout: 30_000 }, async () => {
  const dir = appDir();
  const port = await freePort();
  const cmd = `exec ${process.execPath} ${BIN} app.mjs -w 2 -b 127.0.0.1:${port}`;
  // script(1) gives arbiter a terminal as its stderr.
  const p = spawn('script', ['-qefc', cmd, '/dev/null'], { cwd: dir, env: { ...cleanEnv(), TERM: 'dumb' }, stdio: ['pipe', 'pipe', 'pipe'] });
  track(p.pid!);
  let out = '';
  p.stdout!.on('data', (d) => (out += d));
  try {
    await waitFor(() => out.includes('ready: 2 workers serving'), 15_000, 'ready on the terminal');
    await request({ port }, { path: '/marker?id=tty' });
    await waitFor(() => out.includes('ERR-tty'), 5000, 'the app output on the terminal');
    const lines = out.replace(/\x1b\[[0-9;]*m/g, '').split(/\r?\n/).filter(Boolean);
    for (const l of lines) {
      assert.match(l, /^\d\d:\d\d:\d\d\.\d{3} (INFO |WARN |ERROR|DEBUG|out  |err  ) (master|worker) \d+( \(age \d+\))?: /, l);
      assert.doesNotMatch(l, /\}\s*$/, `a JSON tail: ${l}`);
    }
    assert.ok(lines.some((l) => / out {3}worker \d+ \(age \d\): MARKER-tty$/.test(l)));
    assert.ok(lines.some((l) => / INFO  master \d+: booting worker with pid \d+$/.test(l)));
  } finally {
    killTree(p.pid!);
  }
});

test('-D without --error-log says where the daemon logs, and logs there', { timeout: 30_000 }, async () => {
  const dir = appDir();
  const port = await freePort();
  const pidfile = path.join(dir, 'd.pid');
  const launched = await command(['app.mjs', '-D', '-n', 'quiet', '-p', pidfile, '-b', `127.0.0.1:${port}`], { cwd: dir, timeoutMs: 20_000 });
  assert.equal(launched.code, 0, launched.stderr);
  const file = path.join(RUNTIME_DIR, 'quiet.log');
  assert.match(launched.stderr, new RegExp(`the daemon logs to ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  const pid = Number(readFileSync(pidfile, 'utf8'));
  track(pid);
  try {
    await request({ port }, { path: '/marker?id=bg' });
    await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').includes('"msg":"MARKER-bg"'), 5000, 'the marker in the daemon log');
    assert.ok(readFileSync(file, 'utf8').includes('"event":"ready"'));
  } finally {
    process.kill(pid, 'SIGTERM');
    await waitFor(() => !alive(pid), 15_000, 'the daemon to stop');
  }
});
