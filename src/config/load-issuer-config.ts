/**
 * Reads `hopguard issuer --config FILE`, with the same conventions as the authz file:
 * snake_case YAML, durations as "5m", every problem reported with its key path.
 */

import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { z } from 'zod';
import { auditSchema } from '../audit/audit-config.js';
import {
  duration, expected, flag, isRecord, loadConfigFile, nonEmptyString, oneOf, onLists, onObjects, parseAdmin, parseConfig,
  parsedString, parseHostPort, parseStore, parseUrl, positiveDuration, redisSchema, redisTlsNeedsRediss, uniqueBy,
} from '../schema/config-schema.js';
import { telemetrySchema } from '../telemetry/telemetry-config.js';
import {
  GRANTS, SIGNING_ALGORITHMS, SUBJECT_TOKEN_TYPES, type Cidr, type ClientAuthConfig, type Grant, type IssuerClient, type IssuerConfig, type SigningAlgorithm, type SubjectIssuer, type SubjectTokenType,
} from './issuer-config.js';
import { checkKeySource, jwksSchema, trustedIssuerConfig, trustedIssuerFields } from './load-authz-config.js';
import { signalsConfig, signalsSchema } from './signals-schema.js';

export function loadIssuerConfigFile(path: string): IssuerConfig {
  return loadConfigFile(path, parseIssuerConfig);
}

/** `baseDir` anchors relative file paths (tls, keys); `source` names the file in errors. */
export function parseIssuerConfig(yamlText: string, opts: { baseDir: string; source?: string }): IssuerConfig {
  return parseConfig(yamlText, issuerConfigSchema(opts.baseDir), opts.source);
}

/** The `iss` claim compares by exact string: one canonical https form, nothing a parser could rewrite. */
function parseIssuerUrl(text: string): string {
  const url = parseUrl(text, 'expected an https URL such as https://sts.example.com');
  if (url.protocol !== 'https:') throw new Error('must be an https URL (RFC 8414 §2)');
  if (url.search !== '' || url.hash !== '' || text.includes('?') || text.includes('#')) throw new Error('must have no query or fragment (RFC 8414 §2)');
  if (url.username !== '' || url.password !== '') throw new Error('must not contain credentials');
  return text;
}

/** `127.0.0.6/32`, `::1/128`; a bare address is the one host. */
function parseCidr(text: string): Cidr {
  const [address = '', prefixText, extra] = text.split('/');
  const version = isIP(address);
  const max = version === 6 ? 128 : 32;
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (version === 0 || extra !== undefined || !(prefix >= 0 && prefix <= max)) throw new Error('expected an address block such as 127.0.0.6/32');
  return { address, prefix, family: version === 6 ? 'ipv6' : 'ipv4' };
}

/** Istio's inbound proxy connects to the application from 127.0.0.6; a plain Envoy beside it, from 127.0.0.1. */
const DEFAULT_TRUSTED_PROXIES = ['127.0.0.6/32', '127.0.0.1/32'];

/**
 * What each client_auth needs: tls the issuer's own TLS and the client CA; xfcc neither
 * (its proxy verifies certificates), and trusted_proxies only there.
 */
function clientAuthFits(raw: Record<string, unknown>, ctx: z.RefinementCtx) {
  const tls = isRecord(raw.tls) ? raw.tls : undefined;
  if (raw.client_auth === 'xfcc') {
    if (tls?.client_ca !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['tls', 'client_ca'], message: 'is not used with client_auth: xfcc: the issuer\'s proxy verifies client certificates' });
    }
    return;
  }
  if (raw.trusted_proxies !== undefined) ctx.addIssue({ code: 'custom', path: ['trusted_proxies'], message: 'applies only with client_auth: xfcc' });
  if (raw.tls === undefined) ctx.addIssue({ code: 'custom', path: ['tls'], message: 'is required with client_auth: tls (cert, key and client_ca)' });
  else if (tls !== undefined && tls.client_ca === undefined) ctx.addIssue({ code: 'custom', path: ['tls', 'client_ca'], message: 'is required with client_auth: tls' });
}

