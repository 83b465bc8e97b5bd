/**
 * Reads `hopguard issuer --config FILE`, with the same conventions as the authz file:
 * snake_case YAML, durations as "5m", every problem reported with its key path.
 */

import { resolve } from 'node:path';
import { z } from 'zod';
import { auditSchema } from '../audit/audit-config.js';
import {
  duration, expected, flag, isRecord, loadConfigFile, nonEmptyString, oneOf, onLists, onObjects, parseAdmin, parseConfig,
  parsedString, parseHostPort, parseStore, parseUrl, positiveDuration, redisSchema, redisTlsNeedsRediss, uniqueBy,
} from '../schema/config-schema.js';
import { telemetrySchema } from '../telemetry/telemetry-config.js';
import {
  GRANTS, SIGNING_ALGORITHMS, SUBJECT_TOKEN_TYPES, type Grant, type IssuerConfig, type SigningAlgorithm, type SubjectIssuer, type SubjectTokenType,
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

const noSpaces = z.string(expected('a string')).regex(/^\S+$/, 'expected a non-empty string without spaces');

const clientSchema = z
  .strictObject(
    {
      id: noSpaces,
      grants: z.array(oneOf<Grant>(GRANTS, 'a grant'), expected('a list of grants')).min(1, 'expected at least one grant'),
      audiences: z.array(noSpaces, expected('a list of audiences')).default([]),
      scopes: z.array(noSpaces, expected('a list of scopes')).default([]),
      admin: flag,
      dpop: flag,
    },
    expected('a mapping with id and grants'),
  );

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
        tls: z.strictObject({ cert: file, key: file, client_ca: file }, expected('a mapping with cert, key and client_ca')),
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
      expected('a mapping with listen, issuer, tls, keys and clients'),
    )
    .superRefine(redisTlsNeedsRediss, onObjects)
    .superRefine(subjectIssuersFitClients, onObjects)
    .transform((raw): IssuerConfig => ({
      listen: raw.listen,
      admin: raw.admin,
      issuer: raw.issuer,
      tls: { certFile: raw.tls.cert, keyFile: raw.tls.key, clientCaFile: raw.tls.client_ca },
      keys: {
        dir: raw.keys.dir,
        algorithm: raw.keys.algorithm,
        publishAheadMs: raw.keys.publish_ahead,
        ...(raw.keys.rotate_every !== undefined && { rotateEveryMs: raw.keys.rotate_every }),
      },
      tokenTtlMs: raw.token_ttl,
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
