/**
 * `arbiter enqueue …`, `arbiter result …` and `arbiter dlq …`: the operator's side of the task queues.
 *
 *   arbiter enqueue NAME [JSON_PAYLOAD|-] [--delay MS] [--max-retries N] [--id ID]
 *   arbiter result ID [--wait MS] [--json]   (the value a task returned, or its final error)
 *   arbiter dlq list [--json] [--limit N]
 *   arbiter dlq retry [ID...]        (every dead task when no id is given)
 *   arbiter dlq purge [ID...]        (every dead task when no id is given)
 *   arbiter dlq stats [--json]       (queue depth: ready, delayed, in flight, dead)
 *
 * Where: --broker URL, --queue NAME, --dlq NAME, over ARBITER_BROKER / ARBITER_QUEUE /
 * ARBITER_DLQ, over the config file (-c FILE, or the one discovered as for the server),
 * over the defaults (spool:.arbiter-spool, default, QUEUE:dead). A relative spool path is
 * taken from the config's `chdir` when it has one, else from the current directory.
 *
 * With several queues configured (`queue: high,default`), commands that put or take name one
 * with --queue; `result` looks in each.
 *
 * Exit codes: 0 done, 1 the broker failed (or ids to retry/purge were not found, or the task
 * has no result, or failed), 2 usage.
 */
import path from 'node:path';
import { resolve, type Layer } from '../config.js';
import { openQueues } from '../core/brokers/open.js';
import type { Broker, DeadTask } from '../core/brokers/types.js';
import { redactUrl } from '../core/brokers/url.js';
import { errorMessage } from '../core/errors.js';
import { fatalLine } from '../core/logging.js';
import { BY_NAME, closest, parseValue } from '../core/settings.js';

class UsageError extends Error {}

const FLAGS: Record<string, { flags: string[]; bool: string[] }> = {
  enqueue: { flags: ['delay', 'max-retries', 'id'], bool: [] },
  result: { flags: ['wait'], bool: ['json'] },
  'dlq list': { flags: ['limit'], bool: ['json'] },
  'dlq retry': { flags: [], bool: [] },
  'dlq purge': { flags: [], bool: [] },
  'dlq stats': { flags: [], bool: ['json'] },
};

const USAGE = `Usage:
  arbiter enqueue NAME [JSON_PAYLOAD|-] [--delay MS] [--max-retries N] [--id ID]
  arbiter result ID [--wait MS] [--json]      the task's return value (JSON), or its final error (needs resultTtl)
  arbiter dlq list [--json] [--limit N]      dead tasks: id, name, attempts, dead at, last error
  arbiter dlq retry [ID...]                  send dead tasks back to their queue (all when no id)
  arbiter dlq purge [ID...]                  delete dead tasks (all when no id)
  arbiter dlq stats [--json]                 queue depth: ready, delayed, in flight, dead
Options: --broker URL  --queue NAME  --dlq NAME  -c/--config FILE
  (defaults: ARBITER_BROKER / ARBITER_QUEUE / ARBITER_DLQ, the config file, spool:.arbiter-spool, default, QUEUE:dead)
`;

interface Parsed {
  positional: string[];
  opts: Map<string, string>;
}

function parse(args: string[], command: string): Parsed {
  const spec = FLAGS[command]!;
  const valued = new Set([...spec.flags, 'broker', 'queue', 'dlq', 'config']);
  const bools = new Set([...spec.bool, 'help']);
  const positional: string[] = [];
  const opts = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (a === '-h') {
      opts.set('help', 'true');
      continue;
    }
    if (a === '-c') {
      const v = args[++i];
      if (v === undefined) throw new UsageError('option -c needs a value (the config file)');
      opts.set('config', v);
      continue;
    }
    // A lone "-" is the payload read from stdin; "-5" is not a flag either.
    if (!a.startsWith('--') || a === '--') {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (bools.has(name)) {
      if (eq >= 0) throw new UsageError(`option --${name} takes no value`);
      opts.set(name, 'true');
    } else if (valued.has(name)) {
      const v = eq >= 0 ? a.slice(eq + 1) : args[++i];
      if (v === undefined) throw new UsageError(`option --${name} needs a value`);
      opts.set(name, v);
    } else {
      const near = closest(name, [...valued, ...bools]);
      throw new UsageError(`unknown option --${name} for "arbiter ${command}"` + (near ? ` — did you mean --${near}?` : ''));
    }
  }
  return { positional, opts };
}

