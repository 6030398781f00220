/**
 * `redis://host:port/db` — Redis Streams with one consumer group per queue.
 *
 *   arbiter:<queue>           stream; entries { a: attempt, h: history JSON, t: task JSON }
 *   arbiter:<queue>:delayed   sorted set of not-yet-due tasks (score = due epoch ms)
 *   arbiter:<dlq>             dead-letter stream { q, e, at, a, h, t | r }
 *   arbiter:<queue>:result:<id>   a finished task's result (resultTtl), with that expiry
 *   arbiter:<queue>:results   pub/sub channel: the id of every result kept, for waiting producers
 *   arbiter:schedule:<key>    the latest tick of schedule <key> that was enqueued
 *   group "arbiter"           one consumer per worker process
 *
 * The client is ioredis: mature, pipelines, reconnects by itself, and is what BullMQ uses, so
 * the bench compares queue designs rather than clients.
 *
 * The attempt number and history travel in their own fields, not inside the task JSON, so the
 * Lua scripts can bump them without decoding the payload (cjson would turn [] into {} and
 * round big numbers). Every transition that must not half-happen (promote a delayed task,
 * reclaim a dead consumer's entry, retry, dead-letter) is one script; the ones that settle a
 * delivery start with XACK and stop if it returns 0, i.e. if a reaper already took the entry
 * over and queued it again — so a slow worker's late fail() cannot queue a second copy.
 *
 * Stream length: acknowledged entries are XDEL'd at once, so the stream holds only waiting
 * and in-flight tasks. It is bounded by refusing enqueue beyond `maxLen` (waiting + delayed)
 * rather than by XADD MAXLEN, because trimming drops the oldest entries whether or not they
 * were ever delivered — it would lose tasks, which is exactly what a queue must not do.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Redis, type RedisOptions } from 'ioredis';
import {
  type Broker,
  type BrokerHealth,
  type BrokerStats,
  type DeadTask,
  type Delivery,
  type EnqueueOptions,
  type KeptResult,
  type ResolvedBrokerOptions,
  type TaskRecord,
  type TaskResult,
} from './types.js';
import { isQueueName, isTaskRecord, LEASE_EXPIRED, newTask, nextAttempt, parseResult, rawTask } from './records.js';
import { errorMessage } from '../errors.js';
import { redactUrl, type RedisTarget } from './url.js';

function withDeadline<T>(p: Promise<T>, ms: number, error: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(error()), Math.max(0, ms));
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

const GROUP = 'arbiter';
/** How long enqueue() waits for an unreachable Redis before it fails (EnqueueOptions.timeout). */
const ENQUEUE_WAIT_MS = 5000;
/** Delayed tasks become visible within this long even if another producer added them. */
const PROMOTE_POLL = 250;
const PROMOTE_BATCH = 1000;
const REAP_BATCH = 100;
/** Pause before dialling again a connection ioredis gave up on (keepConnected). */
const REDIAL_MS = 200;
/** Consumers with nothing pending and idle this long are removed from the group. */
const STALE_CONSUMER_MS = 3600_000;

// Redis < 7 replicates scripts verbatim unless told otherwise, and then refuses writes after
// the non-deterministic XADD * / XAUTOCLAIM; 7+ always replicates effects.
const PRELUDE = 'if redis.replicate_commands then pcall(redis.replicate_commands) end\n';

const ENQUEUE = `
local cap = tonumber(ARGV[1])
if cap > 0 then
  local n = redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
  if n >= cap then return redis.error_reply('QUEUEFULL ' .. n .. ' tasks waiting (maxLen ' .. cap .. ')') end
end
if tonumber(ARGV[2]) > tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4] .. '\\n' .. ARGV[5] .. '\\n' .. ARGV[6])
  return 0
end
redis.call('XADD', KEYS[1], '*', 'a', ARGV[4], 'h', ARGV[5], 't', ARGV[6])
return 1`;

const PROMOTE = `
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  local p1 = string.find(m, '\\n', 1, true)
  local p2 = p1 and string.find(m, '\\n', p1 + 1, true)
  if p2 then
    redis.call('XADD', KEYS[1], '*', 'a', string.sub(m, 1, p1 - 1), 'h', string.sub(m, p1 + 1, p2 - 1), 't', string.sub(m, p2 + 1))
  else
    redis.call('XADD', KEYS[1], '*', 't', m)
  end
  redis.call('ZREM', KEYS[2], m)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {#due, nxt[2] or ''}`;

