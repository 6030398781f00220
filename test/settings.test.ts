// The settings table and its faces: parsing by kind, suggestions, the command line, bind
// addresses and app specs. No processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BY_NAME, DEFAULTS, SETTINGS, closest, envName, parseValue, unknownSetting, kebab } from '../src/core/settings.ts';
import { splitArgs, parseArgs } from '../src/argv.ts';
import { parseAddress, labelOf } from '../src/sockets.ts';
import { parseAppSpec } from '../src/core/app.ts';

const spec = (name: string) => BY_NAME.get(name)!;

test('every setting has a doc line, a section and a default of its kind', () => {
  const names = new Set<string>();
  for (const s of SETTINGS) {
    assert.ok(!names.has(s.name), `duplicate ${s.name}`);
    names.add(s.name);
    assert.ok(s.doc.length > 10, s.name);
    assert.ok(/^[a-z][A-Za-z0-9]*$/.test(s.name), s.name);
  }
  assert.equal(DEFAULTS.workers, 1);
  assert.deepEqual(DEFAULTS.bind, ['127.0.0.1:8000']);
  assert.equal(envName('maxRequestsJitter'), 'ARBITER_MAX_REQUESTS_JITTER');
  assert.equal(kebab('limitRequestFieldSize'), 'limit-request-field-size');
});

test('values are parsed by kind, from text and from config values', () => {
  assert.equal(parseValue(spec('workers'), '4', 'x'), 4);
  assert.equal(parseValue(spec('workers'), 'auto', 'x'), 'auto');
  const fn = (c: number) => c * 2;
  assert.equal(parseValue(spec('workers'), fn, 'x'), fn);
  assert.equal(parseValue(spec('timeout'), '2.5', 'x'), 2.5);
  assert.equal(parseValue(spec('reload'), 'yes', 'x'), true);
  assert.equal(parseValue(spec('reload'), false, 'x'), false);
  assert.deepEqual(parseValue(spec('bind'), 'a:1, b:2', 'x'), ['a:1', 'b:2']);
  assert.deepEqual(parseValue(spec('env'), ['A=1', 'B=x=y'], 'x'), { A: '1', B: 'x=y' });
  assert.equal(parseValue(spec('maxWorkerMemory'), '512MB', 'x'), 512_000_000);
  assert.equal(parseValue(spec('umask'), '027', 'x'), 0o27);
  assert.equal(parseValue(spec('pidfile'), null, 'x'), null);
});

test('bad values name the setting, the value, the origin and what was expected', () => {
  assert.throws(() => parseValue(spec('workers'), 'many', '--workers'), /invalid value "many" for workers \(--workers\): expected a whole number >= 1/);
  assert.throws(() => parseValue(spec('workers'), 0, 'x'), /expected a whole number >= 1/);
  assert.throws(() => parseValue(spec('timeout'), '-1', 'ARBITER_TIMEOUT'), /timeout \(ARBITER_TIMEOUT\)/);
  assert.throws(() => parseValue(spec('interface'), 'grpc', 'x'), /one of auto, node, fetch/);
  assert.throws(() => parseValue(spec('env'), ['NOEQUALS'], 'x'), /KEY=VALUE/);
  assert.throws(() => parseValue(spec('maxWorkerMemory'), 'lots', 'x'), /size in bytes/);
  assert.throws(() => parseValue(spec('umask'), '999', 'x'), /octal/);
  assert.throws(() => parseValue(spec('onStarting'), 'not a function', 'x'), /expected a function/);
});

test('misspellings get a suggestion; strangers do not', () => {
  assert.equal(closest('worker', SETTINGS.map((s) => s.name)), 'workers');
  assert.equal(closest('gracefullTimeout', SETTINGS.map((s) => s.name)), 'gracefulTimeout');
  assert.equal(closest('zzzzzz', SETTINGS.map((s) => s.name)), undefined);
  assert.match(unknownSetting('keepAlive', 'arbiter.config.ts').message, /unknown setting "keepAlive" in arbiter.config.ts — did you mean "keepalive"\?/);
});

