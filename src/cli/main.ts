import { simCommand } from './sim-command.ts';
import { serveCommand } from './serve-command.ts';
import { UsageError } from './args.ts';
import { doctorCommand } from '../doctor/command.ts';
import { benchCommand } from './bench-command.ts';
import { keysCommand } from './keys-command.ts';
import { usageCommand } from './usage-command.ts';

const HELP = `Usage: sluice <command> [options]

Commands:
  serve     run the gateway (on the built-in simulator when no upstream is configured)
  sim       run the simulator alone (an engine stand-in; no model)
  doctor    diagnose a streaming endpoint and name the hop that breaks it
  keys      client keys with limits in the state store: create, list, update, revoke
  usage     the usage ledger: requests, tokens and outcomes per key, model or day
  bench     benchmark Sluice against direct and nginx, side by side (see docs/performance.md)
  help      show this help; 'sluice <command> --help' for a command's options`;

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  serve: serveCommand,
  sim: simCommand,
  doctor: doctorCommand,
  bench: benchCommand,
  keys: keysCommand,
  usage: usageCommand,
};

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    console.log(HELP);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`sluice: unknown command '${name}'\n\n${HELP}`);
    return 2;
  }
  try {
    return await command(rest);
  } catch (err) {
    if (err instanceof UsageError || (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))) {
      console.error(`sluice ${name}: ${err.message}\nRun 'sluice ${name} --help' for the options.`);
      return 2;
    }
    if (err instanceof Error && 'code' in err && err.code === 'EADDRINUSE') {
      console.error(`sluice ${name}: ${err.message} (choose another --port)`);
      return 1;
    }
    throw err;
  }
}