// requeue(claimed): the entries just claimed (as XCLAIM and XAUTOCLAIM return them) go back
// on the stream as their next attempt, with ARGV[5] (now) and ARGV[6] (the error) in their
// history. Shared by the reaper and the release of a consumer that is gone.
const REQUEUE = `
local function requeue(claimed)
local n = 0
for _, e in ipairs(claimed) do
  local id, f = e[1], e[2]
  if type(f) == 'table' then
    local a, h, t
    for i = 1, #f, 2 do
      if f[i] == 'a' then a = f[i + 1] elseif f[i] == 'h' then h = f[i + 1] elseif f[i] == 't' then t = f[i + 1] end
    end
    if t then
      local att = tonumber(a or '1') or 1
      local entry = '{"attempt":' .. string.format('%d', att) .. ',"at":' .. ARGV[5] .. ',"error":' .. cjson.encode(ARGV[6]) .. '}'
      if h == nil or h == '[]' or string.sub(h, 1, 1) ~= '[' or string.sub(h, -1) ~= ']' then
        h = '[' .. entry .. ']'
      else
        h = string.sub(h, 1, -2) .. ',' .. entry .. ']'
      end
      redis.call('XADD', KEYS[1], '*', 'a', string.format('%d', att + 1), 'h', h, 't', t)
    else
      redis.call('XADD', KEYS[1], '*', unpack(f))
    end
    n = n + 1
  end
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
end
return n
end
`;

// ARGV: group, consumer, minIdle, count, now, error, cursor
const REAP = REQUEUE + `
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[7], 'COUNT', ARGV[4])
return {r[1], requeue(r[2])}`;

// A consumer that is known to be gone (its process exited): its entries now, not after a lease.
// ARGV: group, me, gone, count, now, error
const REQUEUE_GONE = REQUEUE + `
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[4], ARGV[3])
if #p == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[3])
  return 0
end
local ids = {}
for i, e in ipairs(p) do ids[i] = e[1] end
return requeue(redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids)))`;

// ARGV: group, id, due, now, a, h, t
const FAIL = `
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
if tonumber(ARGV[3]) > tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5] .. '\\n' .. ARGV[6] .. '\\n' .. ARGV[7])
else
  redis.call('XADD', KEYS[1], '*', 'a', ARGV[5], 'h', ARGV[6], 't', ARGV[7])
end
return 1`;

// ARGV: group, id, field, value, ...
const DEAD = `
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
return 1`;

const RELEASE = `
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
if e[1] then redis.call('XADD', KEYS[1], '*', unpack(e[1][2])) end
return 1`;

// XDEL first: of two operators retrying the same dead entry, only one re-queues it.
const RETRY_DEAD = `
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'a', ARGV[2], 'h', ARGV[3], 't', ARGV[4])
return 1`;

// The schedule guard: of several arbiters enqueueing the same tick, the first wins; a tick at
// or before the last one enqueued is never enqueued again. Then as ENQUEUE (without the cap:
// a schedule must not stop because producers filled the queue).
// KEYS: stream, delayed, state   ARGV: tick, due, now, a, h, t
const ENQUEUE_SCHEDULED = `
local last = tonumber(redis.call('GET', KEYS[3]) or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[3], ARGV[1])
if tonumber(ARGV[2]) > tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4] .. '\\n' .. ARGV[5] .. '\\n' .. ARGV[6])
else
  redis.call('XADD', KEYS[1], '*', 'a', ARGV[4], 'h', ARGV[5], 't', ARGV[6])
end
return 1`;

const PURGE_ALL = `
local n = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n`;

class Script {
  readonly lua: string;
  readonly sha: string;
  constructor(body: string) {
    this.lua = PRELUDE + body;
    this.sha = createHash('sha1').update(this.lua).digest('hex');
  }
  async run(r: Redis, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await r.call('EVALSHA', this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!errorMessage(err).startsWith('NOSCRIPT')) throw err;
      return r.call('EVAL', this.lua, keys.length, ...keys, ...args);
    }
  }
}

const S = {
  enqueue: new Script(ENQUEUE),
  promote: new Script(PROMOTE),
  reap: new Script(REAP),
  requeueGone: new Script(REQUEUE_GONE),
  fail: new Script(FAIL),
  dead: new Script(DEAD),
  release: new Script(RELEASE),
  retryDead: new Script(RETRY_DEAD),
  purgeAll: new Script(PURGE_ALL),
  enqueueScheduled: new Script(ENQUEUE_SCHEDULED),
};

/** While a producer waits for a result, it also looks every this often (a pub/sub message lost to a reconnect). */
const RESULT_POLL_MS = 1000;

interface RedisReceipt {
  id: string;
  /** When the entry was delivered or last re-claimed by us (its PEL idle time restarted). */
  claimedAt: number;
  settled: boolean;
  lost: boolean;
}

type StreamEntry = [id: string, fields: string[] | null];

