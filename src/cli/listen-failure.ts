import type { Config } from '../config/schema.ts';

/** A start-up failure of the listening socket, as one line and an exit code. */
export interface ListenFailure {
  message: string;
  /** 2 when the configured value cannot work anywhere (a host that is not this machine's), 1 when this machine
   * refuses it now (a port in use, a privileged port). */
  exitCode: 1 | 2;
}

/**
 * The line `sluice serve` prints when the port cannot be opened, naming the address and what to change; undefined for
 * an error that is not one of these (it is a bug, and keeps its stack).
 */
export function listenFailure(err: unknown, config: Config): ListenFailure | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  const where = `${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`;
  switch (code) {
    case 'EADDRINUSE':
      return { message: `cannot listen on ${where}: the port is already in use (choose another --port, or stop what holds it)`, exitCode: 1 };
    case 'EACCES':
    case 'EPERM':
      return { message: `cannot listen on ${where}: permission denied (ports below 1024 need privileges; choose a port from 1024)`, exitCode: 1 };
    case 'EADDRNOTAVAIL':
      return { message: `cannot listen on ${where}: ${config.host} is not an address of this machine (check --host)`, exitCode: 2 };
    case 'ENOTFOUND':
      return { message: `cannot listen on ${where}: the host name ${config.host} does not resolve (check --host)`, exitCode: 2 };
    case 'EAI_AGAIN':
      return { message: `cannot listen on ${where}: the host name ${config.host} could not be resolved now (EAI_AGAIN: the resolver failed; try again, or give an address)`, exitCode: 1 };
    default:
      return undefined;
  }
}
