/**
 * The `messages:` section of the authz config (design "Messages: hops through a queue"): the
 * local seal and check API, what this workload publishes and what it consumes, and the checks
 * that tie it to the rest of the file.
 */

import { isIPv4 } from 'node:net';
import { z } from 'zod';
import {
  audience, expected, isRecord, oneOf, onLists, parsedString, parseHostPort, positiveDuration, scope, uniqueBy,
} from '../schema/config-schema.js';
import { WITHOUT_HANDLE, type WithoutHandle } from '../vocabulary/egress-config.js';
import { MESSAGE_DESTINATION } from '../vocabulary/message-token.js';
import type { MessageIncoming, MessageOutgoing, MessagesConfig } from '../vocabulary/messages-config.js';
import { isAddress, sameAddress } from './egress-schema.js';

/** Whoever reaches the API can seal messages as this workload: only processes of the pod (loopback). */
function parseLocalListen(text: string): { host: string; port: number } {
  const { host, port } = parseHostPort(text, 'a loopback host:port such as 127.0.0.1:9195');
  if (!(host === '::1' || host === 'localhost' || (isIPv4(host) && host.startsWith('127.')))) {
    throw new Error('must be a loopback address (127.0.0.1:PORT or [::1]:PORT): whoever reaches it can seal messages as this workload');
  }
  return { host, port };
}

const localListen = parsedString('a loopback host:port such as 127.0.0.1:9195', parseLocalListen);

function parseDestination(text: string): string {
  if (!MESSAGE_DESTINATION.test(text)) throw new Error('expected a queue, subject or topic name: 1 to 255 visible ASCII characters, no spaces');
  return text;
}

const destination = parsedString('a destination name such as orders.fulfilment', parseDestination);

const outgoingSchema = z
  .strictObject(
    {
      destination,
      audience,
      scopes: z.array(scope, expected('a list of strings')).default([]),
      max_delay: positiveDuration.refine((ms) => ms >= 1000, 'must be at least 1s').prefault('15m'),
      without_handle: oneOf<WithoutHandle>(WITHOUT_HANDLE, 'deny or client_credentials').prefault('deny'),
    },
    expected('a mapping with destination and audience'),
  )
  .transform((raw): MessageOutgoing => ({
    destination: raw.destination,
    audience: raw.audience,
    scopes: raw.scopes,
    maxDelayMs: raw.max_delay,
    withoutHandle: raw.without_handle,
  }));

const incomingSchema = z
  .strictObject(
    {
      destination,
      scopes: z.array(scope, expected('a list of strings')).default([]),
    },
    expected('a mapping with destination'),
  );

export const messagesSchema = z
  .strictObject(
    {
      listen: localListen,
      grpc_listen: localListen.optional(),
      max_ttl: positiveDuration.refine((ms) => ms <= 86_400_000, 'must be at most 24h').prefault('1h'),
      outgoing: z.array(outgoingSchema, expected('a list of destinations')).default([]).superRefine(uniqueBy('outgoing', 'destination'), onLists),
      incoming: z.array(incomingSchema, expected('a list of destinations')).default([]).superRefine(uniqueBy('incoming', 'destination'), onLists),
    },
    expected('a mapping with listen, and outgoing or incoming'),
  )
  .transform((raw): MessagesConfig => ({
    listen: raw.listen,
    ...(raw.grpc_listen && { grpcListen: raw.grpc_listen }),
    maxTtlMs: raw.max_ttl,
    outgoing: raw.outgoing,
    incoming: raw.incoming.map((entry): MessageIncoming => ({ destination: entry.destination, scopes: entry.scopes })),
  }));

/**
 * Across sections, on the parsed values: sealing needs an issuer client, the messages
 * listeners are their own, and (for now) one process serves them.
 */
export function messagesFitTheRest(raw: Record<string, unknown>, ctx: z.RefinementCtx) {
  if (!isRecord(raw.messages)) return;
  const { messages } = raw;
  if (Array.isArray(messages.outgoing) && messages.outgoing.length > 0 && raw.issuer_client === undefined) {
    ctx.addIssue({ code: 'custom', path: ['issuer_client'], message: 'is required with messages.outgoing: message tokens are minted by the issuer' });
  }
  // Each worker of `store: memory` would keep its own marks, and accept a message once per worker.
  if (typeof raw.workers === 'number' && raw.workers > 1 && raw.store === 'memory' && Array.isArray(messages.incoming) && messages.incoming.length > 0) {
    ctx.addIssue({ code: 'custom', path: ['workers'], message: 'more than 1 with messages.incoming needs a redis store: with store: memory each worker keeps its own record of accepted message tokens, so each would be accepted once per worker' });
  }
  const others: [string, unknown][] = [
    ['listen', raw.listen],
    ['admin', isRecord(raw.admin) ? { kind: 'tcp', host: String(raw.admin.host), port: Number(raw.admin.port) } : undefined],
    ['egress.listen', isRecord(raw.egress) ? raw.egress.listen : undefined],
  ];
  const tcp = (address: unknown) => (isRecord(address) ? { kind: 'tcp', ...address } : undefined);
  const own: [string, unknown][] = [['listen', tcp(messages.listen)], ['grpc_listen', tcp(messages.grpcListen)]];
  own.forEach(([key, address], index) => {
    if (!isAddress(address)) return;
    for (const [name, other] of [...others, ...own.slice(0, index).map(([k, a]): [string, unknown] => [`messages.${k}`, a])]) {
      if (isAddress(other) && sameAddress(address, other)) ctx.addIssue({ code: 'custom', path: ['messages', key], message: `must differ from ${name}` });
    }
  });
}
