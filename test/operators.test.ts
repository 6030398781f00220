// Operators need no flags (issue 12): names, the runtime directory, commands that wait for
// their outcome and say how it went, and help for every command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FIXTURES, RUNTIME_DIR, alive, command, freePort, request, run, serve, stop, tmpDir, track, waitFor, writeFiles } from './helpers.ts';
import { SETTINGS } from '../src/core/settings.ts';

const PID_APP = path.join(FIXTURES, 'apps', 'pid.js');

interface StatusJson {
  name: string;
  pid: number;
  target: number;
  workers: { pid: number; state: string; pool: string; cpu: number | null; loopDelay: { mean: number; max: number } | null }[];
}

const servingPids = (st: StatusJson) => st.workers.filter((w) => w.state === 'serving').map((w) => w.pid).sort();

test('no control flags: `status --json` lists every arbiter with its real worker pids; the socket is 0600 in a 0700 directory', { timeout: 60_000 }, async () => {
  const a = await serve([PID_APP, '-w', '2', '-b', `127.0.0.1:${await freePort()}`]);
  const b = await serve([PID_APP, '-w', '1', '-b', `127.0.0.1:${await freePort()}`]);
  try {
    // Both derive the name "pid" from the app; the second one gets "pid-2".
    assert.equal(statSync(RUNTIME_DIR).mode & 0o777, 0o700);
    const sockets = readdirSync(RUNTIME_DIR).filter((n) => n.endsWith('.sock')).sort();
    assert.deepEqual(sockets, ['pid-2.sock', 'pid.sock']);
    for (const s of sockets) {
      assert.ok(lstatSync(path.join(RUNTIME_DIR, s)).isSocket());
      assert.equal(statSync(path.join(RUNTIME_DIR, s)).mode & 0o777, 0o600);
    }
    const list = await waitFor(async () => {
      const out = await command(['status', '--json']);
      assert.equal(out.code, 0, out.stderr);
      const all = JSON.parse(out.stdout) as StatusJson[];
      return all.length === 2 && all.every((s) => servingPids(s).length === s.target) ? all : null;
    }, 10_000, 'both arbiters listed with their workers serving');
    const byPid = new Map(list.map((s) => [s.pid, s]));
    assert.deepEqual(servingPids(byPid.get(a.pid)!), a.workers().sort());
    assert.deepEqual(servingPids(byPid.get(b.pid)!), b.workers().sort());
    assert.deepEqual(list.map((s) => s.name).sort(), ['pid', 'pid-2']);

    // The human list: one row each.
    const human = await command(['status']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^NAME\s+PID\s+UPTIME\s+WORKERS\s+CLASS\s+APP\s+LISTENING/m);
    assert.match(human.stdout, new RegExp(`^pid\\s+${a.pid}\\s+\\S+\\s+2/2\\s+http`, 'm'));
    assert.match(human.stdout, new RegExp(`^pid-2\\s+${b.pid}\\s+\\S+\\s+1/1\\s+http`, 'm'));

    // A command that needs one arbiter refuses to guess between two.
    const which = await command(['reload']);
    assert.equal(which.code, 2);
    assert.match(which.stderr, /2 arbiters are running \(pid, pid-2\): pick one with -n NAME/);

    // -p PIDFILE picks one too: here, through a pidfile written for b.
    const pidfile = path.join(tmpDir(), 'b.pid');
    writeFileSync(pidfile, `${b.pid}\n`);
    const byFile = await command(['status', '--json', '-p', pidfile]);
    assert.equal(byFile.code, 0, byFile.stderr);
    assert.equal(JSON.parse(byFile.stdout).pid, b.pid);
  } finally {
    await stop(a);
    await stop(b);
  }
  assert.deepEqual(readdirSync(RUNTIME_DIR).filter((n) => n.endsWith('.sock')), [], 'sockets are removed when the masters exit');
});

test('a stale socket of a master killed with -9 is cleaned up; an explicit name that is taken is refused', { timeout: 60_000 }, async () => {
  const a = await serve([PID_APP, '-n', 'web', '-b', `127.0.0.1:${await freePort()}`]);
  const taken = run([PID_APP, '-n', 'web', '-b', `127.0.0.1:${await freePort()}`]);
  const res = await taken.exited;
  assert.equal(res.code, 1, taken.stderr());
  assert.match(taken.stderr(), /an arbiter named "web" is already running/);
  assert.ok(alive(a.pid));
  const st = await command(['status', '--json', '-n', 'web']);
  assert.equal(JSON.parse(st.stdout).pid, a.pid, 'the first arbiter keeps its name');

  a.signal('SIGKILL');
  await a.exited;
  assert.ok(existsSync(path.join(RUNTIME_DIR, 'web.sock')), 'kill -9 leaves the socket file');
  const after = await command(['status', '--json']);
  assert.equal(after.code, 0, after.stderr);
  assert.deepEqual(JSON.parse(after.stdout), []);
  assert.ok(!existsSync(path.join(RUNTIME_DIR, 'web.sock')), 'status removed the stale socket');
  const gone = await command(['status', '-n', 'web']);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /cannot reach the master/);
  // The name is free again.
  const c = await serve([PID_APP, '-n', 'web', '-b', `127.0.0.1:${await freePort()}`]);
  await stop(c);
});