interface AckBatch {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function ackBatch(): AckBatch {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** The parts of a task record that never change between attempts. */
function taskBody(task: TaskRecord): string {
  const body: Record<string, unknown> = { id: task.id, name: task.name, payload: task.payload, enqueuedAt: task.enqueuedAt };
  if (task.maxRetries !== undefined) body.maxRetries = task.maxRetries;
  return JSON.stringify(body);
}

function fieldMap(fields: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) m.set(fields[i]!, fields[i + 1]!);
  return m;
}

/** Builds the record from an entry's fields; null when they do not hold a task. */
function decodeTask(m: Map<string, string>): TaskRecord | null {
  return decodeParts(m.get('a'), m.get('h'), m.get('t'));
}

/** The record from an entry's attempt, history and task fields (per task, on the claim path). */
function decodeParts(a: string | undefined, h: string | undefined, t: string | undefined): TaskRecord | null {
  if (t === undefined) return null;
  let body: unknown;
  try {
    body = JSON.parse(t);
  } catch {
    return null;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return null;
  let history: unknown = [];
  if (h !== undefined && h !== '[]') {
    try {
      history = JSON.parse(h);
    } catch {
      // A damaged history must not make a good task undeliverable.
    }
  }
  const attempt = a === '1' ? 1 : Number.parseInt(a ?? '1', 10);
  // The parsed body is ours alone: completed in place rather than copied.
  const task = body as Record<string, unknown>;
  task.attempt = Number.isFinite(attempt) && attempt >= 1 ? attempt : 1;
  task.history = Array.isArray(history) ? history : [];
  return isTaskRecord(task) ? task : null;
}

function addressOf(conn: Redis): string | null {
  const sock = conn.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  return sock?.remoteAddress ? `${sock.remoteAddress}:${sock.remotePort}` : null;
}

/**
 * ioredis keeps reconnecting after a lost connection, except in one case: a sentinel's
 * +switch-master reaching the failover detector of the connection that just died, while the
 * client is asking the sentinels where the primary is now, fails that attempt with "Connection
 * is closed" and leaves the client 'end' for good (ioredis 5, SentinelConnector.connect). A broker
 * that is open never stops trying: a connection that ends while `closed()` is false is dialled
 * again after REDIAL_MS, as often as it takes. Commands queued on it were failed by ioredis, so
 * no enqueue is reported accepted that was not.
 */
function keepConnected(conn: Redis, closed: () => boolean): void {
  conn.on('end', () => {
    if (closed()) return;
    setTimeout(() => {
      if (!closed() && conn.status === 'end') conn.connect().catch(() => undefined);
    }, REDIAL_MS).unref();
  });
}

function rawOf(m: Map<string, string>): string {
  return m.get('t') ?? JSON.stringify(Object.fromEntries(m));
}

export class RedisBroker implements Broker {
  private readonly stream: string;
  private readonly delayed: string;
  private readonly dlqKey: string;
  private blocking: Redis | null = null;
  private groupReady: Promise<void> | null = null;
  private closed = false;
  private timers: NodeJS.Timeout[] = [];
  private promoteTimer: NodeJS.Timeout | null = null;
  private readonly outstanding = new Map<string, RedisReceipt>();
  /** Acks of this turn not yet sent, and the promise their ack() callers wait on. */
  private ackIds: string[] = [];
  /** Results to keep with the acks of this turn: [key, json, ttlMs, id]. */
  private ackResults: [string, string, number, string][] = [];
  private ackBatch: AckBatch | null = null;
  private ackTimer: NodeJS.Immediate | null = null;
  private readonly resultChannel: string;
  /** The subscriber connection of waiting producers, and who waits for which id. */
  private sub: Promise<Redis> | null = null;
  private readonly waiting = new Map<string, Set<() => void>>();
  /** Ack batches sent and not yet answered (close() lets them land before QUIT). */
  private readonly acksOut = new Set<Promise<void>>();
  private reaping = false;
  private lastConsumerSweep = 0;
  /** Last failure of background work (promote, reap, renew); those retry on their next tick, so this is for diagnostics only. */
  lastError: Error | null = null;

  private health: BrokerHealth = { up: true, since: Date.now() };
  private readonly healthEvents = new EventEmitter<{ change: [BrokerHealth] }>();
  private lastConnectError = '';

  private constructor(
    private readonly cmd: Redis,
    private readonly opts: ResolvedBrokerOptions,
    private readonly target: RedisTarget,
    private readonly shownUrl: string,
  ) {
    this.stream = `arbiter:${opts.queue}`;
    this.delayed = `arbiter:${opts.queue}:delayed`;
    this.dlqKey = `arbiter:${opts.dlq}`;
    this.resultChannel = `arbiter:${opts.queue}:results`;
    // ioredis reconnects by itself; what we add is knowing when it is away, and for how long.
    cmd.on('error', (err: Error) => (this.lastConnectError = errorMessage(err)));
    cmd.on('close', () => this.setHealth(false));
    cmd.on('ready', () => this.setHealth(true));
    keepConnected(cmd, () => this.closed);
  }

  private resultKey(id: string): string {
    return `arbiter:${this.opts.queue}:result:${id}`;
  }

  static async open(url: string, target: RedisTarget, opts: ResolvedBrokerOptions): Promise<RedisBroker> {
    const common: RedisOptions = {
      lazyConnect: true,
      enableAutoPipelining: true,
      // A primary demoted under us (failover) answers writes with READONLY: reconnect, which
      // finds the new primary, and send the command again.
      reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
    };
    const cmd = target.sentinels
      ? new Redis({
          ...common,
          sentinels: target.sentinels,
          name: target.master!,
          // Hear of a failover from the sentinels at once, not on the next failed command.
          failoverDetector: true,
          ...(target.db !== undefined ? { db: target.db } : {}),
          ...(target.username ? { username: target.username } : {}),
          ...(target.password ? { password: target.password } : {}),
          ...(target.sentinelPassword ? { sentinelPassword: target.sentinelPassword } : {}),
          ...(target.tls ? { tls: {}, enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
        })
      : new Redis(target.url!, common);
    // Without a listener ioredis prints every reconnect error; failures reach callers anyway.
    // The socket's own error (a TLS certificate refused) says more than "Connection is closed".
    let why: unknown = null;
    const remember = (err: unknown) => (why = err);
    cmd.on('error', remember);
    try {
      await cmd.connect();
    } catch (err) {
      cmd.disconnect();
      throw new Error(`cannot connect to ${redactUrl(url)}: ${errorMessage(why ?? err)}`);
    }
    cmd.off('error', remember);
    cmd.on('error', () => undefined);
    const broker = new RedisBroker(cmd, opts, target, redactUrl(url));
    if (target.sentinels) broker.followPrimary(cmd);
    return broker;
  }

  /**
   * Says when the connection comes back to a different server than before: after a failover,
   * the sentinels' new primary. The consumer logs it (OpenBrokerOptions.onEvent).
   */
  private followPrimary(conn: Redis): void {
    let current = addressOf(conn);
    conn.on('ready', () => {
      const now = addressOf(conn);
      if (now && now !== current) {
        const previous = current;
        current = now;
        this.opts.onEvent?.({ kind: 'primary', address: now, previous, master: this.target.master ?? '' });
      }
    });
  }

  private setHealth(up: boolean): void {
    if (this.closed || up === this.health.up) return;
    this.health = up ? { up, since: Date.now() } : { up, since: Date.now(), error: this.lastConnectError || 'connection closed' };
    this.healthEvents.emit('change', this.health);
  }

  onHealth(listener: (h: BrokerHealth) => void): void {
    this.healthEvents.on('change', listener);
  }

  /** Resolves once the connection is up, or rejects after `ms`. */
  private whenUp(ms: number): Promise<void> {
    if (this.health.up) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.healthEvents.off('change', onChange);
        reject(new Error(`the broker ${this.shownUrl} is unreachable (${this.health.error}); waited ${ms / 1000} s`));
      }, ms);
      const onChange = (h: BrokerHealth) => {
        if (!h.up) return;
        clearTimeout(timer);
        this.healthEvents.off('change', onChange);
        resolve();
      };
      this.healthEvents.on('change', onChange);
    });
  }

