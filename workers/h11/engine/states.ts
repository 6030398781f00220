/**
 * The engine's state machine as data, after h11's `_state.py`: one table per side, listing for
 * every state the events that may leave it and the state each one leads to. The parser and the
 * connection never assign a state: they name the event (`go(RE_END)`), and the table — compiled
 * here into a flat Int8Array indexed by numeric codes, so the hot loop stays on small integers —
 * gives the next state. An event the table does not list from the current state is a bug (read
 * side: the engine's; write side: the caller's misuse, reported as LocalProtocolError by the
 * connection before anything happens).
 *
 * The README's state diagram is generated from these tables (`stateDiagram()`), and the tests
 * check every transition they observe against them.
 */

// ------------------------------------------------------------------------------------ read side

/** Request-side states, indexed by their numeric code (R_*). */
export const READ_STATES = [
  'head', 'body', 'chunk-size', 'chunk-data', 'chunk-cr', 'chunk-lf', 'trailers',
  'waiting', 'might-switch', 'closed', 'error', 'switched',
] as const;
export type ReadStateName = (typeof READ_STATES)[number];

// The parser compares these in its hot loop: literal constants, checked against READ_STATES below.
// Order matters: codes >= R_WAITING never parse; codes >= R_CLOSED are terminal.
export const R_HEAD = 0;
export const R_BODY = 1;
export const R_CHUNK_SIZE = 2;
export const R_CHUNK_DATA = 3;
export const R_CHUNK_CR = 4;
export const R_CHUNK_LF = 5;
export const R_TRAILERS = 6;
export const R_WAITING = 7;
export const R_MIGHT_SWITCH = 8;
export const R_CLOSED = 9;
export const R_ERROR = 10;
export const R_SWITCHED = 11;

/** What happened on the request side. */
export const READ_EVENTS = [
  'request', 'request-length', 'request-chunked', 'chunk', 'last-chunk', 'chunk-end', 'cr', 'lf', 'end',
  'upgrade', 'decline', 'switch', 'resume', 'fail', 'eof', 'close',
] as const;
export type ReadEventName = (typeof READ_EVENTS)[number];

export const RE_REQUEST = 0;
export const RE_REQUEST_LENGTH = 1;
export const RE_REQUEST_CHUNKED = 2;
export const RE_CHUNK = 3;
export const RE_LAST_CHUNK = 4;
export const RE_CHUNK_END = 5;
export const RE_CR = 6;
export const RE_LF = 7;
export const RE_END = 8;
export const RE_UPGRADE = 9;
export const RE_DECLINE = 10;
export const RE_SWITCH = 11;
export const RE_RESUME = 12;
export const RE_FAIL = 13;
export const RE_EOF = 14;
export const RE_CLOSE = 15;

export type Table<S extends string, E extends string> = { readonly [K in S]: { readonly [V in E]?: S } };

/** Request side: for each state, event → next state. Anything not listed is impossible. */
export const READ_TRANSITIONS: Table<ReadStateName, ReadEventName> = {
  head: {
    request: 'waiting', 'request-length': 'body', 'request-chunked': 'chunk-size',
    fail: 'error', eof: 'closed', close: 'closed',
  },
  body: { end: 'waiting', fail: 'error', close: 'closed' },
  'chunk-size': { chunk: 'chunk-data', 'last-chunk': 'trailers', fail: 'error', close: 'closed' },
  'chunk-data': { 'chunk-end': 'chunk-cr', fail: 'error', close: 'closed' },
  'chunk-cr': { cr: 'chunk-lf', fail: 'error', close: 'closed' },
  'chunk-lf': { lf: 'chunk-size', fail: 'error', close: 'closed' },
  trailers: { end: 'waiting', fail: 'error', close: 'closed' },
  waiting: { upgrade: 'might-switch', resume: 'head', close: 'closed' },
  'might-switch': { decline: 'waiting', switch: 'switched', close: 'closed' },
  closed: {},
  error: {},
  switched: {},
};

export const READ_STATE_DOC: Readonly<Record<ReadStateName, string>> = {
  head: 'between requests, or inside a request head',
  body: 'Content-Length body',
  'chunk-size': 'chunked body: chunk-size line',
  'chunk-data': 'chunked body: chunk data',
  'chunk-cr': 'chunked body: the CR after chunk data',
  'chunk-lf': 'chunked body: the LF after chunk data',
  trailers: 'chunked body: trailer section',
  waiting: 'request complete, its response pending; later bytes are held, not parsed',
  'might-switch': 'like waiting, for a request that proposed an Upgrade: held bytes may be another protocol',
  closed: 'never parse again (clean EOF, or the connection closes after this response)',
  error: 'the peer broke the protocol; never parse again',
  switched: 'the connection speaks another protocol; bytes are only held for takeBuffered()',
};