const noSpaces = z.string(expected('a string')).regex(/^\S+$/, 'expected a non-empty string without spaces');

const clientSchema = z
  .strictObject(
    {
      id: noSpaces,
      grants: z.array(oneOf<Grant>(GRANTS, 'a grant'), expected('a list of grants')).min(1, 'expected at least one grant'),
      audiences: z.array(noSpaces, expected('a list of audiences')).default([]),
      message_audiences: z.array(noSpaces, expected('a list of audiences')).default([]),
      scopes: z.array(noSpaces, expected('a list of scopes')).default([]),
      admin: flag,
      dpop: flag,
    },
    expected('a mapping with id and grants'),
  )
  .transform(({ message_audiences: messageAudiences, ...rest }): IssuerClient => ({ ...rest, messageAudiences }));

/** Verified as the authz `issuers` are (key source, asymmetric algorithms, max_ttl), plus what the edge needs. */
function subjectIssuerSchema(baseDir: string) {
  return z
    .strictObject(
      {
        ...trustedIssuerFields,
        audience: noSpaces,
        clients: z.array(noSpaces, expected('a list of client ids')).default([]),
        typ: z.array(oneOf<SubjectTokenType>(SUBJECT_TOKEN_TYPES, 'a token type'), expected('a list of token types such as [at+jwt]'))
          .min(1, 'expected at least one token type, such as [at+jwt]').default(['at+jwt']),
      },
      expected('a mapping with issuer, jwks_file or jwks_uri, algorithms and audience'),
    )
    .superRefine(checkKeySource, onObjects)
    .transform((raw): SubjectIssuer => ({ ...trustedIssuerConfig(raw, baseDir), audience: raw.audience, clients: raw.clients, typ: raw.typ }));
}

/**
 * A subject issuer is not this issuer (its tokens are verified another way), and each client
 * it names is registered and may exchange: a typo must not silently leave the edge without it.
 */
function subjectIssuersFitClients(raw: Record<string, unknown>, ctx: z.RefinementCtx) {
  const subjectIssuers = Array.isArray(raw.subject_issuers) ? raw.subject_issuers : [];
  const clients = Array.isArray(raw.clients) ? raw.clients.filter(isRecord) : [];
  subjectIssuers.forEach((subjectIssuer: unknown, index) => {
    if (!isRecord(subjectIssuer)) return;
    if (subjectIssuer.issuer === raw.issuer) {
      ctx.addIssue({ code: 'custom', path: ['subject_issuers', index, 'issuer'], message: 'is this issuer itself: its own tokens are exchanged without a subject issuer' });
    }
    const named = Array.isArray(subjectIssuer.clients) ? subjectIssuer.clients : [];
    named.forEach((id: unknown, at) => {
      const client = clients.find((c) => c.id === id);
      const problem = !client ? 'is not one of the clients'
        : !(Array.isArray(client.grants) && client.grants.includes('token_exchange')) ? 'is a client without the token_exchange grant' : undefined;
      if (problem) ctx.addIssue({ code: 'custom', path: ['subject_issuers', index, 'clients', at], message: problem });
    });
  });
}

