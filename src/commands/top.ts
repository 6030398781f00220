/**
 * `arbiter top`: a live view of one arbiter, redrawn every second from its control socket.
 * Rates (requests or tasks per second, CPU %) are the difference between two status samples
 * over the time between them. On a terminal it takes the alternate screen, hides the cursor
 * and reads keys raw; `q`, Ctrl-C, TERM and HUP all give the terminal back as it was. When
 * stdout is not a terminal it prints one frame and exits.
 */
import type { Status, WorkerStatus } from '../control.js';
import { SettingError, errorMessage } from '../core/errors.js';
import { fatalLine } from '../core/logging.js';
import { bytes, duration } from './control.js';
import { oneSocket, request, select } from './target.js';

const REFRESH_MS = 1000;

/** What one refresh needs from the previous one, per worker pid. */
interface Sample {
  at: number;
  workers: Map<number, { requests: number; cpu: number | null }>;
}

export interface Row {
  pid: string;
  pool: string;
  state: string;
  age: string;
  uptime: string;
  rate: string;
  active: string;
  rss: string;
  cpu: string;
  loop: string;
}

/** Per-second rates of `w` against the previous sample (blank on the first). */
export function rowOf(w: WorkerStatus, prev: Sample | null, now: number): Row {
  const before = prev?.workers.get(w.pid);
  const dt = prev ? (now - prev.at) / 1000 : 0;
  const rate = before && dt > 0 ? Math.max(0, (w.requests - before.requests) / dt) : null;
  const cpu = before && dt > 0 && w.cpu !== null && before.cpu !== null ? Math.max(0, ((w.cpu - before.cpu) / dt) * 100) : null;
  return {
    pid: String(w.pid),
    pool: w.pool,
    state: w.state,
    age: String(w.age),
    uptime: duration(w.uptime),
    rate: rate === null ? '-' : rate.toFixed(1),
    active: String(w.active),
    rss: bytes(w.rss),
    cpu: cpu === null ? '-' : cpu.toFixed(1),
    loop: w.loopDelay ? `${w.loopDelay.mean.toFixed(1)}/${w.loopDelay.max.toFixed(1)}` : '-',
  };
}

export function sampleOf(st: Status, at: number): Sample {
  return { at, workers: new Map(st.workers.map((w) => [w.pid, { requests: w.requests, cpu: w.cpu }])) };
}

/** One screen: a header, the worker table; every line cut to `width`. */
export function frame(st: Status, prev: Sample | null, now: number, width: number): string[] {
  const isTask = st.workerClass === 'task';
  const serving = st.workers.filter((w) => w.state === 'serving').length;
  const restarts = Object.entries(st.restarts).map(([k, v]) => `${k} ${v}`).join(', ');
  const clock = new Date(now).toTimeString().slice(0, 8);
  const header = [
    `arbiter top - ${st.name}: master ${st.pid}, up ${duration(st.uptime)}, arbiter ${st.version}   ${clock}`,
    `${st.app ?? '-'} (${st.workerClass}) on ${st.listeners.join(', ') || '-'}`,
    `workers: ${serving} serving of ${st.target}   restarts: ${restarts}`,
    '',
  ];
  const cols: [keyof Row, string][] = [
    ['pid', 'PID'], ['state', 'STATE'], ['age', 'AGE'], ['uptime', 'UPTIME'], ['rate', isTask ? 'TASKS/S' : 'REQ/S'],
    ['active', 'IN FLIGHT'], ['rss', 'RSS'], ['cpu', 'CPU%'], ['loop', 'LOOP MS mean/max'],
  ];
  if (new Set(st.workers.map((w) => w.pool)).size > 1) cols.splice(1, 0, ['pool', 'POOL']);
  const rows = st.workers.map((w) => rowOf(w, prev, now));
  const widths = cols.map(([k, title]) => Math.max(title.length, ...rows.map((r) => r[k].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  const table = [line(cols.map(([, t]) => t)), ...rows.map((r) => line(cols.map(([k]) => r[k])))];
  return [...header, ...table, '', 'q quits'].map((l) => l.slice(0, width));
}

const CSI = '\x1b[';
const ENTER = `${CSI}?1049h${CSI}?25l`;
const LEAVE = `${CSI}?25h${CSI}?1049l`;

export async function topCommand(argv: string[]): Promise<number> {
  let socket: string;
  try {
    socket = await oneSocket(await select(argv.slice(1)), 'top');
  } catch (err) {
    fatalLine(errorMessage(err));
    return err instanceof SettingError ? 2 : 1;
  }
  const out = process.stdout;
  if (!out.isTTY) {
    // One frame for a pipe (rates need two samples, a second apart).
    try {
      const a = (await request(socket, { cmd: 'status' })).status as Status;
      const t0 = Date.now();
      await new Promise((r) => setTimeout(r, REFRESH_MS));
      const b = (await request(socket, { cmd: 'status' })).status as Status;
      out.write(frame(b, sampleOf(a, t0), Date.now(), 200).join('\n') + '\n');
      return 0;
    } catch (err) {
      fatalLine(errorMessage(err));
      return 1;
    }
  }
  return live(socket);
}

function live(socket: string): Promise<number> {
  const out = process.stdout;
  const stdin = process.stdin;
  return new Promise<number>((resolve) => {
    let prev: Sample | null = null;
    let last: string[] = [];
    let timer: NodeJS.Timeout | null = null;
    let done = false;
    const draw = (lines: string[]) => {
      last = lines;
      const rows = out.rows || 24;
      out.write(`${CSI}H` + lines.slice(0, rows).map((l) => l + `${CSI}K`).join('\r\n') + `${CSI}J`);
    };
    const refresh = async () => {
      const now = Date.now();
      try {
        const st = (await request(socket, { cmd: 'status' }, 3000)).status as Status;
        if (done) return;
        draw(frame(st, prev, now, out.columns || 80));
        prev = sampleOf(st, now);
      } catch (err) {
        if (done) return;
        draw([`arbiter top: ${errorMessage(err)}`, '(trying again every second)', '', 'q quits'].map((l) => l.slice(0, out.columns || 80)));
        prev = null;
      }
      if (!done) timer = setTimeout(() => void refresh(), REFRESH_MS);
    };
    const restore = () => {
      if (stdin.isTTY) stdin.setRawMode(false);
      out.write(LEAVE);
    };
    const quit = (code: number) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      restore();
      process.off('exit', restore);
      stdin.pause();
      resolve(code);
    };
    out.write(ENTER);
    // Whatever ends this process gives the terminal back.
    process.once('exit', restore);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, () => quit(0));
    out.on('resize', () => draw(last.length ? last : []));
    if (stdin.isTTY) stdin.setRawMode(true);
    stdin.setEncoding('utf8');
    stdin.on('data', (key: string) => {
      if (key === 'q' || key === 'Q' || key === '\x03' || key === '\x04') quit(0);
    });
    stdin.resume();
    void refresh();
  });
}
