/**
 * The command line, read with the settings table (`--help` is src/help.ts). The table already
 * says everything a parser needs — each setting's flag, short flag, Gunicorn spellings and
 * kind — so this is the small getopt-style loop over it rather than a CLI framework: a
 * framework was 8 MB of the master's memory (SPEC §11) for what these 60 lines do.
 *
 *   --name VALUE, --name=VALUE, -n VALUE, -nVALUE   a value (a repeatable flag once per value)
 *   --flag, --no-flag, --flag=true|false            a boolean
 *   --                                              the rest is positional
 *
 * A value-taking flag takes the next word unless that word looks like another option (so
 * `-b -w 2` is "-b needs a value", not a bind address of "-w"); `-` and negative numbers are
 * values.
 */
import type { Layer } from './core/config-file.js';
import { SettingError } from './core/errors.js';
import { BY_NAME, SETTINGS, closest, kebab, parseValue, type SettingSpec, type Settings } from './core/settings.js';

const CLI_SETTINGS = SETTINGS.filter((s) => (s as SettingSpec).cli !== false) as SettingSpec[];

/** Every spelling on the command line (without dashes) → its setting; `help`/`version` are null. */
const FLAGS = new Map<string, SettingSpec | 'help' | 'version'>([
  ['help', 'help'], ['h', 'help'], ['version', 'version'], ['v', 'version'],
]);
for (const s of CLI_SETTINGS) for (const f of [kebab(s.name), ...(s.short ? [s.short] : []), ...(s.aliases ?? [])]) FLAGS.set(f, s);
const LONG_FLAGS = CLI_SETTINGS.flatMap((s) => [kebab(s.name), ...(s.aliases ?? [])]);

const repeatable = (s: SettingSpec) => s.kind === 'list' || s.kind === 'env';
const looksLikeOption = (word: string) => word.length > 1 && word.startsWith('-') && !/^-\d/.test(word);

/** Parse argv (the real one, or ARBITER_CMD_ARGS) into a layer of typed values. */
export function parseArgs(argv: string[], origin: 'cli' | 'ARBITER_CMD_ARGS'): { layer: Layer; help: boolean; version: boolean } {
  const where = origin === 'cli' ? '' : ` in ${origin}`;
  const raw = new Map<SettingSpec, { flag: string; values: unknown[] }>();
  const positional: string[] = [];
  let help = false;
  let version = false;
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!looksLikeOption(word)) {
      positional.push(word);
      continue;
    }
    // --name=value, --name, -n, -nVALUE, -n=VALUE
    const long = word.startsWith('--');
    const body = long ? word.slice(2) : word.slice(1);
    const eq = long || body[1] === '=' ? body.indexOf('=') : -1;
    let name = eq === -1 ? (long ? body : body[0]!) : body.slice(0, eq);
    let inline: string | undefined = eq !== -1 ? body.slice(eq + 1) : !long && body.length > 1 ? body.slice(1) : undefined;
    let spec = FLAGS.get(name);
    let negated = false;
    if (spec === undefined && long && name.startsWith('no-')) {
      const plain = FLAGS.get(name.slice(3));
      if (plain && typeof plain !== 'string' && plain.kind === 'boolean') [spec, negated, name] = [plain, true, name.slice(3)];
    }
    const flag = name.length === 1 ? `-${name}` : `--${name}`;
    if (spec === undefined) {
      const near = closest(name, LONG_FLAGS);
      throw new SettingError(`unknown option ${flag}${where}` + (near ? ` — did you mean --${near}?` : ''));
    }
    if (spec === 'help' || spec === 'version') {
      if (spec === 'help') help = true;
      else version = true;
      continue;
    }
    let value: unknown;
    if (spec.kind === 'boolean') {
      if (inline !== undefined && !long) throw new SettingError(`${flag} takes no value${where} (got "${inline}")`);
      if (inline !== undefined && negated) throw new SettingError(`--no-${name} takes no value${where}`);
      value = negated ? false : inline ?? true;
    } else if (inline !== undefined) value = inline;
    else if (i + 1 < argv.length && !looksLikeOption(argv[i + 1]!)) value = argv[++i];
    else throw new SettingError(`${flag} needs a value${where}${spec.meta ? ` (${spec.meta})` : ''}`);
    const seen = raw.get(spec) ?? { flag: `--${kebab(spec.name)}`, values: [] };
    seen.values.push(value);
    raw.set(spec, seen);
  }
  const layer: Layer = {};
  for (const [s, { flag, values }] of raw) {
    if (values.length > 1 && !repeatable(s)) throw new SettingError(`${flag} was given ${values.length} times; it takes one value`);
    layer[s.name as keyof Settings] = parseValue(s, repeatable(s) ? values : values[0], origin === 'cli' ? flag : `${flag} in ARBITER_CMD_ARGS`);
  }
  if (positional.length > 1) throw new SettingError(`unexpected argument "${positional[1]}": give one APP_MODULE`);
  if (positional.length === 1) layer.app = parseValue(BY_NAME.get('app')!, positional[0], 'APP_MODULE');
  return { layer, help, version };
}

/** Split ARBITER_CMD_ARGS the way a shell would (quotes and backslashes, no expansion). */
export function splitArgs(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: '"' | "'" | null = null;
  let has = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < text.length) cur += text[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      has = true;
    } else if (c === '\\' && i + 1 < text.length) {
      cur += text[++i];
      has = true;
    } else if (/\s/.test(c)) {
      if (has || cur) out.push(cur);
      cur = '';
      has = false;
    } else cur += c;
  }
  if (quote) throw new SettingError('ARBITER_CMD_ARGS has an unclosed quote');
  if (has || cur) out.push(cur);
  return out;
}

