// h11 engine — the state machine as data (workers/h11/engine/states.ts): every transition the
// engine makes is one the table lists. The other engine test files (fuzz corpus included) run
// again in this process under a transition trace, which checks each move against the table and
// against the state the previous move left (so a state assigned behind go()'s back shows up);
// at the end every edge of the table must have been taken. The README's diagram is generated
// from the table: `node --import tsx test/h11-engine-states.test.ts --write` rewrites it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { H11Connection, LocalProtocolError } from '../workers/h11/engine/index.js';
import {
  READ_EVENTS, READ_STATES, READ_TRANSITIONS, RE_RESUME, R_BODY, WE_END, WE_HEAD, WRITE_EVENTS, WRITE_STATES,
  WRITE_TRANSITIONS, movesFrom, setTransitionTrace, stateDiagram, type Side,
} from '../workers/h11/engine/states.js';

const README = fileURLToPath(new URL('../workers/h11/engine/README.md', import.meta.url));
const BEGIN = '<!-- states:begin -->';
const END = '<!-- states:end -->';

const TABLES = {
  read: { states: READ_STATES as readonly string[], events: READ_EVENTS as readonly string[], table: READ_TRANSITIONS as Record<string, Record<string, string>> },
  write: { states: WRITE_STATES as readonly string[], events: WRITE_EVENTS as readonly string[], table: WRITE_TRANSITIONS as Record<string, Record<string, string>> },
};

/** Checks traced transitions against the table and for continuity; records which edges were taken. */
class TransitionChecker {
  readonly taken = new Set<string>();
  readonly problems: string[] = [];
  private readonly last = new WeakMap<object, number>();

  readonly trace = (side: Side, owner: object, from: number, event: number, to: number): void => {
    const { states, events, table } = TABLES[side];
    const s = states[from], e = events[event], t = states[to];
    // Both sides start in state 0 (head / idle).
    const expected = this.last.get(owner) ?? 0;
    if (expected !== from) {
      this.problems.push(`${side}: left '${states[expected]}' by '${e}' but the engine was in '${s}' (a state set outside go())`);
    }
    if (s === undefined || e === undefined || table[s]?.[e] !== t) this.problems.push(`${side}: '${s}' --${e}--> '${t}' is not in the table`);
    this.taken.add(`${side} ${s} ${e}`);
    this.last.set(owner, to);
  };
}

const checker = new TransitionChecker();
setTransitionTrace(checker.trace);

// Every engine test file, in this process, under the trace (their tests register here and run first).
for (const f of ['h11-engine.test.js', 'h11-engine-response.test.js', 'h11-engine-upgrade.test.js', 'h11-engine-fuzz.test.js', 'h11-engine-rawheaders.test.js']) {
  await import(`./${f}`);
}

test('states: the compiled tables agree with the named ones; codes are the list order', () => {
  for (const side of ['read', 'write'] as const) {
    const { states, events, table } = TABLES[side];
    for (const s of states) {
      assert.ok(table[s] !== undefined, `${side} state ${s} has a row`);
      for (const [e, t] of movesFrom(table, s)) {
        assert.ok(events.includes(e), `${side} event ${e}`);
        assert.ok(states.includes(t), `${side} target ${t}`);
      }
    }
  }
  // Terminal states have no way out.
  for (const s of ['closed', 'error', 'switched'] as const) assert.deepEqual(READ_TRANSITIONS[s], {});
  for (const s of ['closed', 'switched'] as const) assert.deepEqual(WRITE_TRANSITIONS[s], {});
});

test('states: a move the table does not list throws (read side: an engine bug; write side: misuse)', () => {
  const c = new H11Connection();
  const r = (c as unknown as { r: { go(ev: number): void; rs: number } }).r;
  assert.throws(() => r.go(RE_RESUME), /engine bug: read state 'head' has no 'resume' transition/);
  assert.equal(r.rs, 0, 'state unchanged');
  const w = c as unknown as { go(ev: number): void };
  assert.throws(() => w.go(WE_END), LocalProtocolError);
  assert.throws(() => w.go(WE_HEAD), /write state 'idle'/);
  assert.deepEqual(c.states, { read: 'head', write: 'idle' });
});

test('states: the trace check catches a state assigned outside go()', () => {
  const own = new TransitionChecker();
  const prev = setTransitionTrace(own.trace);
  try {
    const c = new H11Connection();
    (c as unknown as { r: { rs: number } }).r.rs = R_BODY; // what a stray assignment would do
    c.receiveEOF();
  } finally {
    setTransitionTrace(prev);
  }
  assert.equal(own.problems.length, 1);
  assert.match(own.problems[0]!, /a state set outside go\(\)/);
});

