/**
 * What both brokers share: option resolution, the task record and its validation, and the
 * record of the next attempt. Producer input is checked here once, so both brokers reject
 * the same things the same way.
 */
import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { EnqueueOptions, OpenBrokerOptions, ResolvedBrokerOptions, TaskRecord, TaskResult } from './types.js';

const QUEUE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,199}$/;

export function isQueueName(v: unknown): v is string {
  return typeof v === 'string' && QUEUE_NAME.test(v);
}

export function resolveOptions(opts: OpenBrokerOptions): ResolvedBrokerOptions {
  const dlq = opts.dlq ?? `${opts.queue}:dead`;
  for (const [key, value] of [['queue', opts.queue], ['dlq', dlq]] as const) {
    // Queue names become directory names and Redis keys; keep them boring.
    if (!isQueueName(value)) {
      throw new Error(
        `invalid ${key} ${JSON.stringify(value)} — expected 1-200 characters of letters, digits, _ . : @ -, not starting with . : @ -`,
      );
    }
  }
  if (dlq === opts.queue) throw new Error(`dlq must differ from queue (both "${dlq}")`);
  const leaseMs = opts.leaseMs ?? 30_000;
  if (!Number.isFinite(leaseMs) || leaseMs < 50) throw new Error(`invalid leaseMs ${leaseMs} — expected at least 50`);
  const maxLen = opts.maxLen ?? 1_000_000;
  if (!Number.isInteger(maxLen) || maxLen < 0) throw new Error(`invalid maxLen ${maxLen} — expected a whole number >= 0`);
  return {
    queue: opts.queue,
    dlq,
    consumer: opts.consumer ?? `${hostname()}:${process.pid}`,
    leaseMs,
    cwd: opts.cwd ?? process.cwd(),
    maxLen,
    ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
  };
}

/** Validates producer input once, so both brokers reject the same things the same way. */
export function newTask(name: string, payload: unknown, opts: EnqueueOptions = {}, now = Date.now()): { task: TaskRecord; dueAt: number } {
  if (typeof name !== 'string' || name === '') throw new Error('task name must be a non-empty string');
  if (opts.delay !== undefined && (!Number.isFinite(opts.delay) || opts.delay < 0)) {
    throw new Error(`invalid delay ${opts.delay} — expected ms >= 0`);
  }
  if (opts.maxRetries !== undefined && (!Number.isInteger(opts.maxRetries) || opts.maxRetries < 0)) {
    throw new Error(`invalid maxRetries ${opts.maxRetries} — expected a whole number >= 0`);
  }
  if (opts.id !== undefined && (typeof opts.id !== 'string' || opts.id === '' || opts.id.length > 200)) {
    throw new Error('task id must be a string of 1-200 characters');
  }
  // Round-trip now so a payload JSON cannot hold (functions, BigInt, cycles) fails at the producer.
  let json: string | undefined;
  try {
    json = JSON.stringify(payload);
  } catch (err) {
    throw new Error(`task payload is not JSON-serializable: ${(err as Error).message}`);
  }
  const task: TaskRecord = {
    id: opts.id ?? randomUUID(),
    name,
    payload: json === undefined ? null : JSON.parse(json),
    attempt: 1,
    enqueuedAt: now,
    history: [],
  };
  if (opts.maxRetries !== undefined) task.maxRetries = opts.maxRetries;
  return { task, dueAt: now + Math.max(0, Math.round(opts.delay ?? 0)) };
}

/** Accepts only what a broker itself would have written; anything else is delivered as raw. */
export function isTaskRecord(v: unknown): v is TaskRecord {
  if (typeof v !== 'object' || v === null) return false;
  const t = v as Record<string, unknown>;
  return (
    typeof t.id === 'string' &&
    typeof t.name === 'string' &&
    t.name !== '' &&
    'payload' in t &&
    Number.isInteger(t.attempt) &&
    (t.attempt as number) >= 1 &&
    typeof t.enqueuedAt === 'number' &&
    Array.isArray(t.history) &&
    (t.maxRetries === undefined || Number.isInteger(t.maxRetries))
  );
}

export function rawTask(id: string): TaskRecord {
  return { id, name: '', payload: null, attempt: 1, enqueuedAt: 0, history: [] };
}

/** The record for the next attempt: the history gains the attempt that just ended. */
export function nextAttempt(task: TaskRecord, error: string, at = Date.now()): TaskRecord {
  return { ...task, attempt: task.attempt + 1, history: [...task.history, { attempt: task.attempt, at, error }] };
}

export const LEASE_EXPIRED = 'lease expired (worker died?)';

/** What the master writes in the history of a task whose worker it saw exit. */
export const WORKER_GONE = 'the worker running it exited';

/** The consumer name of a task worker process: the worker claims under it, the master releases it. */
export function consumerName(pid: number): string {
  return `${hostname()}:${pid}`;
}

/** A stored result, read back; null when it is not one (damaged, or not ours). */
export function parseResult(text: string | null): TaskResult | null {
  if (text === null) return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const r = v as Record<string, unknown>;
  if (typeof r.id !== 'string' || (r.status !== 'succeeded' && r.status !== 'failed')) return null;
  return r as unknown as TaskResult;
}

/**
 * A file name for a task id or schedule key: the text itself when it is short and plain,
 * else `~` and a hash of it (ids are the producer's, any 1-200 characters).
 */
export function fileSafe(text: string): string {
  return /^[A-Za-z0-9_@:-][A-Za-z0-9_.@:-]{0,119}$/.test(text) ? text : `~${createHash('sha256').update(text).digest('hex').slice(0, 40)}`;
}