test('command-line flags, Gunicorn spellings and repeatable flags', () => {
  const { layer } = parseArgs(['app.js', '-w', '3', '--keep-alive', '2', '-b', 'a:1', '--bind', 'b:2', '--pid', 'x.pid', '--no-reload'], 'cli');
  assert.deepEqual(layer, { app: 'app.js', workers: 3, keepalive: 2, bind: ['a:1', 'b:2'], pidfile: 'x.pid', reload: false });
  assert.throws(() => parseArgs(['--workres', '2'], 'cli'), /unknown option --workres — did you mean --workers\?/);
  assert.throws(() => parseArgs(['-w', '2', '-w', '3'], 'cli'), /given 2 times/);
  assert.throws(() => parseArgs(['a.js', 'b.js'], 'cli'), /unexpected argument "b.js"/);
});

test('the command line as getopt reads it: attached values, -, negative numbers, --, and what needs a value', () => {
  const { layer } = parseArgs(['-w3', '--timeout=7', '--access-log', '-', '-b', 'x:1', '--reload=false', '--', '-weird-name.js'], 'cli');
  assert.deepEqual(layer, { workers: 3, timeout: 7, accessLog: '-', bind: ['x:1'], reload: false, app: '-weird-name.js' });
  assert.equal(parseArgs(['-D'], 'cli').layer.daemon, true);
  assert.deepEqual(parseArgs(['-h', '--version'], 'cli'), { layer: {}, help: true, version: true });
  assert.throws(() => parseArgs(['-b', '-w', '2'], 'cli'), /^SettingError: -b needs a value \(ADDRESS\)$/);
  assert.throws(() => parseArgs(['app.js', '--timeout'], 'cli'), /--timeout needs a value/);
  assert.throws(() => parseArgs(['--no-timeout'], 'cli'), /unknown option --no-timeout/);
  assert.throws(() => parseArgs(['--no-reload=1'], 'cli'), /--no-reload takes no value/);
  assert.throws(() => parseArgs(['-w', '2', '-x'], 'ARBITER_CMD_ARGS'), /unknown option -x in ARBITER_CMD_ARGS/);
  assert.throws(() => parseArgs(['--timeout', '-1'], 'cli'), /invalid value "-1" for timeout/);
});

test('ARBITER_CMD_ARGS is split like a shell would', () => {
  assert.deepEqual(splitArgs(`-w 2 --env 'A=hello world' -e B="x y" --reload`), ['-w', '2', '--env', 'A=hello world', '-e', 'B=x y', '--reload']);
  assert.deepEqual(splitArgs(`a\\ b ''`), ['a b', '']);
  assert.throws(() => splitArgs(`-e 'A=1`), /unclosed quote/);
});

test('bind addresses', () => {
  assert.deepEqual(parseAddress('0.0.0.0:8000'), { kind: 'tcp', host: '0.0.0.0', port: 8000, v6: false });
  assert.deepEqual(parseAddress('[::1]:9000'), { kind: 'tcp', host: '::1', port: 9000, v6: true });
  assert.deepEqual(parseAddress('8080'), { kind: 'tcp', host: '0.0.0.0', port: 8080, v6: false });
  assert.deepEqual(parseAddress('localhost'), { kind: 'tcp', host: 'localhost', port: 8000, v6: false });
  assert.deepEqual(parseAddress('unix:/tmp/a.sock'), { kind: 'unix', path: '/tmp/a.sock' });
  assert.deepEqual(parseAddress('fd://3'), { kind: 'fd', fd: 3 });
  assert.equal(labelOf(parseAddress('[::1]:9000')), '[::1]:9000');
  assert.throws(() => parseAddress('::1:8000'), /brackets/);
  assert.throws(() => parseAddress('host:99999'), /port must be a number/);
  assert.throws(() => parseAddress('fd://x'), /descriptor number/);
  assert.throws(() => parseAddress('unix:'), /needs a path/);
});

test('app specs', () => {
  assert.deepEqual(parseAppSpec('examples/hello.js:handler'), { module: 'examples/hello.js', exportName: 'handler' });
  assert.deepEqual(parseAppSpec('app'), { module: 'app', exportName: 'default' });
  assert.deepEqual(parseAppSpec('@scope/pkg:app'), { module: '@scope/pkg', exportName: 'app' });
});