export const READ_EVENT_DOC: Readonly<Record<ReadEventName, string>> = {
  request: 'a head without a body (its `end` follows at once)',
  'request-length': 'a head with a Content-Length body',
  'request-chunked': 'a head with a chunked body',
  chunk: 'a chunk-size line (size > 0)',
  'last-chunk': 'the chunk-size line of the last chunk',
  'chunk-end': 'all data of a chunk',
  cr: 'the CR after chunk data',
  lf: 'the LF after chunk data',
  end: 'the body (and trailers) complete',
  upgrade: 'the completed request proposed an Upgrade (HTTP/1.1, `Connection: upgrade`, not CONNECT)',
  decline: 'the app answered the Upgrade request with a final response',
  switch: '`switchProtocols()` or `detach()`',
  resume: 'the response finished and the connection persists',
  fail: 'malformed or oversized input, or EOF inside a request',
  eof: 'the peer closed between requests',
  close: 'the connection will close: response with close, `errorResponse()`, `startClosing()`',
};

// ----------------------------------------------------------------------------------- write side

/** Response-side states, indexed by their numeric code (W_*). */
export const WRITE_STATES = ['idle', 'ready', 'body', 'closed', 'switched'] as const;
export type WriteStateName = (typeof WRITE_STATES)[number];

export const W_IDLE = 0;
export const W_READY = 1;
export const W_BODY = 2;
export const W_CLOSED = 3;
export const W_SWITCHED = 4;

/** What happened on the response side: a request head arrived, or the app made a call. */
export const WRITE_EVENTS = [
  'request', 'interim', 'head', 'data', 'end', 'end-close', 'respond', 'respond-close', 'error-response', 'close', 'switch',
] as const;
export type WriteEventName = (typeof WRITE_EVENTS)[number];

export const WE_REQUEST = 0;
export const WE_INTERIM = 1;
export const WE_HEAD = 2;
export const WE_DATA = 3;
export const WE_END = 4;
export const WE_END_CLOSE = 5;
export const WE_RESPOND = 6;
export const WE_RESPOND_CLOSE = 7;
export const WE_ERROR_RESPONSE = 8;
export const WE_CLOSE = 9;
export const WE_SWITCH = 10;

/** Response side: for each state, event → next state. A call whose event is not listed throws. */
export const WRITE_TRANSITIONS: Table<WriteStateName, WriteEventName> = {
  idle: { request: 'ready', 'error-response': 'closed', close: 'closed' },
  ready: {
    interim: 'ready', head: 'body', respond: 'idle', 'respond-close': 'closed', 'error-response': 'closed',
    switch: 'switched',
  },
  body: { data: 'body', end: 'idle', 'end-close': 'closed' },
  closed: {},
  switched: {},
};

export const WRITE_STATE_DOC: Readonly<Record<WriteStateName, string>> = {
  idle: 'no request to answer',
  ready: 'a request head arrived; no final response yet (1xx allowed)',
  body: 'final head written; body being written',
  closed: 'no further response on this connection',
  switched: 'the 101 was sent (or the app took the socket): nothing more is HTTP',
};

export const WRITE_EVENT_DOC: Readonly<Record<WriteEventName, string>> = {
  request: 'the parser delivered a request head',
  interim: '`writeInterim()`, `send100Continue()`',
  head: '`writeHead()`',
  data: '`writeBody()`',
  end: '`writeEnd()`, the connection persists',
  'end-close': '`writeEnd()`, the connection closes',
  respond: '`respond()`, the connection persists',
  'respond-close': '`respond()`, the connection closes',
  'error-response': '`errorResponse()`',
  close: '`startClosing()` with no request in progress',
  switch: '`switchProtocols()` (101) or `detach()`',
};

/** Hints for the LocalProtocolError thrown when a call is not allowed in a write state. */
export const WRITE_STATE_HINT: Readonly<Record<WriteStateName, string>> = {
  idle: 'no request to respond to',
  ready: 'no response head was written',
  body: 'the response head was already sent',
  closed: 'the connection is closed',
  switched: 'the connection switched protocols',
};

// ------------------------------------------------------------------------------- compiled form

/** The moves out of `state`, as [event, next state] pairs, in table order. */
export function movesFrom<S extends string, E extends string>(table: Table<S, E>, state: S): [E, S][] {
  return Object.entries(table[state]) as unknown as [E, S][];
}

function compile<S extends string, E extends string>(
  states: readonly S[], events: readonly E[], table: Table<S, E>,
): Int8Array {
  const next = new Int8Array(states.length * events.length).fill(-1);
  for (let s = 0; s < states.length; s++) {
    for (const [e, target] of movesFrom(table, states[s]!)) {
      const to = states.indexOf(target);
      const ev = events.indexOf(e);
      if (to < 0 || ev < 0) throw new Error(`h11 states: bad transition ${states[s]} --${e}--> ${target}`);
      next[s * events.length + ev] = to;
    }
  }
  return next;
}

/** `R_NEXT[state * READ_EVENT_COUNT + event]`: the next read state, or -1. */
export const READ_EVENT_COUNT = READ_EVENTS.length;
export const R_NEXT = compile(READ_STATES, READ_EVENTS, READ_TRANSITIONS);
/** `W_NEXT[state * WRITE_EVENT_COUNT + event]`: the next write state, or -1. */
export const WRITE_EVENT_COUNT = WRITE_EVENTS.length;
export const W_NEXT = compile(WRITE_STATES, WRITE_EVENTS, WRITE_TRANSITIONS);

