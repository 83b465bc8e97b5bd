/**
 * The `issuer_client:` and `egress:` sections of the authz config (design "Egress: the
 * application never holds a token"), and the checks that tie them to the rest of the file:
 * egress needs an issuer client, and egress.listen is never the inbound or admin address.
 */

import { resolve } from 'node:path';
import { z } from 'zod';
import {
  audience, expected, flag, isHostName, isRecord, nonEmptyString, oneOf, onLists, parsedString, parseListen, parseUrl,
  onObjects, positiveDuration, scope, uniqueBy,
} from '../schema/config-schema.js';
import {
  OTHER_HOSTS, WITHOUT_HANDLE, type EgressConfig, type EgressDestination, type OtherHosts, type WithoutHandle,
} from '../vocabulary/egress-config.js';
import { IDENTITY_HEADERS } from '../vocabulary/identity-headers.js';
import type { IssuerClientConfig, IssuerTransport } from '../vocabulary/issuer-client-config.js';
import type { ListenAddress } from '../vocabulary/listen-address.js';

/** Tokens are bound to this workload's certificate, presented over mTLS: https, or http to the pod's mesh proxy (checked with transport). */
function parseTokenEndpoint(text: string): string {
  const url = parseUrl(text, 'expected an https URL such as https://sts.example:8443/token');
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('expected an https URL: the issuer client authenticates with its certificate over TLS');
  if (url.username !== '' || url.password !== '') throw new Error('must not contain credentials (user:password@)');
  if (url.hash !== '') throw new Error('must not contain a fragment (#…)');
  return url.href;
}

/** Headers whose meaning the handle would take over, or that hopguard sets itself. */
const RESERVED_HEADERS = new Set(['authorization', 'dpop', 'host', 'cookie', 'baggage', 'traceparent', 'tracestate', ...Object.values(IDENTITY_HEADERS)]);

function parseHandleHeader(text: string): string {
  if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(text)) {
    throw new Error('expected a lower-case header name of letters, digits and "-", such as x-hopguard-handle');
  }
  if (RESERVED_HEADERS.has(text)) throw new Error(`must not be ${text}: that header means something else`);
  return text;
}

/** An exact host, or `*.suffix`; matched case-insensitively, so kept lower-case. */
function parseDestinationHost(text: string): string {
  const host = text.toLowerCase();
  const name = host.startsWith('*.') ? host.slice(2) : host;
  if (!isHostName(name)) {
    throw new Error('expected a host name such as payments.shop.svc.cluster.local, or *.suffix such as *.shop.svc.cluster.local (no port, no scheme)');
  }
  return host;
}

/**
 * tls: https and the issuer's CA. mesh: http to the pod's own mesh proxy (which does the mTLS,
 * with the certificate in cert_file) and no CA: a plain-HTTP endpoint is never used by accident.
 */
function transportFits(raw: { token_endpoint: string; transport: IssuerTransport; ca_file?: string | undefined }, ctx: z.RefinementCtx) {
  if (typeof raw.token_endpoint !== 'string') return;
  const http = raw.token_endpoint.startsWith('http:');
  if (raw.transport === 'tls') {
    if (http) ctx.addIssue({ code: 'custom', path: ['token_endpoint'], message: 'expected an https URL: the issuer client authenticates with its certificate over TLS (http only with transport: mesh)' });
    if (raw.ca_file === undefined) ctx.addIssue({ code: 'custom', path: ['ca_file'], message: 'is required' });
    return;
  }
  if (!http) ctx.addIssue({ code: 'custom', path: ['token_endpoint'], message: 'expected an http URL with transport: mesh: the pod\'s mesh proxy does the mTLS' });
  if (raw.ca_file !== undefined) ctx.addIssue({ code: 'custom', path: ['ca_file'], message: 'is not used with transport: mesh: the mesh proxy verifies the issuer' });
}

