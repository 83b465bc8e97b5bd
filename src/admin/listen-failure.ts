import { existsSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * A listener that could not bind, as an error naming its config key and what to do about it:
 * node says only `listen EADDRINUSE …`, grpc-js "No address added out of total 1 resolved".
 * A runtime failure (the CLI exits 1): the config is valid, the host is not ready for it.
 */
export function listenFailure(key: string, address: string, err: unknown): Error {
  const message = err instanceof Error ? err.message : String(err);
  // grpc-js keeps only node's message, inside its own: "… errors: [listen EADDRINUSE: …]".
  const code = (err as NodeJS.ErrnoException).code ?? /\blisten (E[A-Z]+)\b/.exec(message)?.[1];
  const socket = address.startsWith('unix:') ? address.slice('unix:'.length) : undefined;
  return new Error(`${key}: ${explain(code, address, socket) ?? `cannot listen on ${address}: ${message}`}`, { cause: err });
}

function explain(code: string | undefined, address: string, socket: string | undefined): string | undefined {
  if (socket !== undefined && (code === 'EACCES' || code === 'ENOENT') && !existsSync(dirname(socket))) {
    return `cannot create the socket ${socket}: the directory ${dirname(socket)} does not exist; create it (or mount the volume) or choose another path`;
  }
  switch (code) {
    case 'EADDRINUSE':
      return `${address} is already in use (EADDRINUSE): stop what listens there, or choose another ${socket === undefined ? 'port' : 'socket path'}`;
    case 'EACCES':
      return socket !== undefined
        ? `cannot create the socket ${socket} (EACCES): its directory must be writable by the user hopguard runs as`
        : `not allowed to listen on ${address} (EACCES): ports below 1024 need CAP_NET_BIND_SERVICE; choose a port from 1024 up`;
    case 'EADDRNOTAVAIL':
      return `${address} is not an address of this host (EADDRNOTAVAIL): use one of its addresses, 127.0.0.1 or 0.0.0.0`;
    default:
      return undefined;
  }
}