test('`scale +1 -n NAME` gives 3 workers, `scale -2` one; bad counts are usage errors', { timeout: 60_000 }, async () => {
  const r = await serve([PID_APP, '-w', '2', '-n', 'scaled', '-b', `127.0.0.1:${await freePort()}`]);
  try {
    const up = await command(['scale', '+1', '-n', 'scaled']);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /workers: 2 -> 3/);
    // The command returns once the new count serves.
    const st = JSON.parse((await command(['status', '--json', '-n', 'scaled'])).stdout) as StatusJson;
    assert.equal(st.target, 3);
    assert.equal(servingPids(st).length, 3);
    assert.deepEqual(servingPids(st), r.workers().sort());

    const down = await command(['scale', '-2', '-n', 'scaled']);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /workers: 3 -> 1/);
    await waitFor(() => r.workers().length === 1, 15_000, 'one worker process left');

    for (const args of [['scale', '-1'], ['scale', '0'], ['scale', '+0'], ['scale', 'two']]) {
      const out = await command([...args, '-n', 'scaled']);
      assert.notEqual(out.code, 0, args.join(' '));
      assert.equal(out.stderr.trim().split('\n').length, 1, out.stderr);
    }
  } finally {
    await stop(r);
  }
});

test('`reload -n NAME` waits for the new workers; a syntax error fails it with the error while the old workers serve', { timeout: 90_000 }, async () => {
  const dir = tmpDir();
  const port = await freePort();
  const app = (body: string) => `export default (req, res) => res.end(${JSON.stringify(body)});\n`;
  writeFiles(dir, { 'app.mjs': app('v1') });
  const r = await serve(['app.mjs', '-w', '2', '-n', 'rl', '-b', `127.0.0.1:${port}`], { cwd: dir });
  try {
    writeFiles(dir, { 'app.mjs': app('v2') });
    const before = r.workers().sort();
    const ok = await command(['reload', '-n', 'rl']);
    assert.equal(ok.code, 0, ok.stderr);
    const m = /reloaded: workers ([\d ]+) -> ([\d ]+)/.exec(ok.stdout);
    assert.ok(m, ok.stdout);
    assert.deepEqual(m[1]!.split(' ').map(Number), before);
    const after = m[2]!.split(' ').map(Number).sort();
    assert.equal(after.length, 2);
    assert.ok(after.every((p) => !before.includes(p)));
    // The command returned once the new workers serve: status says so, and so does the app.
    assert.deepEqual(servingPids(JSON.parse((await command(['status', '--json', '-n', 'rl'])).stdout)), after);
    assert.equal((await request({ port })).body, 'v2');
    await waitFor(() => r.workers().length === 2, 15_000, 'the old workers to leave');

    writeFiles(dir, { 'app.mjs': 'export default (req, res) => { res.end("v3" ;\n' });
    const bad = await command(['reload', '-n', 'rl']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^arbiter: error: reload failed: .*SyntaxError/m);
    assert.match(bad.stderr, new RegExp(`workers ${after.join(' ')} keep serving`));
    assert.deepEqual(r.workers().sort(), after);
    for (let i = 0; i < 5; i++) assert.equal((await request({ port })).body, 'v2');

    // A config file that changes a setting: the command says which.
    writeFiles(dir, { 'app.mjs': app('v4'), 'arbiter.conf.json': JSON.stringify({ timeout: 45 }) });
    const changed = await command(['reload', '-n', 'rl']);
    assert.equal(changed.code, 0, changed.stderr);
    assert.match(changed.stdout, /changed: timeout 30 -> 45/);
  } finally {
    await stop(r);
  }
});

test('`upgrade -n NAME`: afterwards `status -n NAME` answers from the new master; a failing new master leaves the old one reachable', { timeout: 120_000 }, async () => {
  const dir = tmpDir();
  const port = await freePort();
  writeFiles(dir, { 'app.mjs': 'export default (req, res) => res.end(String(process.ppid));\n' });
  const r = await serve(['app.mjs', '-w', '2', '-n', 'up', '-b', `127.0.0.1:${port}`], { cwd: dir });
  let next: number | null = null;
  try {
    const up = await command(['upgrade', '-n', 'up'], { timeoutMs: 90_000 });
    assert.equal(up.code, 0, up.stderr);
    const m = /upgraded: master (\d+) -> (\d+)/.exec(up.stdout);
    assert.ok(m, up.stdout);
    assert.equal(Number(m[1]), r.pid);
    next = Number(m[2]);
    track(next);
    assert.notEqual(next, r.pid);
    assert.deepEqual(await r.exited, { code: 0, signal: null });
    const st = await command(['status', '--json', '-n', 'up']);
    assert.equal(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout) as StatusJson;
    assert.equal(s.pid, next);
    assert.equal(servingPids(s).length, 2);
    assert.equal((await request({ port })).body, String(next));

    // The next upgrade fails (the app no longer loads): the serving master stays reachable.
    writeFiles(dir, { 'app.mjs': 'export default (req, res) => { ;\n' });
    const fail = await command(['upgrade', '-n', 'up'], { timeoutMs: 90_000 });
    assert.equal(fail.code, 1);
    assert.match(fail.stderr, /the new master failed: .*SyntaxError.*; master \d+ keeps serving/);
    const still = await command(['status', '--json', '-n', 'up']);
    assert.equal(still.code, 0, still.stderr);
    assert.equal(JSON.parse(still.stdout).pid, next);
    assert.equal((await request({ port })).body, String(next));
  } finally {
    if (next !== null && alive(next)) {
      process.kill(next, 'SIGTERM');
      await waitFor(() => !alive(next!), 20_000, 'the new master to stop');
    } else if (alive(r.pid)) await stop(r);
  }
});

