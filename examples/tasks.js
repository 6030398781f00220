/**
 * Task handlers for `-k task` workers.
 *
 *   arbiter examples/tasks.js:handlers -k task -w 2 --concurrency 16        # embedded spool
 *   arbiter examples/tasks.js:handlers -k task --broker redis://127.0.0.1:6379/0 --queue emails
 *
 *   arbiter enqueue sendEmail '{"to":"ada@example.com","subject":"Hello"}'
 *   arbiter enqueue resize '{"image":"cat.png","width":320}' --delay 5000 --max-retries 5
 *   arbiter dlq list          # what failed for good, with its last error
 *
 * From code: `import { enqueue } from 'arbiterd'; await enqueue('sendEmail', { to, subject });`
 *
 * A handler resolves when the task is done (the task is then acknowledged) and throws when it
 * failed (it is retried with backoff, then dead-lettered). Tasks are delivered at least once:
 * a handler may run again for a task it already did, so make its effect idempotent — here,
 * the outbox file and the thumbnail are named after the task, and rewriting them is harmless.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const OUT = process.env.TASKS_OUT ?? path.join(process.cwd(), '.arbiter-example-out');

/** @type {import('arbiterd').TaskHandlers} */
export const handlers = {
  /** "Sends" an email: writes it to an outbox directory instead of talking to an SMTP server. */
  async sendEmail(payload, ctx) {
    const { to, subject = '(no subject)', body = '' } = payload ?? {};
    if (typeof to !== 'string' || !to.includes('@')) {
      // Retrying cannot fix a bad address; it still ends in the DLQ after maxRetries.
      throw new Error(`sendEmail: invalid recipient ${JSON.stringify(to)}`);
    }
    // A slow mail server: honour the abort signal (taskTimeout) instead of hanging on.
    await sleep(20, undefined, { signal: ctx.signal });
    const dir = path.join(OUT, 'outbox');
    await mkdir(dir, { recursive: true });
    const message = `To: ${to}\nSubject: ${subject}\nX-Task: ${ctx.id} (attempt ${ctx.attempt})\n\n${body}\n`;
    await writeFile(path.join(dir, `${ctx.id}.eml`), message);
    ctx.log.info({ to }, 'email queued in the outbox');
  },

  /**
   * "Resizes" an image: CPU work in small slices, so the event loop (heartbeats, the other
   * tasks of this worker) keeps running; checks the signal between slices.
   */
  async resize(payload, ctx) {
    const { image, width = 256 } = payload ?? {};
    if (typeof image !== 'string') throw new Error('resize: payload.image must be a file name');
    const hash = createHash('sha256');
    for (let row = 0; row < width; row++) {
      ctx.signal.throwIfAborted();
      hash.update(`${image}:${row}`);
      if (row % 64 === 63) await new Promise((resolve) => setImmediate(resolve));
    }
    const dir = path.join(OUT, 'thumbs');
    await mkdir(dir, { recursive: true });
    const name = `${path.basename(image, path.extname(image))}-${width}w.txt`;
    await writeFile(path.join(dir, name), `${hash.digest('hex')}\n`);
    return name;
  },

  /** No work at all: what the bench measures. */
  noop() {},
};
