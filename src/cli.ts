/**
 * `arbiter`: the operator commands, or the server. A command is found by its first word;
 * anything else is the server's command line (src/boot.ts). Commands are loaded on demand:
 * `arbiter status` does not load the master.
 *
 * Exit codes: 0 clean stop, 1 runtime failure (including a bind that fails), 2 usage or
 * config error, 3 the app cannot be loaded or a worker failed to boot.
 */
type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  status: async () => (await import('./commands/control.js')).controlCommand,
  scale: async () => (await import('./commands/control.js')).controlCommand,
  reload: async () => (await import('./commands/control.js')).controlCommand,
  stop: async () => (await import('./commands/control.js')).controlCommand,
  upgrade: async () => (await import('./commands/signals.js')).command,
  enqueue: async () => (await import('./commands/tasks.js')).taskCommand,
  result: async () => (await import('./commands/tasks.js')).taskCommand,
  dlq: async () => (await import('./commands/tasks.js')).taskCommand,
};

export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  const command = argv[0] !== undefined && Object.hasOwn(COMMANDS, argv[0]) ? COMMANDS[argv[0]] : undefined;
  if (command) return (await command())(argv);
  const { serve } = await import('./boot.js');
  return serve(argv);
}