test('states: the parser and the connection change states only inside go()', () => {
  for (const [file, field] of [['parser.ts', 'rs'], ['connection.ts', 'ws']] as const) {
    const src = readFileSync(fileURLToPath(new URL(`../workers/h11/engine/${file}`, import.meta.url)), 'utf8');
    const assigns = [...src.matchAll(new RegExp(`\\.${field}\\s*=(?!=)`, 'g'))];
    assert.equal(assigns.length, 1, `${file}: one assignment to .${field}, in go()`);
    const before = src.slice(0, assigns[0]!.index);
    assert.match(before.slice(before.lastIndexOf('private go(')), /^private go\(ev: number(, call\?: string)?\): void \{[^}]*$/, `${file}: the assignment is in go()`);
  }
});

test('states: edges the other tests may not reach on their own', () => {
  const H = 'Host: a\r\n';
  const chunked = `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`;
  // A response that ends while the request body is in each of its states closes the reader there.
  for (const [rest, state] of [['', 'chunk-size'], ['3\r\nab', 'chunk-data'], ['3\r\nabc', 'chunk-cr'], ['3\r\nabc\r', 'chunk-lf'], ['0\r\nX: 1\r\n', 'trailers']]) {
    const c = new H11Connection();
    c.receive(Buffer.from(chunked + rest));
    assert.equal(c.states.read, state);
    c.respond(200, null, 'x');
    assert.deepEqual(c.states, { read: 'closed', write: 'closed' });
  }
  // EOF inside chunk data, and inside each chunk sub-state.
  for (const rest of ['3\r\nab', '3\r\nabc', '3\r\nabc\r', '0\r\nX: 1\r\n']) {
    const c = new H11Connection();
    c.receive(Buffer.from(chunked + rest));
    assert.equal(c.receiveEOF()[0]?.type, 'error');
  }
  // Graceful stop while idle; an error response before any request; the write side's 'data'.
  const idle = new H11Connection();
  idle.startClosing();
  assert.deepEqual(idle.states, { read: 'closed', write: 'closed' });
  const bad = new H11Connection();
  bad.receive(Buffer.from('BAD\r\n\r\n'));
  bad.errorResponse(400);
  assert.deepEqual(bad.states, { read: 'error', write: 'closed' });
  // Might-switch closed by an error response, and by a graceful stop that ends in a declining response.
  const ws = `GET / HTTP/1.1\r\n${H}Upgrade: websocket\r\nConnection: upgrade\r\n\r\n`;
  const a = new H11Connection();
  a.receive(Buffer.from(ws));
  a.errorResponse(503);
  assert.deepEqual(a.states, { read: 'closed', write: 'closed' });
  const b = new H11Connection();
  b.receive(Buffer.from(ws));
  b.startClosing();
  b.writeHead(503, { 'content-length': 0 });
  b.writeBody('');
  b.writeEnd();
  assert.deepEqual(b.states, { read: 'closed', write: 'closed' });
});

test('states: every transition observed is in the table, and every edge of the table was taken', () => {
  assert.deepEqual(checker.problems, []);
  const missing: string[] = [];
  for (const side of ['read', 'write'] as const) {
    const { states, table } = TABLES[side];
    for (const s of states) for (const [e] of movesFrom(table, s)) if (!checker.taken.has(`${side} ${s} ${e}`)) missing.push(`${side} ${s} --${e}-->`);
  }
  assert.deepEqual(missing, [], 'edges no test takes');
});

/** The README with its generated section replaced by what the table says now. */
function readmeFromTable(): { current: string; expected: string } {
  const current = readFileSync(README, 'utf8');
  const b = current.indexOf(BEGIN), e = current.indexOf(END);
  assert.ok(b >= 0 && e > b, `README.md has ${BEGIN} … ${END}`);
  return { current, expected: current.slice(0, b + BEGIN.length) + '\n' + stateDiagram() + current.slice(e) };
}

if (process.argv.includes('--write')) {
  const { current, expected } = readmeFromTable();
  if (current !== expected) writeFileSync(README, expected);
}

test("states: the README's state diagram is generated from the table (regenerate with --write)", () => {
  const { current, expected } = readmeFromTable();
  assert.equal(current, expected, 'run: node --import tsx test/h11-engine-states.test.ts --write');
});