// The literal codes above must name the same states and events as the lists.
function checkCodes(list: readonly string[], codes: Record<string, number>, prefix: string): void {
  for (const k in codes) {
    const name = k.slice(prefix.length).toLowerCase().replace(/_/g, '-');
    if (list[codes[k]!] !== name) throw new Error(`h11 states: ${k} = ${codes[k]} is not '${name}'`);
  }
}
checkCodes(READ_STATES, {
  R_HEAD, R_BODY, R_CHUNK_SIZE, R_CHUNK_DATA, R_CHUNK_CR, R_CHUNK_LF, R_TRAILERS, R_WAITING, R_MIGHT_SWITCH,
  R_CLOSED, R_ERROR, R_SWITCHED,
}, 'R_');
checkCodes(READ_EVENTS, {
  RE_REQUEST, RE_REQUEST_LENGTH, RE_REQUEST_CHUNKED, RE_CHUNK, RE_LAST_CHUNK, RE_CHUNK_END, RE_CR, RE_LF, RE_END,
  RE_UPGRADE, RE_DECLINE, RE_SWITCH, RE_RESUME, RE_FAIL, RE_EOF, RE_CLOSE,
}, 'RE_');
checkCodes(WRITE_STATES, { W_IDLE, W_READY, W_BODY, W_CLOSED, W_SWITCHED }, 'W_');
checkCodes(WRITE_EVENTS, {
  WE_REQUEST, WE_INTERIM, WE_HEAD, WE_DATA, WE_END, WE_END_CLOSE, WE_RESPOND, WE_RESPOND_CLOSE, WE_ERROR_RESPONSE,
  WE_CLOSE, WE_SWITCH,
}, 'WE_');

// ------------------------------------------------------------------------------------- tracing

/** Which side a traced transition belongs to. */
export type Side = 'read' | 'write';
/** Receives every transition: the object whose state changed, and the codes. For tests and debugging. */
export type TransitionTrace = (side: Side, owner: object, from: number, event: number, to: number) => void;

/** The installed trace, or null (the hot path pays one null check per transition). */
export let trace: TransitionTrace | null = null;

/** Install (or remove, with null) a transition trace. Returns the previous one. */
export function setTransitionTrace(fn: TransitionTrace | null): TransitionTrace | null {
  const prev = trace;
  trace = fn;
  return prev;
}

/** Thrown for a read-side event the table does not allow: a bug in the engine, never the peer's doing. */
export function illegalRead(from: number, event: number): never {
  throw new Error(`h11 engine bug: read state '${READ_STATES[from]}' has no '${READ_EVENTS[event]}' transition`);
}

// ------------------------------------------------------------------------------------- diagram

function mermaid<S extends string, E extends string>(
  prefix: string, states: readonly S[], table: Table<S, E>, initial: S,
): string[] {
  const id = (s: string): string => prefix + s.replace(/-/g, '_');
  const lines = ['```mermaid', 'stateDiagram-v2'];
  for (const s of states) if (s.includes('-')) lines.push(`  state "${s}" as ${id(s)}`);
  lines.push(`  [*] --> ${id(initial)}`);
  for (const s of states) {
    // Edges with the same target are drawn once, labelled with all their events.
    const byTarget = new Map<string, string[]>();
    for (const [e, to] of movesFrom(table, s)) {
      const list = byTarget.get(to);
      if (list === undefined) byTarget.set(to, [e]);
      else list.push(e);
    }
    for (const [to, evs] of byTarget) lines.push(`  ${id(s)} --> ${id(to)}: ${evs.join(', ')}`);
  }
  lines.push('```');
  return lines;
}

function listing<S extends string, E extends string>(
  states: readonly S[], table: Table<S, E>, stateDoc: Readonly<Record<S, string>>, eventDoc: Readonly<Record<E, string>>,
): string[] {
  const lines = ['| state | meaning | event → next state |', '|---|---|---|'];
  for (const s of states) {
    const moves = movesFrom(table, s).map(([e, to]) => `\`${e}\` → \`${to}\``);
    lines.push(`| \`${s}\` | ${stateDoc[s]} | ${moves.length === 0 ? '(terminal)' : moves.join(', ')} |`);
  }
  lines.push('', '| event | when |', '|---|---|');
  for (const e in eventDoc) lines.push(`| \`${e}\` | ${eventDoc[e]} |`);
  return lines;
}

/** The README's state section (markdown: two mermaid diagrams and the tables), generated from the tables. */
export function stateDiagram(): string {
  return [
    '### Request side (read states)',
    '',
    ...mermaid('r_', READ_STATES, READ_TRANSITIONS, 'head'),
    '',
    ...listing(READ_STATES, READ_TRANSITIONS, READ_STATE_DOC, READ_EVENT_DOC),
    '',
    '### Response side (write states)',
    '',
    ...mermaid('w_', WRITE_STATES, WRITE_TRANSITIONS, 'idle'),
    '',
    ...listing(WRITE_STATES, WRITE_TRANSITIONS, WRITE_STATE_DOC, WRITE_EVENT_DOC),
  ].join('\n') + '\n';
}
