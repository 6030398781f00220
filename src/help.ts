/**
 * `arbiter --help`, `arbiter help COMMAND` and `arbiter COMMAND --help`: the settings table
 * and the command catalog, laid out for the terminal's width ($COLUMNS, else the terminal's,
 * else 80) without ever cutting a word, with each option's value written the way users
 * write it (`SECONDS`, `INT|auto`, `auto|node|fetch`) and its default as a user would type it.
 */
import { COMMANDS, commandDoc, type CommandDoc } from './commands/catalog.js';
import { SECTION_TITLES, SETTINGS, cliFlags, type Section, type SettingSpec } from './core/settings.js';

/** Where help lines end: $COLUMNS, the terminal's width, or 80. */
export function helpWidth(stream: { isTTY?: boolean; columns?: number } = process.stdout, env: NodeJS.ProcessEnv = process.env): number {
  const fromEnv = Number(env.COLUMNS);
  if (Number.isInteger(fromEnv) && fromEnv >= 20) return fromEnv;
  if (stream.isTTY && stream.columns && stream.columns >= 20) return stream.columns;
  return 80;
}

/**
 * Words of `text` in lines of at most `width` columns, every line after the first indented
 * by `indent` and the first by `first`. A word longer than a whole line is the only thing
 * ever split (nothing else would fit).
 */
export function wrap(text: string, width: number, indent = 0, first = indent): string[] {
  const lines = wrapWords(ascii(text), width, indent, first);
  return lines.map((l) => l.replace(/\u00a0/g, ' '));
}

/** Help is plain ASCII: a terminal or a pager without UTF-8 shows it as it is meant. */
function ascii(text: string): string {
  return text.replace(/…/g, '...').replace(/[—–]/g, '-').replace(/×/g, 'x').replace(/[“”]/g, '"').replace(/[‘’]/g, "'");
}

function wrapWords(text: string, width: number, indent: number, first: number): string[] {
  const lines: string[] = [];
  let line = ' '.repeat(first);
  let empty = true;
  const room = () => width - (lines.length === 0 ? first : indent);
  const words = text.split(/[ \t\n]+/).filter(Boolean);
  for (let i = 0; i < words.length; i++) {
    let word = words[i]!;
    if (!empty && line.length + 1 + word.length > width) {
      lines.push(line);
      line = ' '.repeat(indent);
      empty = true;
    }
    if (empty && word.length > room()) {
      // Glued words that cannot fit on a line of their own come apart first...
      if (word.includes('\u00a0')) {
        words.splice(i, 1, ...word.split('\u00a0'));
        i--;
        continue;
      }
      // ...and only a word longer than a whole line is ever cut.
      while (word.length > room()) {
        lines.push(line + word.slice(0, room()));
        word = word.slice(room());
        line = ' '.repeat(indent);
      }
    }
    line += (empty ? '' : ' ') + word;
    empty = false;
  }
  if (!empty || lines.length === 0) lines.push(line);
  return lines;
}

/** An option row: flags on the left, the text beside them or, when they are long, below. */
function optionRows(flags: string, doc: string, width: number, col: number): string[] {
  const left = `  ${flags}`;
  if (left.length + 2 <= col) {
    const body = wrap(doc, width, col, col);
    body[0] = left.padEnd(col) + body[0]!.slice(col);
    return body;
  }
  return [...wrap(flags, width, 6, 2), ...wrap(doc, width, col, col)];
}

/** What follows a flag: the meta of the row (`SECONDS`), an enum's choices, nothing for a switch. */
function valueOf(s: SettingSpec): string {
  if (s.kind === 'boolean') return '';
  if (s.kind === 'enum' && s.choices) return s.choices.join('|');
  return s.meta ?? 'VALUE';
}

/** A default as a user would write it, or '' when there is none to show. */
export function shownDefault(s: SettingSpec): string {
  const d = s.default;
  if (s.kind === 'hook') return '';
  if (d === null) return 'unset';
  if (Array.isArray(d)) return d.length ? d.join(', ') : 'none';
  if (typeof d === 'object') return 'none';
  if (s.kind === 'seconds') return `${d} s`;
  return String(d);
}

