import type { EgressDestination } from '../vocabulary/egress-config.js';

/**
 * The destination for an outbound request's host (`:authority`), port ignored, first match
 * wins: an exact host, or `*.suffix` for any host under suffix (not suffix itself).
 */
export function matchDestination(destinations: readonly EgressDestination[], authority: string): EgressDestination | undefined {
  const host = hostOf(authority);
  return destinations.find((destination) => (destination.host.startsWith('*.')
    ? host.endsWith(destination.host.slice(1))
    : host === destination.host));
}

/** `Payments.svc:8443` → `payments.svc`; `[::1]:80` → `::1`; a trailing root dot goes too. */
export function hostOf(authority: string): string {
  let host = authority.toLowerCase();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(1, end);
  }
  host = host.replace(/:\d*$/, '');
  return host.endsWith('.') ? host.slice(0, -1) : host;
}
