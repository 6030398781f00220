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