  async durabilityWarnings(): Promise<string[]> {
    const config = async (key: string): Promise<string | null> => {
      try {
        const r = (await this.cmd.call('CONFIG', 'GET', key)) as string[];
        return r[1] ?? null;
      } catch {
        return null; // CONFIG renamed or disabled (managed Redis): nothing to say
      }
    };
    const [aof, save, policy] = await Promise.all([config('appendonly'), config('save'), config('maxmemory-policy')]);
    const out: string[] = [];
    if (aof === 'no' && save === '')
      out.push(`${this.shownUrl} has no persistence (appendonly no, no save points): a restart of Redis loses every queued task; set appendonly yes`);
    else if (aof === 'no' && save !== null)
      out.push(`${this.shownUrl} persists only by snapshots (appendonly no): a crash of Redis loses the tasks enqueued since the last one; set appendonly yes`);
    if (policy !== null && policy !== 'noeviction')
      out.push(`${this.shownUrl} may evict queued tasks under memory pressure (maxmemory-policy ${policy}); set maxmemory-policy noeviction`);
    return out;
  }

  // ---------------------------------------------------------------- consuming

  async fetch(max: number, waitMs: number): Promise<Delivery[]> {
    if (this.closed || !(max > 0)) return [];
    await this.ensureGroup();
    this.startTimers();
    // First without blocking, on the command connection, with the acks of this turn riding
    // along: a busy consumer makes one round trip per batch. Only when that finds nothing does
    // it block, on its own connection.
    const got = await this.claim(Math.floor(max));
    if (got.length > 0 || waitMs < 1 || this.closed) return got;
    const blocking = (this.blocking ??= this.makeBlocking());
    const args: (string | number)[] = ['GROUP', GROUP, this.opts.consumer, 'COUNT', Math.floor(max), 'BLOCK', Math.ceil(waitMs), 'STREAMS', this.stream, '>'];
    let reply: unknown;
    try {
      reply = await blocking.call('XREADGROUP', ...args);
    } catch (err) {
      if (this.closed) return [];
      if (errorMessage(err).includes('NOGROUP')) {
        // The stream was deleted under us (FLUSHDB, DEL): recreate and let the caller retry.
        this.groupReady = null;
        return [];
      }
      throw err;
    }
    return this.deliveries(reply);
  }