function whole(text: string, what: string, min: number): number {
  if (!/^\d+$/.test(text) || Number(text) < min) throw new UsageError(`invalid ${what} ${JSON.stringify(text)}: expected a whole number >= ${min}`);
  return Number(text);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Broker URL, queue and dlq: flags over env over config file over defaults (src/config.ts). */
async function where(opts: Map<string, string>): Promise<{ broker: string; queues: string[]; dlq: string | null; cwd: string }> {
  const cli: Layer = {};
  for (const name of ['broker', 'queue', 'dlq', 'config'] as const) {
    const v = opts.get(name);
    if (v === undefined) continue;
    try {
      cli[name] = parseValue(BY_NAME.get(name)!, v, `--${name}`);
    } catch (err) {
      throw new UsageError(errorMessage(err));
    }
  }
  let s;
  try {
    // A broken config discovered on the way is not this command's business unless it is named.
    ({ settings: s } = await resolve({ cli, env: process.env, cwd: process.cwd(), configFile: 'tolerant' }, ['broker', 'queue', 'dlq', 'config', 'chdir']));
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
  return { broker: s.broker, queues: s.queue, dlq: s.dlq, cwd: s.chdir ? path.resolve(process.cwd(), s.chdir) : process.cwd() };
}

/** The queue's broker; `anyQueue`: several configured queues are fine (looked at in order). */
async function open(opts: Map<string, string>, anyQueue = false): Promise<{ broker: Broker; label: string }> {
  const w = await where(opts);
  if (w.queues.length !== 1 && !anyQueue)
    throw new UsageError(`queue names ${w.queues.length} queues (${w.queues.join(', ')}); this command works on one: --queue NAME`);
  let broker: Broker;
  try {
    broker = await openQueues(w.broker, w.queues, { ...(w.dlq ? { dlq: w.dlq } : {}), cwd: w.cwd, consumer: `cli:${process.pid}` });
  } catch (err) {
    const msg = errorMessage(err);
    // Bad names are usage errors; a broker that is not there is a runtime failure.
    if (/^invalid |must differ/.test(msg)) throw new UsageError(msg);
    throw err;
  }
  return { broker, label: `queue ${w.queues.map((q) => `"${q}"`).join(', ')} on ${redactUrl(w.broker)}` };
}

function line(text: string): void {
  process.stdout.write(text + '\n');
}


function iso(ms: number): string {
  return Number.isFinite(ms) && ms > 0 ? new Date(ms).toISOString() : '-';
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

function deadRow(d: DeadTask): string[] {
  const err = d.error.replace(/\s+/g, ' ');
  return [d.task.id, d.task.name || '(unparsable)', String(d.task.attempt), iso(d.deadAt), err.length > 100 ? `${err.slice(0, 100)}…` : err];
}

async function run(command: string, p: Parsed): Promise<number> {
  if (p.opts.has('help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === 'enqueue') {
    const [name, payloadText, ...extra] = p.positional;
    if (!name) throw new UsageError('arbiter enqueue needs a task name: arbiter enqueue NAME [JSON_PAYLOAD]');
    if (extra.length) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}: the payload is one JSON argument (quote it)`);
    let payload: unknown = null;
    if (payloadText !== undefined) {
      const text = payloadText === '-' ? await readStdin() : payloadText;
      try {
        payload = JSON.parse(text);
      } catch (err) {
        throw new UsageError(`invalid JSON payload for task "${name}": ${errorMessage(err)}`);
      }
    }
    const o: { delay?: number; maxRetries?: number; id?: string } = {};
    if (p.opts.has('delay')) o.delay = whole(p.opts.get('delay')!, '--delay', 0);
    if (p.opts.has('max-retries')) o.maxRetries = whole(p.opts.get('max-retries')!, '--max-retries', 0);
    if (p.opts.has('id')) {
      const id = p.opts.get('id')!;
      if (id === '' || id.length > 200) throw new UsageError('invalid --id: expected 1-200 characters');
      o.id = id;
    }
    const { broker } = await open(p.opts);
    try {
      line(await broker.enqueue(name, payload, o));
    } finally {
      await broker.close();
    }
    return 0;
  }

  if (command === 'result') return showResult(p);

  const { broker, label } = await open(p.opts);
  try {
    switch (command) {
      case 'dlq list': {
        if (p.positional.length) throw new UsageError(`unexpected argument ${JSON.stringify(p.positional[0])} for "arbiter dlq list"`);
        const limit = p.opts.has('limit') ? whole(p.opts.get('limit')!, '--limit', 1) : 100;
        const dead = await broker.listDead(limit);
        if (p.opts.has('json')) {
          line(JSON.stringify(dead, null, 2));
        } else if (dead.length === 0) {
          line(`no dead tasks (${label})`);
        } else {
          line(table([['ID', 'NAME', 'ATTEMPTS', 'DEAD AT', 'LAST ERROR'], ...dead.map(deadRow)]));
        }
        return 0;
      }
      case 'dlq retry':
      case 'dlq purge': {
        const ids = p.positional.length ? p.positional : undefined;
        const n = command === 'dlq retry' ? await broker.retryDead(ids) : await broker.purgeDead(ids);
        line(`${command === 'dlq retry' ? 'sent back' : 'purged'} ${n} dead task${n === 1 ? '' : 's'} (${label})`);
        if (ids && n < ids.length) {
          fatalLine(`${ids.length - n} of the ${ids.length} id${ids.length === 1 ? '' : 's'} given not found in the dead-letter queue`);
          return 1;
        }
        return 0;
      }
      case 'dlq stats': {
        if (p.positional.length) throw new UsageError(`unexpected argument ${JSON.stringify(p.positional[0])} for "arbiter dlq stats"`);
        const s = await broker.stats();
        if (p.opts.has('json')) line(JSON.stringify(s));
        else line(`${label}: ready ${s.ready}, delayed ${s.delayed}, in flight ${s.inFlight}, dead ${s.dead}`);
        return 0;
      }
    }
    throw new UsageError(`unknown command "arbiter ${command}"`);
  } finally {
    await broker.close();
  }
}

/** `arbiter result ID`: the value as JSON on stdout (exit 0), or the final error on stderr (exit 1). */
async function showResult(p: Parsed): Promise<number> {
  const [id, ...extra] = p.positional;
  if (!id) throw new UsageError('arbiter result needs a task id: arbiter result ID [--wait MS]');
  if (extra.length) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}: one task id`);
  const waitMs = p.opts.has('wait') ? whole(p.opts.get('wait')!, '--wait', 0) : 0;
  const { broker, label } = await open(p.opts, true);
  try {
    const r = waitMs > 0 ? await broker.waitResult(id, waitMs) : await broker.getResult(id);
    if (p.opts.has('json')) {
      if (r) line(JSON.stringify(r, null, 2));
    } else if (r?.status === 'succeeded') line(JSON.stringify(r.value));
    if (!r) {
      fatalLine(`no result for task ${id} (${label}): not finished${waitMs ? ` within ${waitMs} ms` : ''}, never enqueued there, expired, or its workers keep none (resultTtl)`);
      return 1;
    }
    if (r.status === 'failed') {
      if (!p.opts.has('json')) fatalLine(`task ${id} (${r.name}) failed after ${r.attempts} attempt${r.attempts === 1 ? '' : 's'}: ${r.error}`);
      return 1;
    }
    return 0;
  } finally {
    await broker.close();
  }
}

/** `argv` starts with the subcommand: ['enqueue', …], ['result', …] or ['dlq', 'list', …]. Returns the exit code. */
export async function taskCommand(argv: string[]): Promise<number> {
  let command: string;
  let rest: string[];
  if (argv[0] === 'enqueue' || argv[0] === 'result') {
    command = argv[0];
    rest = argv.slice(1);
  } else if (argv[0] === 'dlq') {
    const sub = argv[1];
    if (sub === '-h' || sub === '--help') {
      process.stdout.write(USAGE);
      return 0;
    }
    if (sub === undefined) {
      fatalLine('arbiter dlq needs a command: list, retry, purge or stats (arbiter dlq --help)');
      return 2;
    }
    command = `dlq ${sub}`;
    if (!FLAGS[command]) {
      const near = closest(sub, ['list', 'retry', 'purge', 'stats']);
      fatalLine(`unknown command "arbiter dlq ${sub}": expected list, retry, purge or stats` + (near ? ` — did you mean "${near}"?` : ''));
      return 2;
    }
    rest = argv.slice(2);
  } else {
    fatalLine(`unknown task command ${JSON.stringify(argv[0] ?? '')}: expected enqueue, result or dlq`);
    return 2;
  }
  try {
    return await run(command, parse(rest, command));
  } catch (err) {
    if (err instanceof UsageError) {
      fatalLine(err.message);
      return 2;
    }
    fatalLine(errorMessage(err).split('\n')[0]!);
    return 1;
  }
}
