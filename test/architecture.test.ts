/**
 * The one rule of imports (SPEC §1, README "Reading the code"): `src/core/` is what both
 * processes run and imports nothing of ours outside itself; `workers/` (the worker side)
 * imports only `workers/` and `src/core/`; the rest of `src/` (the master side) never
 * imports `workers/`, except the worker-class registry that checks an app. No cycles, lazy
 * `import()`s and type-only imports included.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ROOT } from './helpers.ts';

const CODE_ROOTS = ['src', 'workers'];
const MASTER_MAY_IMPORT_FROM_WORKERS = new Set(['workers/classes.ts']);

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(path.join(ROOT, dir))) {
    const rel = `${dir}/${name}`;
    if (statSync(path.join(ROOT, rel)).isDirectory()) out.push(...sourceFiles(rel));
    else if (rel.endsWith('.ts') && !rel.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

const IMPORT = /(?:^|[\s;])(?:import|export)\s[^'"`;]*?\sfrom\s*['"]([^'"]+)['"]|(?:^|[\s;(])import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;

/** Our own files that `file` imports (relative specifiers, resolved to .ts). */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    if (!spec.startsWith('.')) continue;
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec)).replace(/\.js$/, '.ts');
    assert.ok(existsSync(path.join(ROOT, target)), `${file} imports ${spec}, which is not a file of ours (${target})`);
    out.push(target);
  }
  return out;
}

export function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const root of CODE_ROOTS) for (const f of sourceFiles(root)) graph.set(f, importsOf(f));
  return graph;
}

export function forbiddenEdges(graph: Map<string, string[]>): string[] {
  const bad: string[] = [];
  for (const [from, tos] of graph) {
    for (const to of tos) {
      const why = from.startsWith('src/core/')
        ? !to.startsWith('src/core/') && 'src/core/ imports only src/core/'
        : from.startsWith('workers/')
          ? !to.startsWith('workers/') && !to.startsWith('src/core/') && 'workers/ imports only workers/ and src/core/'
          : to.startsWith('workers/') && !MASTER_MAY_IMPORT_FROM_WORKERS.has(to) && 'the master side imports nothing of workers/ but the class registry';
      if (why) bad.push(`${from} -> ${to}: ${why}`);
    }
  }
  return bad;
}

/** Every cycle, each as the path that closes it. */
export function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    stack.push(f);
    for (const to of graph.get(f) ?? []) {
      if (state.get(to) === 'open') found.push([...stack.slice(stack.indexOf(to)), to]);
      else if (!state.has(to)) visit(to);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return found;
}

test('imports run one way: core <- workers, core <- master, master -> workers only through the class registry', () => {
  const graph = importGraph();
  assert.ok(graph.size > 40, `read ${graph.size} files`);
  assert.deepEqual(forbiddenEdges(graph), []);
});

test('no import cycles, lazy and type-only imports included', () => {
  assert.deepEqual(cycles(importGraph()).map((c) => c.join(' -> ')), []);
});

test('the checks catch what they are for', () => {
  const graph = new Map<string, string[]>([
    ['src/core/a.ts', ['src/master.ts']],
    ['workers/w.ts', ['src/config.ts', 'src/core/a.ts']],
    ['src/master.ts', ['workers/http.ts', 'workers/classes.ts', 'src/x.ts']],
    ['src/x.ts', ['src/master.ts']],
  ]);
  assert.deepEqual(forbiddenEdges(graph), [
    'src/core/a.ts -> src/master.ts: src/core/ imports only src/core/',
    'workers/w.ts -> src/config.ts: workers/ imports only workers/ and src/core/',
    'src/master.ts -> workers/http.ts: the master side imports nothing of workers/ but the class registry',
  ]);
  assert.deepEqual(cycles(graph).map((c) => c.join(' -> ')), ['src/master.ts -> src/x.ts -> src/master.ts']);
});