export function issuerClientSchema(baseDir: string) {
  const file = nonEmptyString.transform((path) => resolve(baseDir, path));
  return z
    .strictObject(
      {
        token_endpoint: parsedString('an https URL', parseTokenEndpoint),
        transport: oneOf<IssuerTransport>(['tls', 'mesh'], 'tls or mesh').prefault('tls'),
        ca_file: file.optional(),
        cert_file: file,
        key_file: file,
        timeout: positiveDuration.prefault('2s'),
      },
      expected('a mapping with token_endpoint, ca_file, cert_file and key_file'),
    )
    .superRefine(transportFits, onObjects)
    .transform((raw): IssuerClientConfig => ({
      tokenEndpoint: raw.token_endpoint,
      transport: raw.transport,
      ...(raw.ca_file !== undefined && { caFile: raw.ca_file }),
      certFile: raw.cert_file,
      keyFile: raw.key_file,
      timeoutMs: raw.timeout,
    }));
}

const destinationSchema = z
  .strictObject(
    {
      host: parsedString('a host name or *.suffix', parseDestinationHost),
      audience,
      scopes: z.array(scope, expected('a list of strings')).default([]),
      per_request: flag,
      without_handle: oneOf<WithoutHandle>(WITHOUT_HANDLE, 'deny or client_credentials').prefault('deny'),
    },
    expected('a mapping with host and audience'),
  )
  .transform((raw): EgressDestination => ({
    host: raw.host,
    audience: raw.audience,
    scopes: raw.scopes,
    perRequest: raw.per_request,
    withoutHandle: raw.without_handle,
  }));

export const egressSchema = z
  .strictObject(
    {
      listen: parsedString('host:port such as 127.0.0.1:9194, or unix:/path/to.sock', parseListen),
      handle_header: parsedString('a header name', parseHandleHeader).prefault('x-hopguard-handle'),
      handle_baggage: flag,
      other_hosts: oneOf<OtherHosts>(OTHER_HOSTS, 'passthrough or deny').prefault('passthrough'),
      destinations: z
        .array(destinationSchema, expected('a list of destinations'))
        .default([])
        .superRefine(uniqueBy('destinations', 'host'), onLists),
    },
    expected('a mapping with listen and destinations'),
  )
  .transform((raw): EgressConfig => ({
    listen: raw.listen,
    handleHeader: raw.handle_header,
    handleBaggage: raw.handle_baggage,
    otherHosts: raw.other_hosts,
    destinations: raw.destinations,
  }));

/**
 * Across sections, on the parsed values: egress exchanges tokens through issuer_client, no
 * route hands the application the token, and egress.listen is its own, so an inbound check
 * can never reach the outbound one.
 */
export function egressFitsTheRest(raw: Record<string, unknown>, ctx: z.RefinementCtx) {
  if (!isRecord(raw.egress)) return;
  if (raw.issuer_client === undefined) {
    ctx.addIssue({ code: 'custom', path: ['issuer_client'], message: 'is required with egress: outbound tokens are exchanged at the issuer' });
  }
  const routes = Array.isArray(raw.routes) ? raw.routes : [];
  routes.forEach((route, index) => {
    if (isRecord(route) && (route.forwardToken === true || route.forward_token === true)) {
      ctx.addIssue({ code: 'custom', path: ['routes', index, 'forward_token'], message: 'not allowed with egress: the application gets a handle, never the token' });
    }
  });
  const egress = raw.egress.listen;
  if (!isAddress(egress)) return;
  if (isAddress(raw.listen) && sameAddress(egress, raw.listen)) {
    ctx.addIssue({ code: 'custom', path: ['egress', 'listen'], message: 'must differ from listen: an inbound check must never obtain a token' });
  }
  if (isRecord(raw.admin) && sameAddress(egress, { kind: 'tcp', host: String(raw.admin.host), port: Number(raw.admin.port) })) {
    ctx.addIssue({ code: 'custom', path: ['egress', 'listen'], message: 'must differ from admin' });
  }
}

export function isAddress(value: unknown): value is ListenAddress {
  return isRecord(value) && (value.kind === 'tcp' || value.kind === 'unix');
}

/** Port 0 picks a free port, so two port-0 addresses never collide. */
export function sameAddress(a: ListenAddress, b: ListenAddress): boolean {
  if (a.kind === 'unix' || b.kind === 'unix') return a.kind === b.kind && a.kind === 'unix' && b.kind === 'unix' && a.path === b.path;
  return a.port !== 0 && a.port === b.port && (a.host === b.host || [a.host, b.host].some(isWildcard));
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}
