// The man page, the README's settings table and config.example.ts come from the settings
// table; these tests fail when one of them is stale.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { expectedDocs, MAN_PAGE, README } from '../src/docs.ts';
import { SETTINGS } from '../src/core/settings.ts';
import { ROOT } from './helpers.ts';

test('man/arbiter.1 is generated from the settings table (run `npm run docs`)', () => {
  assert.equal(readFileSync(MAN_PAGE, 'utf8'), expectedDocs().man);
});

test("the README's settings table is generated from the settings table (run `npm run docs`)", () => {
  assert.equal(readFileSync(README, 'utf8'), expectedDocs().readme);
  for (const s of SETTINGS) assert.ok(readFileSync(README, 'utf8').includes(`| \`${s.name}\` |`), s.name);
});

test('config.example.ts shows every setting and type-checks against defineConfig', { timeout: 120_000 }, () => {
  const text = readFileSync(path.join(ROOT, 'config.example.ts'), 'utf8');
  for (const s of SETTINGS) assert.match(text, new RegExp(`^  ${s.name}: `, 'm'), `config.example.ts lacks ${s.name}`);
  // Throws (with the compiler's messages) when the example does not fit the type.
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'test', 'tsconfig.example.json')], { stdio: 'pipe' });
});

test('--help lists every command-line setting', { timeout: 20_000 }, () => {
  const help = execFileSync(process.execPath, [path.join(ROOT, 'bin', 'arbiter'), '--help'], { encoding: 'utf8' });
  for (const s of SETTINGS) {
    if ((s as { cli?: boolean }).cli === false) continue;
    const flag = '--' + s.name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
    assert.ok(help.includes(flag), `--help lacks ${flag}`);
  }
});

test('the man page has a section for every command, and SIGNALS, FILES, ENVIRONMENT, EXIT STATUS', async () => {
  const { COMMANDS } = await import('../src/commands/catalog.ts');
  const man = readFileSync(MAN_PAGE, 'utf8');
  for (const c of COMMANDS) assert.match(man, new RegExp(`^\\.SS ${c.name}$`, 'm'), `man page section for ${c.name}`);
  for (const section of ['COMMANDS', 'OPTIONS', 'SIGNALS', 'FILES', 'ENVIRONMENT', 'EXIT STATUS']) assert.match(man, new RegExp(`^\\.SH ${section}$`, 'm'));
  assert.doesNotMatch(man, /workers\\fR worker processes|workers worker/);
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  assert.ok([pkg.man].flat().some((m: string) => path.resolve(ROOT, m) === MAN_PAGE), 'package.json names the man page');
});

test('settings: no alias repeats the flag it belongs to', () => {
  for (const s of SETTINGS) {
    const flags = [s.name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()), ...((s as { aliases?: string[] }).aliases ?? [])];
    assert.equal(new Set(flags).size, flags.length, `${s.name}: ${flags.join(', ')}`);
  }
});