  /**
   * One pipeline: the acks of this turn (XACK + XDEL) and a non-blocking XREADGROUP for up to
   * `max`, so a busy consumer makes one round trip per batch.
   */
  private async claim(max: number): Promise<Delivery[]> {
    let ids: string[] = [];
    let batch: AckBatch | null = null;
    // Results must be written before their acks; such a turn is flushed by the pipeline.
    if (this.ackIds.length > 0 && this.ackResults.length === 0 && this.ackBatch) {
      ids = this.ackIds;
      batch = this.ackBatch;
      this.ackIds = [];
      this.ackBatch = null;
      if (this.ackTimer) clearImmediate(this.ackTimer);
      this.ackTimer = null;
    }
    const p = this.cmd.pipeline();
    if (batch) p.xack(this.stream, GROUP, ...ids).xdel(this.stream, ...ids);
    p.call('XREADGROUP', 'GROUP', GROUP, this.opts.consumer, 'COUNT', max, 'STREAMS', this.stream, '>');
    const sent = p.exec();
    if (batch) {
      const acked = sent.then((res) => {
        const failed = res?.slice(0, 2).find(([err]) => err);
        if (failed) throw failed[0];
      });
      this.trackAcks(acked).then(batch.resolve, () => this.requeueAcks(ids, batch));
    }
    const res = await sent;
    const [err, reply] = res?.[res.length - 1] ?? [new Error('no reply from redis'), null];
    if (err) {
      if (this.closed) return [];
      if (errorMessage(err).includes('NOGROUP')) {
        // The stream was deleted under us (FLUSHDB, DEL): recreate and let the caller retry.
        this.groupReady = null;
        return [];
      }
      throw err;
    }
    return this.deliveries(reply);
  }

  /** XREADGROUP's reply as deliveries, each now outstanding. */
  private deliveries(reply: unknown): Delivery[] {
    if (!Array.isArray(reply) || reply.length === 0) return [];
    const entries = (reply[0] as [string, StreamEntry[]])[1] ?? [];
    const now = Date.now();
    const out: Delivery[] = [];
    for (const [id, f] of entries) {
      const fields = f ?? [];
      // arbiter's own entries: a, h, t in that order; anything else goes the general way.
      const task =
        fields.length === 6 && fields[0] === 'a' && fields[2] === 'h' && fields[4] === 't'
          ? decodeParts(fields[1], fields[3], fields[5])
          : decodeTask(fieldMap(fields));
      const receipt: RedisReceipt = { id, claimedAt: now, settled: false, lost: false };
      this.outstanding.set(id, receipt);
      out.push(task ? { task, receipt } : { task: rawTask(id), receipt, raw: rawOf(fieldMap(fields)) });
    }
    return out;
  }

  private makeBlocking(): Redis {
    // A blocked XREADGROUP holds its connection; commands must not queue behind it.
    const b = this.cmd.duplicate({ enableAutoPipelining: false, lazyConnect: false });
    b.on('error', () => undefined);
    keepConnected(b, () => this.closed);
    return b;
  }

  private ensureGroup(): Promise<void> {
    this.groupReady ??= (async () => {
      try {
        // From id 0, not $: tasks enqueued before the first consumer ever started count too.
        await this.cmd.call('XGROUP', 'CREATE', this.stream, GROUP, '0', 'MKSTREAM');
      } catch (err) {
        if (!errorMessage(err).startsWith('BUSYGROUP')) {
          this.groupReady = null;
          throw err;
        }
      }
    })();
    return this.groupReady;
  }

  // ---------------------------------------------------------------- settling

  ack(d: Delivery, result?: KeptResult): Promise<void> {
    const r = this.settle(d);
    if (!r) return Promise.resolve();
    this.ackIds.push(r.id);
    if (result) this.ackResults.push([this.resultKey(d.task.id), result.json, result.ttlMs, d.task.id]);
    // Everything acked in this turn of the event loop goes out together: with the consumer's
    // next claim when it asks for more in this turn (one round trip for both), else as one
    // XACK + one XDEL in a pipeline on the next turn.
    const batch = (this.ackBatch ??= ackBatch());
    this.ackTimer ??= setImmediate(() => this.flushAcks());
    return batch.promise;
  }

  private flushAcks(): void {
    this.ackTimer = null;
    const ids = this.ackIds;
    const results = this.ackResults;
    const batch = this.ackBatch;
    this.ackIds = [];
    this.ackResults = [];
    this.ackBatch = null;
    if (!batch || ids.length === 0) {
      batch?.resolve();
      return;
    }
    // Results go first: a task whose result is kept but whose ack is lost runs again and keeps it again.
    const p = this.cmd.pipeline();
    for (const [key, json, ttl, id] of results) p.set(key, json, 'PX', Math.max(1, Math.round(ttl))).publish(this.resultChannel, id);
    const sent = p
      .xack(this.stream, GROUP, ...ids)
      .xdel(this.stream, ...ids)
      .exec()
      .then((res) => {
        const failed = res?.find(([err]) => err);
        if (failed) throw failed[0];
      });
    this.trackAcks(sent).then(batch.resolve, batch.reject);
  }

  /** Acks a failed CLAIM carried go out again with this turn's, to the same callers. */
  private requeueAcks(ids: string[], batch: AckBatch): void {
    this.ackIds.push(...ids);
    const current = this.ackBatch;
    if (current) current.promise.then(batch.resolve, batch.reject);
    else this.ackBatch = batch;
    this.ackTimer ??= setImmediate(() => this.flushAcks());
  }

  private trackAcks(p: Promise<void>): Promise<void> {
    this.acksOut.add(p);
    const done = (): void => void this.acksOut.delete(p);
    p.then(done, done);
    return p;
  }

  private async keep(id: string, result: KeptResult): Promise<void> {
    const res = await this.cmd.pipeline().set(this.resultKey(id), result.json, 'PX', Math.max(1, Math.round(result.ttlMs))).publish(this.resultChannel, id).exec();
    const failed = res?.find(([err]) => err);
    if (failed) throw failed[0];
  }

