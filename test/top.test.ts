// `arbiter top` (issue 12): a live view in a real terminal (tmux), its rates, and the
// numbers it is built from (CPU from /proc, event-loop delay from the workers' heartbeats).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { BIN, FIXTURES, RUNTIME_DIR, command, freePort, request, safeKill, serve, sleep, stop, waitFor } from './helpers.ts';
import { frame, rowOf, sampleOf } from '../src/commands/top.ts';
import type { Status } from '../src/control.ts';
import { cpuSeconds, statFields } from '../src/procstat.ts';

const PID_APP = path.join(FIXTURES, 'apps', 'pid.js');

test('/proc/PID/stat is read after the last ")": a command name with spaces and parentheses', () => {
  const stat = '4133 (arbiter worker [my (app) x]) S 4120 4120 4120 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 11 0 100 1000000 2000 18446744073709551615';
  const f = statFields(stat);
  assert.equal(f[0], 'S');
  assert.equal(f[1], '4120');
  assert.equal(f[11], '250');
  assert.equal(f[12], '75');
  const mine = cpuSeconds(process.pid);
  assert.ok(mine !== null && mine > 0, `this process has used CPU: ${mine}`);
  assert.equal(cpuSeconds(2 ** 22 + 12345), null);
});

test('rates are the difference between two samples over the time between them', () => {
  const st = (requests: number, cpu: number): Status => ({
    name: 'x', pid: 1, uptime: 10, version: '0', workerClass: 'http', app: 'a.js', listeners: ['127.0.0.1:1'], target: 1,
    restarts: { crash: 2, reload: 1 },
    pools: [],
    schedules: [],
    workers: [{ pid: 7, pool: 'main', age: 1, state: 'serving', uptime: 9, requests, active: 3, rss: 50 * 1024 * 1024, cpu, loopDelay: { mean: 0.4, max: 12.5 }, heartbeatAgo: 0.2 }],
  });
  const first = st(100, 1.0);
  const second = st(350, 1.5);
  const row = rowOf(second.workers[0]!, sampleOf(first, 1000), 3000);
  assert.equal(row.rate, '125.0');
  assert.equal(row.cpu, '25.0');
  assert.equal(row.loop, '0.4/12.5');
  assert.equal(row.active, '3');
  assert.equal(rowOf(first.workers[0]!, null, 1000).rate, '-', 'nothing to compare with yet');
  const lines = frame(second, sampleOf(first, 1000), 3000, 60);
  assert.ok(lines.every((l) => l.length <= 60));
  assert.ok(lines.some((l) => /restarts: crash 2, reload 1/.test(l)));
  assert.ok(lines.some((l) => /^PID\s+STATE\s+AGE\s+UPTIME\s+REQ\/S\s+IN FLIGHT\s+RSS\s+CPU%/.test(l)));
});

test('workers report their event-loop delay; status carries it with the CPU time', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '1', '-n', 'eld', '-b', `127.0.0.1:${port}`, '--heartbeat-interval', '0.2']);
  try {
    const st = await waitFor(async () => {
      const s = JSON.parse((await command(['status', '--json', '-n', 'eld'])).stdout) as Status;
      const w = s.workers[0];
      return w?.loopDelay && w.cpu !== null ? s : null;
    }, 10_000, 'a heartbeat with the loop delay');
    const w = st.workers[0]!;
    assert.ok(w.loopDelay!.mean >= 0 && w.loopDelay!.max >= w.loopDelay!.mean, JSON.stringify(w.loopDelay));
    assert.ok(w.loopDelay!.max < 1000, 'an idle worker has no long delays');
    assert.ok(w.cpu! > 0);
  } finally {
    await stop(r);
  }
});

function tmux(sock: string, ...args: string[]): string {
  const r = spawnSync('tmux', ['-L', sock, ...args], { encoding: 'utf8', timeout: 10_000, env: { ...process.env, ARBITER_RUNTIME_DIR: RUNTIME_DIR, PS1: '$ ', TERM: 'xterm-256color' } });
  if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

test('`arbiter top` in a terminal (tmux): every worker, updated every second; q gives the terminal back', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '3', '-n', 'topped', '-b', `127.0.0.1:${port}`]);
  // A private tmux server: this test's environment, nobody else's sessions.
  const sock = `arbiter-top-${process.pid}`;
  tmux(sock, 'new-session', '-d', '-s', 'top', '-x', '120', '-y', '30', 'bash --norc --noprofile');
  const screen = () => tmux(sock, 'capture-pane', '-p', '-t', 'top');
  try {
    tmux(sock, 'send-keys', '-t', 'top', 'S=$(stty -g); clear', 'Enter');
    tmux(sock, 'send-keys', '-t', 'top',
      `${process.execPath} ${BIN} top -n topped; echo "TOP-EXIT=$? SAME-TTY=$([ "$(stty -g)" = "$S" ] && echo yes || echo no)"`, 'Enter');
    const workers = r.workers();
    assert.equal(workers.length, 3);
    const first = await waitFor(() => {
      const s = screen();
      return workers.every((p) => new RegExp(`^${p}\\s+serving\\s+\\d+`, 'm').test(s)) ? s : null;
    }, 15_000, `every worker on the screen:\n${screen()}`);
    assert.match(first, /arbiter top - topped: master \d+/);
    assert.match(first, /PID\s+STATE\s+AGE\s+UPTIME\s+REQ\/S\s+IN FLIGHT\s+RSS\s+CPU%\s+LOOP MS/);

    // It updates: requests show up as a rate, and a replaced worker as a new row.
    for (let i = 0; i < 30; i++) await request({ port });
    await waitFor(() => /^\d+\s+serving\s+\d+\s+\S+\s+[1-9][\d.]*\s/m.test(screen()), 10_000, `a request rate:\n${screen()}`);
    safeKill(workers[0]!, 'SIGKILL');
    const replaced = await waitFor(() => {
      const now = r.workers();
      const s = screen();
      return now.length === 3 && !now.includes(workers[0]!) && now.every((p) => new RegExp(`^${p}\\s+serving`, 'm').test(s)) && !new RegExp(`^${workers[0]}\\s`, 'm').test(s) ? s : null;
    }, 15_000, `the replacement on the screen:\n${screen()}`);
    assert.match(replaced, /restarts: .*crash 1/);
    const clock = (s: string) => /(\d\d:\d\d:\d\d)\s*$/m.exec(s.split('\n')[0]!)?.[1];
    const t1 = clock(screen());
    await sleep(1200);
    assert.notEqual(clock(screen()), t1, 'redrawn every second');

    tmux(sock, 'send-keys', '-t', 'top', 'q');
    const after = await waitFor(() => (/TOP-EXIT=\d+ SAME-TTY=\w+/.test(screen()) ? screen() : null), 10_000, `top to quit:\n${screen()}`);
    assert.match(after, /TOP-EXIT=0 SAME-TTY=yes/);
    assert.doesNotMatch(after, /arbiter top - topped/, 'the alternate screen is gone');
  } finally {
    try {
      tmux(sock, 'kill-server');
    } catch {
      /* already gone */
    }
    await stop(r);
  }
});
