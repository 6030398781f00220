/**
 * How V8 runs the master while it starts, and a worker while it boots: without its optimising
 * compiler, and with a young generation that does not grow.
 *
 * A start runs most of the master's code once: some 50 module URLs resolved and loaded, the
 * settings table built, the command line and config read. The functions that loop most in it
 * are Node's path and URL helpers, called by the module loader for every import, and V8 gives
 * them to TurboFan: a compile on a background thread while the workers boot on the same cores,
 * for code that is not run again. Worse, the compiler's own machine code then stays in the
 * master's resident set, some 1.7 MB of the node binary that no idle worker shares (measured
 * with /proc/PID/smaps on Node 20: node's file-backed PSS 6.6 MB in the master against 4.3 MB
 * in a worker; 4.9 MB with this). The young generation, sized by how fast those first moments
 * allocate, doubles and stays committed (0.5 MB more) in a process that then mostly waits.
 *
 * So `bin/arbiter` calls quietStart() before it loads anything else, and the master calls
 * endQuietStart() when it is ready: from then on V8 runs the master as it runs any process, so
 * a master relaying a flood of worker output still gets optimised code. Both are V8 flags
 * read when V8 decides, not when it starts, which is what lets them change at run time. When
 * the user set any of them (NODE_OPTIONS, node's command line), arbiter leaves them alone.
 *
 * A worker does the same around loading its class and the app (workers/runtime.ts), back to
 * the defaults as it reports `booted`: `-k h11` (some 20 modules) and any app of a few dozen
 * modules (Express) make the loader's helpers hot enough for TurboFan, which then left 0.9 MB
 * of the node binary's compiler pages and a compile thread's stack in every such worker
 * (Node 20, `-k h11 -w 4` after 3 s idle: worker PSS 15.6 -> 14.5 MB). It has a price where
 * nothing was hot: a V8 flag that differs from the default makes V8 refuse the code cache of
 * Node's built-in modules compiled meanwhile (node:http), some 0.08-0.17 MB of malloc in a
 * `-k http` worker serving examples/hello.js. This file is in src/core/ because both
 * processes run it.
 */
import v8 from 'node:v8';

/** Each flag as the master starts, and as V8's default it goes back to. */
const FLAGS: readonly (readonly [start: string, after: string])[] = [
  ['--no-turbofan', '--turbofan'],
  ['--semi-space-growth-factor=1', '--semi-space-growth-factor=2'],
];

/** Whether node's own flags (its command line, NODE_OPTIONS) already say how to run any of FLAGS. */
export function userSetFlags(execArgv: readonly string[], nodeOptions = ''): boolean {
  return /(^|\s)--(no-)?(turbofan|opt|semi-space-growth-factor|semi_space_growth_factor)(=|\s|$)/.test(`${execArgv.join(' ')} ${nodeOptions}`);
}

let quiet = false;

export function quietStart(): void {
  if (quiet || userSetFlags(process.execArgv, process.env.NODE_OPTIONS)) return;
  for (const [start] of FLAGS) v8.setFlagsFromString(start);
  quiet = true;
}

export function endQuietStart(): void {
  if (!quiet) return;
  for (const [, after] of FLAGS) v8.setFlagsFromString(after);
  quiet = false;
}