  async fail(d: Delivery, error: string, retryAt: number): Promise<void> {
    const r = this.settle(d);
    if (!r) return;
    const now = Date.now();
    const next = d.raw === undefined ? nextAttempt(d.task, error, now) : null;
    await S.fail.run(this.cmd, [this.stream, this.delayed], [
      GROUP,
      r.id,
      Math.round(retryAt),
      now,
      next ? next.attempt : 1,
      next ? JSON.stringify(next.history) : '[]',
      next ? taskBody(next) : d.raw!,
    ]);
  }

  async deadLetter(d: Delivery, error: string, result?: KeptResult): Promise<void> {
    const r = this.settle(d);
    if (!r) return;
    if (result && d.raw === undefined) await this.keep(d.task.id, result);
    const now = Date.now();
    const history = [...d.task.history, { attempt: d.task.attempt, at: now, error }];
    const fields: (string | number)[] = ['q', this.opts.queue, 'e', error, 'at', now, 'a', d.task.attempt, 'h', JSON.stringify(history)];
    if (d.raw === undefined) fields.push('t', taskBody(d.task));
    else fields.push('r', d.raw);
    await S.dead.run(this.cmd, [this.stream, this.dlqKey], [GROUP, r.id, ...fields]);
  }

  async release(d: Delivery): Promise<void> {
    const r = this.settle(d);
    if (!r) return;
    await S.release.run(this.cmd, [this.stream], [GROUP, r.id]);
  }

  private settle(d: Delivery): RedisReceipt | null {
    const r = d.receipt as RedisReceipt;
    if (!r || typeof r.id !== 'string') throw new Error('not a delivery of this redis broker');
    if (r.settled) return null;
    r.settled = true;
    this.outstanding.delete(r.id);
    return r;
  }

  // ---------------------------------------------------------------- background work

  private startTimers(): void {
    if (this.timers.length > 0 || this.closed) return;
    const lease = this.opts.leaseMs;
    const reap = (): void => void this.reap().catch((err) => (this.lastError = err));
    reap();
    this.timers.push(setInterval(reap, Math.max(25, lease / 2)));
    this.timers.push(setInterval(() => void this.renew().catch((err) => (this.lastError = err)), Math.max(10, lease / 6)));
    for (const t of this.timers) t.unref();
    this.schedulePromote(0);
  }

  private schedulePromote(ms: number): void {
    if (this.closed) return;
    this.promoteTimer = setTimeout(() => {
      this.promote().then(
        (next) => this.schedulePromote(next),
        (err) => {
          this.lastError = err;
          this.schedulePromote(PROMOTE_POLL);
        },
      );
    }, ms);
    this.promoteTimer.unref();
  }

  /** Moves due delayed tasks into the stream; returns ms until the next run. */
  private async promote(): Promise<number> {
    for (;;) {
      const now = Date.now();
      const [moved, nextScore] = (await S.promote.run(this.cmd, [this.stream, this.delayed], [now, PROMOTE_BATCH])) as [number, string];
      if (moved >= PROMOTE_BATCH && !this.closed) continue;
      if (nextScore === '') return PROMOTE_POLL;
      return Math.min(PROMOTE_POLL, Math.max(1, Number(nextScore) - Date.now()));
    }
  }

  /** Requeues the entries of consumers that have not renewed them for a whole lease. */
  private async reap(): Promise<void> {
    if (this.reaping || this.closed) return;
    this.reaping = true;
    try {
      let cursor = '0-0';
      for (let i = 0; i < 50 && !this.closed; i++) {
        const [next] = (await S.reap.run(this.cmd, [this.stream], [
          GROUP,
          this.opts.consumer,
          Math.floor(this.opts.leaseMs),
          REAP_BATCH,
          Date.now(),
          LEASE_EXPIRED,
          cursor,
        ])) as [string, number];
        if (next === '0-0') break;
        cursor = next;
      }
      if (Date.now() - this.lastConsumerSweep > 600_000) {
        this.lastConsumerSweep = Date.now();
        await this.sweepConsumers();
      }
    } finally {
      this.reaping = false;
    }
  }

  async releaseConsumer(consumer: string, reason: string): Promise<number> {
    await this.ensureGroup();
    let total = 0;
    for (;;) {
      const n = Number(await S.requeueGone.run(this.cmd, [this.stream], [GROUP, this.opts.consumer, consumer, REAP_BATCH, Date.now(), reason]));
      total += n;
      if (n === 0) return total;
    }
  }

  /** Each worker process has its own consumer name; without this the group's list only grows. */
  private async sweepConsumers(): Promise<void> {
    const list = (await this.cmd.call('XINFO', 'CONSUMERS', this.stream, GROUP)) as (string | number)[][];
    const idleLimit = Math.max(STALE_CONSUMER_MS, this.opts.leaseMs * 10);
    for (const row of list) {
      const info = new Map<string, string | number>();
      for (let i = 0; i + 1 < row.length; i += 2) info.set(String(row[i]), row[i + 1]!);
      const name = String(info.get('name'));
      // A live consumer removed by mistake is recreated by its next read; with nothing pending
      // nothing is lost.
      if (name !== this.opts.consumer && Number(info.get('pending')) === 0 && Number(info.get('idle')) > idleLimit) {
        await this.cmd.call('XGROUP', 'DELCONSUMER', this.stream, GROUP, name);
      }
    }
  }

