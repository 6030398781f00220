/**
 * The command line, built from the settings table: the yargs parser, `--help`, and the
 * parsing of argv (or ARBITER_CMD_ARGS) into a layer of typed values.
 */
import yargs, { type Argv } from 'yargs';
import type { Layer } from './core/config-file.js';
import { SettingError } from './core/errors.js';
import { BY_NAME, SECTION_TITLES, SETTINGS, closest, kebab, parseValue, type SettingSpec, type Settings } from './core/settings.js';

const CLI_SETTINGS = SETTINGS.filter((s) => (s as SettingSpec).cli !== false) as SettingSpec[];

/** Build the yargs parser from the settings table. */
function parser(argv: string[], forHelp: boolean): Argv {
  let y = yargs(argv)
    .scriptName('arbiter')
    .usage(
      'Usage: arbiter [OPTIONS] APP_MODULE\n\n' +
        'A pre-fork process manager for Node.js: one master binds the sockets and keeps\n' +
        'N workers serving APP_MODULE (MODULE[:EXPORT], e.g. app.js:handler).\n\n' +
        'Commands: arbiter status | reload [POOL] | stop | scale [POOL] N | upgrade   (need controlSocket or pidfile)\n' +
        '          arbiter enqueue NAME [JSON] | result ID | dlq list|retry|purge   (task queues)',
    )
    .parserConfiguration({
      'camel-case-expansion': false,
      'strip-aliased': true,
      'boolean-negation': true,
      'parse-numbers': false,
      'parse-positional-numbers': false,
    })
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new SettingError(msg.replace(/\n.*/s, ''));
    });
  for (const s of CLI_SETTINGS) {
    const isBool = s.kind === 'boolean';
    const repeatable = s.kind === 'list' || s.kind === 'env';
    y = y.option(kebab(s.name), {
      alias: [...(s.short ? [s.short] : []), ...(s.aliases ?? [])],
      type: isBool ? 'boolean' : 'string',
      array: repeatable,
      requiresArg: !isBool,
      describe: s.doc.replace(/`/g, '') + (forHelp ? defaultNote(s) : ''),
      group: SECTION_TITLES[s.section] + ':',
    });
  }
  return y.help(false).version(false).option('help', { alias: 'h', type: 'boolean', describe: 'Show this help' }).option('version', { alias: 'v', type: 'boolean', describe: 'Show the version' });
}

function defaultNote(s: SettingSpec): string {
  const d = s.default;
  if (d === null || (Array.isArray(d) && d.length === 0) || (typeof d === 'object' && d && !Array.isArray(d) && Object.keys(d).length === 0)) return '';
  return ` [default: ${Array.isArray(d) ? d.join(', ') : String(d)}]`;
}

const KNOWN_KEYS = new Set(['_', '$0', 'help', 'version', ...CLI_SETTINGS.map((s) => kebab(s.name))]);
const ALL_FLAGS = CLI_SETTINGS.flatMap((s) => [kebab(s.name), ...(s.aliases ?? [])]);

/** Parse argv (the real one, or ARBITER_CMD_ARGS) into a layer of typed values. */
export function parseArgs(argv: string[], origin: 'cli' | 'ARBITER_CMD_ARGS'): { layer: Layer; help: boolean; version: boolean } {
  const parsed = parser(argv, false).parseSync() as Record<string, unknown>;
  for (const key of Object.keys(parsed)) {
    if (KNOWN_KEYS.has(key)) continue;
    const flag = key.length === 1 ? `-${key}` : `--${key}`;
    const near = closest(key, ALL_FLAGS);
    throw new SettingError(`unknown option ${flag}${origin === 'cli' ? '' : ` in ${origin}`}` + (near ? ` — did you mean --${near}?` : ''));
  }
  const layer: Layer = {};
  for (const s of CLI_SETTINGS) {
    const raw = parsed[kebab(s.name)];
    if (raw === undefined) continue;
    const flag = `--${kebab(s.name)}`;
    if (Array.isArray(raw) && s.kind !== 'list' && s.kind !== 'env')
      throw new SettingError(`${flag} was given ${raw.length} times; it takes one value`);
    layer[s.name as keyof Settings] = parseValue(s, raw, origin === 'cli' ? flag : `${flag} in ARBITER_CMD_ARGS`);
  }
  const positional = (parsed._ as unknown[]).map(String);
  if (positional.length > 1) throw new SettingError(`unexpected argument "${positional[1]}": give one APP_MODULE`);
  if (positional.length === 1) layer.app = parseValue(BY_NAME.get('app')!, positional[0], 'APP_MODULE');
  return { layer, help: parsed.help === true, version: parsed.version === true };
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


/** `arbiter --help`. */
export function helpText(): Promise<string> {
  return parser([], true).getHelp();
}