function defaultNote(s: SettingSpec): string {
  if (s.kind === 'boolean') return '';
  const d = shownDefault(s);
  if (d === 'unset' || d === 'none' || d === '') return '';
  // A short default is read as one thing ("30 s" never ends a line at "30"); a long one wraps.
  return d.length <= 20 ? ` (default:\u00a0${d.replace(/ /g, '\u00a0')})` : ` (default: ${d})`;
}

const repeatable = (s: SettingSpec) => s.kind === 'list' || s.kind === 'env';

function commandsList(width: number): string[] {
  const col = Math.max(...COMMANDS.map((c) => c.name.length)) + 4;
  return COMMANDS.flatMap((c) => optionRows(c.name, c.summary, width, col));
}

/** `arbiter --help` and `arbiter help`. */
export function mainHelp(width = helpWidth()): string {
  const out: string[] = [
    ...wrap('Usage: arbiter [OPTIONS] APP_MODULE', width, 9, 0),
    ...wrap('arbiter COMMAND [ARGS]   (arbiter help COMMAND)', width, 9, 7),
    '',
    ...wrap(
      'A pre-fork process manager for Node.js: one master binds the sockets and keeps N workers serving APP_MODULE (MODULE[:EXPORT], e.g. app.js:handler). Settings come from the options below, ARBITER_* variables, ARBITER_CMD_ARGS and a config file (arbiter.conf.ts, arbiter.config.*), in that order of precedence.',
      width,
    ),
    '',
    'Commands:',
    ...commandsList(width),
  ];
  const bySection = new Map<Section, SettingSpec[]>();
  for (const s of SETTINGS as readonly SettingSpec[]) {
    if (s.cli === false) continue;
    bySection.set(s.section, [...(bySection.get(s.section) ?? []), s]);
  }
  const col = Math.min(32, Math.floor(width / 2.5));
  for (const [section, list] of bySection) {
    out.push('', `${SECTION_TITLES[section]}:`);
    for (const s of list) {
      const value = valueOf(s);
      const flags = cliFlags(s).join(', ') + (value ? ` ${value}` : '');
      const doc = s.doc.replace(/`/g, '') + (repeatable(s) && !/repeatable/.test(s.doc) ? ' (repeatable)' : '') + defaultNote(s);
      out.push(...optionRows(flags, doc, width, col));
    }
  }
  out.push('', 'Other:', ...optionRows('-h, --help', 'Show this help.', width, col), ...optionRows('-v, --version', 'Show the version.', width, col));
  return out.join('\n') + '\n';
}

/** `arbiter help COMMAND`, `arbiter COMMAND --help`. */
export function commandHelp(doc: CommandDoc, width = helpWidth()): string {
  const out: string[] = [];
  doc.usage.forEach((u, i) => {
    const lines = wrap(`arbiter ${u}`, width, 9, 7);
    lines[0] = (i === 0 ? 'Usage: ' : '       ') + lines[0]!.slice(7);
    out.push(...lines);
  });
  out.push('', ...wrap(doc.summary[0]!.toUpperCase() + doc.summary.slice(1) + '.', width));
  for (const p of doc.description) out.push('', ...wrap(p.replace(/`/g, ''), width));
  if (doc.options.length) {
    const col = Math.min(28, Math.floor(width / 2.5));
    out.push('', 'Options:');
    for (const [flags, text] of doc.options) out.push(...optionRows(flags, text.replace(/`/g, ''), width, col));
  }
  return out.join('\n') + '\n';
}

/** The help for `name`, or null when there is no such command. */
export function helpFor(name: string | undefined, width = helpWidth()): string | null {
  if (name === undefined) return mainHelp(width);
  const doc = commandDoc(name);
  return doc ? commandHelp(doc, width) : null;
}