function issuerConfigSchema(baseDir: string) {
  const file = nonEmptyString.transform((f) => resolve(baseDir, f));
  return z
    .strictObject(
      {
        listen: parsedString('host:port such as 0.0.0.0:8443', (t) => parseHostPort(t, 'host:port such as 0.0.0.0:8443')),
        admin: parsedString('host:port such as 127.0.0.1:9443, or "off"', parseAdmin).prefault('127.0.0.1:9443'),
        issuer: parsedString('an https URL', parseIssuerUrl),
        tls: z.strictObject({ cert: file, key: file, client_ca: file.optional() }, expected('a mapping with cert, key and client_ca')).optional(),
        client_auth: z.enum(['tls', 'xfcc'], expected('tls or xfcc')).default('tls'),
        trusted_proxies: z.array(parsedString('an address block such as 127.0.0.6/32', parseCidr), expected('a list of address blocks such as [127.0.0.6/32]'))
          .min(1, 'expected at least one address block').optional(),
        keys: z.strictObject(
          {
            dir: file,
            algorithm: oneOf<SigningAlgorithm>(SIGNING_ALGORITHMS, 'an algorithm').prefault('ES256'),
            publish_ahead: duration.prefault('10m'),
            rotate_every: positiveDuration.optional(),
          },
          expected('a mapping with dir'),
        ),
        token_ttl: positiveDuration.refine((ms) => ms <= 3600_000, 'must be at most 1h: access tokens here are short-lived').prefault('5m'),
        // A message may wait in a queue far longer than a request lives, but not for days.
        message_ttl: positiveDuration.refine((ms) => ms <= 86_400_000, 'must be at most 24h').prefault('1h'),
        refresh_ttl: positiveDuration.prefault('24h'),
        max_delegation_depth: z.int(expected('a whole number')).min(0).max(10).default(3),
        clock_skew: duration.refine((ms) => ms <= 300_000, 'must be at most 5m').prefault('30s'),
        store: parsedString('"memory" or a redis URL', parseStore).prefault('memory'),
        redis: redisSchema(baseDir).prefault({}),
        rate_limit: z.strictObject(
          {
            per_second: z.number(expected('a number')).positive('must be greater than 0').default(20),
            burst: z.int(expected('a whole number')).min(1).default(40),
          },
          expected('a mapping'),
        ).prefault({}),
        telemetry: telemetrySchema.prefault({}),
        audit: auditSchema(baseDir).prefault({}),
        clients: z.array(clientSchema, expected('a list of clients')).min(1, 'expected at least one client').superRefine(uniqueBy('clients', 'id'), onLists),
        subject_issuers: z.array(subjectIssuerSchema(baseDir), expected('a list of subject issuers'))
          .superRefine(uniqueBy('subject_issuers', 'issuer'), onLists).default([]),
        jwks: jwksSchema.prefault({}),
        signals: signalsSchema(baseDir).prefault({}),
      },
      expected('a mapping with listen, issuer, tls (or client_auth: xfcc), keys and clients'),
    )
    .superRefine(redisTlsNeedsRediss, onObjects)
    .superRefine(subjectIssuersFitClients, onObjects)
    .superRefine(clientAuthFits, onObjects)
    .transform((raw): IssuerConfig => ({
      listen: raw.listen,
      admin: raw.admin,
      issuer: raw.issuer,
      ...(raw.tls !== undefined && { tls: { certFile: raw.tls.cert, keyFile: raw.tls.key } }),
      clientAuth: raw.client_auth === 'xfcc'
        ? { mode: 'xfcc', trustedProxies: raw.trusted_proxies ?? DEFAULT_TRUSTED_PROXIES.map(parseCidr) }
        : { mode: 'tls', clientCaFile: raw.tls!.client_ca! } satisfies ClientAuthConfig,
      keys: {
        dir: raw.keys.dir,
        algorithm: raw.keys.algorithm,
        publishAheadMs: raw.keys.publish_ahead,
        ...(raw.keys.rotate_every !== undefined && { rotateEveryMs: raw.keys.rotate_every }),
      },
      tokenTtlMs: raw.token_ttl,
      messageTtlMs: raw.message_ttl,
      refreshTtlMs: raw.refresh_ttl,
      maxDelegationDepth: raw.max_delegation_depth,
      clockSkewMs: raw.clock_skew,
      store: raw.store,
      redis: raw.redis,
      rateLimit: { perSecond: raw.rate_limit.per_second, burst: raw.rate_limit.burst },
      clients: raw.clients,
      subjectIssuers: raw.subject_issuers,
      jwks: raw.jwks,
      telemetry: raw.telemetry,
      audit: raw.audit,
      signals: signalsConfig(raw.signals, raw.issuer),
    }));
}
