import { simCommand } from './sim-command.ts';
import { serveCommand } from './serve-command.ts';
import { UsageError } from './args.ts';
import { doctorCommand } from '../doctor/command.ts';
import { benchCommand } from './bench-command.ts';
import { VERSION } from '../gateway.ts';
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
  version   print the version (also 'sluice --version' or 'sluice -v')
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
  if (name === 'version' || name === '--version' || name === '-v') {
    // The Node.js version too: npm brings its own (node_modules/.bin), which may not be the one on the PATH.
    console.log(`sluice ${VERSION} (Node.js ${process.version})`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`sluice: unknown command '${name}' (run 'sluice help' for the commands)`);
    return 2;
  }
  try {
    return await command(rest);
  } catch (err) {
    // Mistakes in what the user typed: one line, the problem first, then where to look (exit 2).
    if (err instanceof UsageError || (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))) {
      console.error(`sluice ${name}: ${err.message} (see 'sluice ${name} --help')`);
      return 2;
    }
    // Anything else is unforeseen: still one line, since a stack trace reads as a crash to the person starting the
    // gateway; the stack is there for a bug report at log level debug.
    const debug = process.env['SLUICE_LOG_LEVEL'] === 'debug' || rest.some((a, i) => a === '--log-level=debug' || (a === '--log-level' && rest[i + 1] === 'debug'));
    const detail = err instanceof Error ? `${err.message}${'code' in err ? ` (${String(err.code)})` : ''}` : String(err);
    console.error(`sluice ${name}: unexpected error: ${detail}${debug ? `\n${err instanceof Error ? err.stack : ''}` : ' (run again with SLUICE_LOG_LEVEL=debug for the stack, and please report it)'}`);
    return 1;
  }
}