  /** Restarts the idle clock of our own long-running deliveries so reapers leave them alone. */
  private async renew(): Promise<void> {
    const now = Date.now();
    const ids: string[] = [];
    for (const r of this.outstanding.values()) if (now - r.claimedAt > this.opts.leaseMs / 3) ids.push(r.id);
    if (ids.length === 0) return;
    const kept = new Set((await this.cmd.call('XCLAIM', this.stream, GROUP, this.opts.consumer, 0, ...ids, 'JUSTID')) as string[]);
    for (const id of ids) {
      const r = this.outstanding.get(id);
      if (!r) continue;
      if (kept.has(id)) r.claimedAt = now;
      else {
        // Reaped already: it is queued again, and settling it here would be a no-op anyway.
        r.lost = true;
        this.outstanding.delete(id);
      }
    }
  }

  // ---------------------------------------------------------------- producing

  async enqueue(name: string, payload: unknown, opts?: EnqueueOptions): Promise<string> {
    if (this.closed) throw new Error('broker is closed');
    const { task, dueAt } = newTask(name, payload, opts);
    const waitMs = opts?.timeout ?? ENQUEUE_WAIT_MS;
    const deadline = Date.now() + waitMs;
    try {
      await this.whenUp(waitMs);
      const sent = S.enqueue.run(this.cmd, [this.stream, this.delayed], [
        this.opts.maxLen,
        dueAt,
        task.enqueuedAt,
        task.attempt,
        JSON.stringify(task.history),
        taskBody(task),
      ]);
      // A connection lost mid-command is retried by ioredis when it is back: bounded here too.
      await withDeadline(sent, deadline - Date.now(), () =>
        new Error(`no answer from the broker ${this.shownUrl} within ${waitMs / 1000} s: task ${task.id} may or may not have been enqueued`));
    } catch (err) {
      const msg = errorMessage(err);
      if (msg.startsWith('QUEUEFULL')) throw new Error(`queue "${this.opts.queue}" is full: ${msg.slice('QUEUEFULL '.length)}`);
      throw err;
    }
    await this.replicated();
    return task.id;
  }

  async enqueueScheduled(key: string, tick: number, name: string, payload: unknown, opts?: EnqueueOptions): Promise<string | null> {
    if (this.closed) throw new Error('broker is closed');
    const { task, dueAt } = newTask(name, payload, opts);
    const added = await S.enqueueScheduled.run(this.cmd, [this.stream, this.delayed, `arbiter:schedule:${key}`], [
      Math.floor(tick),
      dueAt,
      task.enqueuedAt,
      task.attempt,
      JSON.stringify(task.history),
      taskBody(task),
    ]);
    if (Number(added) !== 1) return null;
    await this.replicated();
    return task.id;
  }

  async lastScheduled(key: string): Promise<number | null> {
    const v = await this.cmd.get(`arbiter:schedule:${key}`);
    return v === null ? null : Number(v);
  }

  /**
   * With `wait` replicas asked for (the URL's `?wait=N`), a write counts only once that many
   * replicas have it: WAIT on the connection that wrote, so it covers every write before it.
   */
  private async replicated(): Promise<void> {
    const want = this.target.replicas;
    if (want <= 0) return;
    const timeout = this.target.replicaTimeoutMs;
    const got = Number(await this.cmd.call('WAIT', want, timeout));
    if (got < want)
      throw new Error(`only ${got} of ${want} replica${want === 1 ? '' : 's'} confirmed the task within ${timeout} ms (?wait=${want}); it may be lost if the primary fails now, so it is not reported accepted`);
  }

  // ---------------------------------------------------------------- results

  async getResult(id: string): Promise<TaskResult | null> {
    return parseResult(await this.cmd.get(this.resultKey(id)));
  }