test('the default runtime directory is $XDG_RUNTIME_DIR/arbiter, else a private one per uid in the temp dir', { timeout: 30_000 }, async () => {
  const xdg = tmpDir();
  const port = await freePort();
  const env = { ARBITER_RUNTIME_DIR: '', XDG_RUNTIME_DIR: xdg };
  const r = await serve([PID_APP, '-n', 'xdg', '-b', `127.0.0.1:${port}`], { env });
  try {
    const sock = path.join(xdg, 'arbiter', 'xdg.sock');
    assert.ok(lstatSync(sock).isSocket());
    assert.equal(statSync(path.join(xdg, 'arbiter')).mode & 0o777, 0o700);
    const st = await command(['status', '--json', '-n', 'xdg'], { env });
    assert.equal(JSON.parse(st.stdout).pid, r.pid);
  } finally {
    await stop(r);
  }
  const name = `tmp-${process.pid}`;
  const t = await serve([PID_APP, '-n', name, '-b', `127.0.0.1:${port}`], { env: { ARBITER_RUNTIME_DIR: '', XDG_RUNTIME_DIR: '' } });
  try {
    const dir = path.join(os.tmpdir(), `arbiter-${process.getuid!()}`);
    assert.ok(lstatSync(path.join(dir, `${name}.sock`)).isSocket());
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(dir).uid, process.getuid!());
  } finally {
    await stop(t);
  }
});

test('help: `arbiter help status` and `arbiter status --help`; --help fits 80 and 120 columns without cutting a word', { timeout: 30_000 }, async () => {
  const a = await command(['help', 'status']);
  const b = await command(['status', '--help']);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(a.stdout, b.stdout);
  assert.match(a.stdout, /^Usage: arbiter status \[--json\]/);
  assert.match(a.stdout, /-n, --name NAME/);
  for (const cmd of ['reload', 'scale', 'stop', 'upgrade', 'top', 'enqueue', 'dlq', 'help']) {
    const h = await command([cmd, '--help']);
    assert.equal(h.code, 0, `${cmd}: ${h.stderr}`);
    assert.match(h.stdout, new RegExp(`^Usage: arbiter ${cmd}`), cmd);
  }
  const unknown = await command(['help', 'frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  assert.equal((await command(['help'])).stdout, (await command(['--help'])).stdout);

  for (const columns of [80, 120]) {
    const { stdout, code } = await command(['--help'], { env: { COLUMNS: String(columns) } });
    assert.equal(code, 0);
    const lines = stdout.split('\n');
    for (const l of lines) assert.ok(l.length <= columns, `over ${columns} columns: ${JSON.stringify(l)}`);
    assert.ok(/^[\x20-\x7e\n]*$/.test(stdout), 'plain ASCII');
    // No word cut: every word of every setting's text appears whole in the help.
    const words = new Set(stdout.split(/\s+/));
    for (const s of SETTINGS) {
      if ((s as { cli?: boolean }).cli === false) continue;
      for (const w of s.doc.replace(/`/g, '').replace(/…/g, '...').split(/\s+/)) assert.ok(words.has(w), `"${w}" of ${s.name} is cut at ${columns} columns`);
    }
    // Values as users write them, each flag once.
    assert.match(stdout, /--graceful-timeout SECONDS/);
    assert.doesNotMatch(stdout, /--graceful-timeout, --graceful-timeout/);
    assert.doesNotMatch(stdout, /\[string\]/);
    assert.match(stdout, /-w, --workers INT\|auto/);
    assert.match(stdout, /--interface auto\|node\|fetch/);
    assert.match(stdout, /\(default: 30 s\)/);
  }
  // Not a terminal and no COLUMNS: 80.
  const plain = await command(['--help'], { env: { COLUMNS: '' } });
  assert.ok(plain.stdout.split('\n').every((l) => l.length <= 80));
  assert.ok(plain.stdout.split('\n').some((l) => l.length > 70), 'and it uses the width');
  assert.equal(readFileSync(path.join(FIXTURES, '..', '..', 'README.md'), 'utf8').includes('--graceful-timeout` `--graceful-timeout'), false);
});
