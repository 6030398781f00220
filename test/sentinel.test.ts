/**
 * Beyond one Redis. `rediss://`: a TLS-only redis-server with a self-signed certificate.
 * Sentinel: a real primary, two replicas and three sentinels on loopback
 * (`redis-server --sentinel`, which Debian's redis-server package has). Task workers on a
 * `redis+sentinel://` broker run under a task load while the primary is SIGKILLed; they
 * follow the replica the sentinels promote (and say so in the log), and every task whose
 * enqueue() resolved (with `?wait=1`: a replica had it) is run.
 *
 * Two replicas, so that after the failover the new primary still has one to confirm
 * enqueues with; the sentinels promote the replica that is furthest along, so a task one
 * replica confirmed is on the new primary.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { openBroker } from '../src/core/brokers/open.ts';
import { brokerUrlProblem, parseBrokerUrl, redactUrl } from '../src/core/brokers/url.ts';
import { FIXTURES, freePort, safeKill, selfSignedCert, serve, sleep, stop, tmpDir, track, waitFor } from './helpers.ts';
import { cli, readRecord } from './fixtures/tasks/env.ts';

const HANDLERS = path.join(FIXTURES, 'tasks', 'handlers.js');

test('the Redis URL grammar: sentinels, TLS, and arbiter\'s own parameters', () => {
  const s = parseBrokerUrl('redis+sentinel://:pw@10.0.0.1:26380,10.0.0.2,[::1]:26381/mymaster/2?wait=1&waitTimeout=250&sentinelPassword=sp');
  assert.ok(s && s.kind === 'redis');
  assert.deepEqual(s.target, {
    sentinels: [{ host: '10.0.0.1', port: 26380 }, { host: '10.0.0.2', port: 26379 }, { host: '::1', port: 26381 }],
    master: 'mymaster', db: 2, password: 'pw', sentinelPassword: 'sp', tls: false, replicas: 1, replicaTimeoutMs: 250,
  });
  assert.equal(parseBrokerUrl('rediss+sentinel://h1,h2/m')!.kind === 'redis' && (parseBrokerUrl('rediss+sentinel://h1,h2/m') as { target: { tls: boolean } }).target.tls, true);
  const plain = parseBrokerUrl('rediss://:pw@cache:6380/1?wait=2&family=6');
  assert.ok(plain && plain.kind === 'redis');
  assert.equal(plain.target.url, 'rediss://:pw@cache:6380/1?family=6', 'ioredis gets its own parameters, not ours');
  assert.equal(plain.target.replicas, 2);
  assert.equal(plain.target.tls, true);
  assert.match(brokerUrlProblem('redis+sentinel://h1,h2')!, /redis\+sentinel:\/\/HOST:PORT,HOST:PORT\/MASTER/);
  assert.match(brokerUrlProblem('redis://h?wait=lots')!, /\(wait: a whole number\)/);
  assert.match(brokerUrlProblem('redis+sentinel://h/m?nope=1')!, /\(unknown parameter nope\)/);
  assert.equal(brokerUrlProblem('redis+sentinel://h:1/m/0'), null);
  assert.equal(redactUrl('redis+sentinel://u:secret@h1,h2/m?sentinelPassword=also'), 'redis+sentinel://***@h1,h2/m?sentinelPassword=***');
});

async function redisServer(args: string[], dir: string): Promise<number> {
  const child = spawn('redis-server', args, { cwd: dir, stdio: 'ignore' });
  if (!child.pid) throw new Error('redis-server did not start');
  track(child.pid);
  return child.pid;
}

async function ping(port: number): Promise<boolean> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

async function ask(port: number, ...args: string[]): Promise<unknown> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return await r.call(args[0]!, ...args.slice(1));
  } finally {
    r.disconnect();
  }
}

function fields(reply: unknown): Map<string, string> {
  const a = reply as string[];
  const m = new Map<string, string>();
  for (let i = 0; i + 1 < a.length; i += 2) m.set(a[i]!, a[i + 1]!);
  return m;
}

test('Sentinel: the primary is killed under a task load; workers follow the promoted replica; no accepted task is lost', { timeout: 120_000 }, async () => {
  const dir = tmpDir('arbiter-sentinel-');
  const [primary, replicaA, replicaB] = [await freePort(), await freePort(), await freePort()];
  const sentinels = [await freePort(), await freePort(), await freePort()];
  // A directory each: a replica's full sync writes dump.rdb there and then loads it.
  const base = (port: number) => {
    const own = path.join(dir, `redis-${port}`);
    mkdirSync(own);
    return ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', own];
  };
  const primaryPid = await redisServer(base(primary), dir);
  await waitFor(() => ping(primary), 10_000, 'the primary');
  for (const p of [replicaA, replicaB]) await redisServer([...base(p), '--replicaof', '127.0.0.1', String(primary)], dir);
  for (const [i, p] of sentinels.entries()) {
    const conf = path.join(dir, `sentinel-${i}.conf`);
    writeFileSync(conf, [
      `port ${p}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor mymaster 127.0.0.1 ${primary} 2`,
      'sentinel down-after-milliseconds mymaster 1000',
      'sentinel failover-timeout mymaster 10000',
      'sentinel parallel-syncs mymaster 1',
      '',
    ].join('\n'));
    await redisServer([conf, '--sentinel'], dir);
  }
  // Every sentinel knows both replicas and the other two sentinels; both replicas are in sync.
  await waitFor(async () => {
    for (const s of sentinels) {
      const m = fields(await ask(s, 'SENTINEL', 'MASTER', 'mymaster').catch(() => []));
      if (m.get('num-slaves') !== '2' || m.get('num-other-sentinels') !== '2') return false;
    }
    const info = String(await ask(primary, 'INFO', 'replication'));
    return (info.match(/state=online/g) ?? []).length === 2;
  }, 30_000, 'the sentinels to know the replicas and each other');

  const url = `redis+sentinel://${sentinels.map((p) => `127.0.0.1:${p}`).join(',')}/mymaster/0?wait=1&waitTimeout=500`;
  const queue = `sentinel-${process.pid}`;
  const record = path.join(dir, 'record.txt');
  const r = await serve([`${HANDLERS}:handlers`, '-k', 'task', '--broker', url, '--queue', queue, '-w', '2', '--concurrency', '8', '--graceful-timeout', '5'], {
    cwd: dir,
    // A short lease: deliveries the dead primary took to its grave come back soon.
    env: { TASK_RECORD: record, ARBITER_TASK_LEASE_MS: '2000', ARBITER_TASK_BACKOFF_MS: '50' },
  });
  const producer = await openBroker(url, { queue, cwd: dir });
  const accepted = new Set<string>();
  let refused = 0;
  const refusals = new Map<string, number>();
  let producing = true;
  let seq = 0;
  const acceptedAfterKill = () => [...accepted].filter((id) => Number(id.split('-')[1]) >= killedAtSeq).length;
  let killedAtSeq = Infinity;
  const produce = async () => {
    while (producing) {
      const id = `t-${seq++}`;
      try {
        await producer.enqueue('record', { sleep: 5 }, { id });
        accepted.add(id);
      } catch (err) {
        refused++;
        // Kept for the failure message: why enqueues were refused says which part was stuck.
        const why = String((err as Error).message).replace(/\d+/g, 'N');
        refusals.set(why, (refusals.get(why) ?? 0) + 1);
      }
    }
  };
  const loops = Array.from({ length: 4 }, produce);
  try {
    await waitFor(() => accepted.size >= 300, 20_000, '300 tasks accepted before the failover');
    killedAtSeq = seq;
    safeKill(primaryPid, 'SIGKILL');
    // The sentinels promote a replica; the producer and the workers follow it.
    const promoted = await waitFor(async () => {
      const addr = (await ask(sentinels[0]!, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mymaster').catch(() => null)) as string[] | null;
      return addr && Number(addr[1]) !== primary ? Number(addr[1]) : null;
    }, 30_000, 'a promoted replica');
    assert.ok([replicaA, replicaB].includes(promoted));
    await waitFor(() => acceptedAfterKill() >= 100, 30_000, () => `100 tasks accepted after the failover (${acceptedAfterKill()} were; refused: ${JSON.stringify([...refusals])})`);
  } finally {
    producing = false;
    await Promise.all(loops);
    await producer.close();
  }
  try {
    const line = await r.waitLog((l) => l.event === 'broker_failover', 10_000, 'the workers logging the failover');
    assert.match(line.msg, /^redis: following the new primary of "mymaster" at 127\.0\.0\.1:\d+ \(was 127\.0\.0\.1:\d+\): a failover$/);
    // Every task whose enqueue resolved is run (some more than once: at least once).
    await waitFor(() => {
      const done = new Set(readRecord(record).filter((l) => l.what === 'done').map((l) => l.id));
      return [...accepted].every((id) => done.has(id));
    }, 45_000, `all ${accepted.size} accepted tasks run`);
    assert.ok(accepted.size >= 400, `${accepted.size} accepted, ${refused} refused`);
  } finally {
    await stop(r);
  }
  await sleep(0);
});

test('rediss://: workers and producers speak TLS to Redis (the CA from NODE_EXTRA_CA_CERTS)', { timeout: 60_000 }, async () => {
  const dir = tmpDir('arbiter-redis-tls-');
  const { key, cert } = selfSignedCert(dir);
  const port = await freePort();
  await redisServer(['--port', '0', '--tls-port', String(port), '--tls-cert-file', cert, '--tls-key-file', key, '--tls-ca-cert-file', cert, '--tls-auth-clients', 'no', '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], dir);
  const url = `rediss://127.0.0.1:${port}/0`;
  const trust = { NODE_EXTRA_CA_CERTS: cert };
  // Plain TCP is refused: the server only speaks TLS.
  await waitFor(async () => (await cli(['dlq', 'stats', '--broker', url, '--queue', 'tls'], { cwd: dir, env: trust })).code === 0, 10_000, 'the TLS server');
  const untrusted = await cli(['enqueue', 'record', '{}', '--broker', url, '--queue', 'tls'], { cwd: dir, env: { NODE_EXTRA_CA_CERTS: '' } });
  assert.equal(untrusted.code, 1);
  assert.match(untrusted.stderr, /self[- ]signed certificate/i);
  const record = path.join(dir, 'record.txt');
  const r = await serve([`${HANDLERS}:handlers`, '-k', 'task', '--broker', url, '--queue', 'tls', '--result-ttl', '30'], { cwd: dir, env: { ...trust, TASK_RECORD: record } });
  try {
    const put = await cli(['enqueue', 'record', '{}', '--broker', url, '--queue', 'tls', '--id', 'over-tls'], { cwd: dir, env: trust });
    assert.equal(put.code, 0, put.stderr);
    const got = await cli(['result', 'over-tls', '--wait', '10000', '--broker', url, '--queue', 'tls'], { cwd: dir, env: trust });
    assert.equal(got.code, 0, got.stderr);
    assert.equal(got.stdout, 'null\n');
    assert.ok(readRecord(record).some((l) => l.what === 'done' && l.id === 'over-tls'));
  } finally {
    await stop(r);
  }
});