  async waitResult(id: string, timeoutMs: number): Promise<TaskResult | null> {
    if (this.closed) throw new Error('broker is closed');
    const deadline = Date.now() + Math.max(0, timeoutMs);
    await this.subscribed();
    let wake: () => void = () => undefined;
    const set = this.waiting.get(id) ?? new Set();
    this.waiting.set(id, set);
    try {
      for (;;) {
        // Subscribed first, then looked: a result kept in between is seen either way.
        const signalled = new Promise<void>((resolve) => {
          wake = resolve;
          set.add(wake);
        });
        const found = await this.getResult(id);
        if (found) return found;
        const left = deadline - Date.now();
        if (left <= 0 || this.closed) return null;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([signalled, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.min(left, RESULT_POLL_MS))))]);
        clearTimeout(timer);
        set.delete(wake);
      }
    } finally {
      set.delete(wake);
      if (set.size === 0) this.waiting.delete(id);
    }
  }

  private subscribed(): Promise<Redis> {
    this.sub ??= (async () => {
      const sub = this.cmd.duplicate({ enableAutoPipelining: false, lazyConnect: true });
      sub.on('error', () => undefined);
      sub.on('message', (_channel: string, id: string) => {
        for (const wake of this.waiting.get(id) ?? []) wake();
      });
      try {
        await sub.connect();
        await sub.subscribe(this.resultChannel);
      } catch (err) {
        sub.disconnect();
        this.sub = null;
        throw err;
      }
      // ioredis subscribes again on its own when it reconnects, a redial included.
      keepConnected(sub, () => this.closed);
      return sub;
    })();
    return this.sub;
  }

  // ---------------------------------------------------------------- inspection

  async stats(): Promise<BrokerStats> {
    const res = await this.cmd
      .pipeline()
      .xlen(this.stream)
      .zcard(this.delayed)
      .xlen(this.dlqKey)
      .call('XPENDING', this.stream, GROUP)
      .exec();
    if (!res) throw new Error('stats: no reply from redis');
    const num = (i: number): number => {
      const [err, v] = res[i]!;
      if (err) throw err;
      return Number(v);
    };
    const [pErr, pending] = res[3]!;
    // NOGROUP: no consumer has started yet, so nothing is in flight.
    if (pErr && !errorMessage(pErr).startsWith('NOGROUP')) throw pErr;
    const inFlight = pErr ? 0 : Number((pending as [number])[0]);
    return { ready: Math.max(0, num(0) - inFlight), delayed: num(1), inFlight, dead: num(2) };
  }

  async listDead(limit = 100): Promise<DeadTask[]> {
    const out: DeadTask[] = [];
    for await (const page of this.deadPages(Math.min(limit, 500))) {
      for (const e of page) {
        if (out.length >= limit) return out;
        out.push(e.dead);
      }
    }
    return out;
  }

  async retryDead(ids?: string[]): Promise<number> {
    const wanted = ids ? new Set(ids) : null;
    let n = 0;
    for await (const page of this.deadPages(500)) {
      for (const { entryId, dead } of page) {
        if (wanted && !wanted.has(dead.task.id)) continue;
        const target = `arbiter:${dead.queue}`;
        const t = dead.raw ?? taskBody(dead.task);
        n += Number(await S.retryDead.run(this.cmd, [this.dlqKey, target], [entryId, 1, JSON.stringify(dead.task.history), t]));
      }
    }
    return n;
  }

  async purgeDead(ids?: string[]): Promise<number> {
    if (!ids) return Number(await S.purgeAll.run(this.cmd, [this.dlqKey], []));
    const wanted = new Set(ids);
    let n = 0;
    for await (const page of this.deadPages(500)) {
      const doomed = page.filter((e) => wanted.has(e.dead.task.id)).map((e) => e.entryId);
      if (doomed.length > 0) n += Number(await this.cmd.xdel(this.dlqKey, ...doomed));
    }
    return n;
  }

  private async *deadPages(pageSize: number): AsyncGenerator<{ entryId: string; dead: DeadTask }[]> {
    let start = '-';
    for (;;) {
      const entries = (await this.cmd.call('XRANGE', this.dlqKey, start, '+', 'COUNT', pageSize)) as StreamEntry[];
      if (entries.length === 0) return;
      yield entries.map(([entryId, fields]) => ({ entryId, dead: this.decodeDead(entryId, fieldMap(fields ?? [])) }));
      if (entries.length < pageSize) return;
      start = `(${entries[entries.length - 1]![0]}`;
    }
  }

  private decodeDead(entryId: string, m: Map<string, string>): DeadTask {
    // 'h' holds the history up to and including the fatal attempt.
    const decoded = decodeTask(m);
    const task = decoded ?? rawTask(entryId);
    if (!decoded) {
      const a = Number.parseInt(m.get('a') ?? '1', 10);
      if (a >= 1) task.attempt = a;
      try {
        const h: unknown = JSON.parse(m.get('h') ?? '[]');
        if (Array.isArray(h)) task.history = h;
      } catch {
        // keep []
      }
    }
    const deadAt = Number(m.get('at'));
    const q = m.get('q');
    const dead: DeadTask = {
      task,
      error: m.get('e') ?? 'unknown error',
      deadAt: Number.isFinite(deadAt) ? deadAt : Number(entryId.split('-')[0]),
      // Never trust the stored name to be a key we may write to.
      queue: isQueueName(q) ? q : this.opts.queue,
    };
    if (!decoded) dead.raw = m.get('r') ?? rawOf(m);
    return dead;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.promoteTimer) clearTimeout(this.promoteTimer);
    // Unblocks a pending XREADGROUP at once; fetch() then resolves with [].
    this.blocking?.disconnect();
    void this.sub?.then((s) => s.disconnect(), () => undefined);
    for (const set of this.waiting.values()) for (const wake of set) wake();
    const quit = (async () => {
      if (this.ackTimer) {
        clearImmediate(this.ackTimer);
        this.flushAcks();
      }
      await Promise.allSettled([...this.acksOut]);
      await this.cmd.quit();
    })();
    const timer = setTimeout(() => this.cmd.disconnect(), 2000);
    await quit.catch(() => undefined);
    clearTimeout(timer);
  }
}
