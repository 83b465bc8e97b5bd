/**
 * Reads `hopguard authz --config FILE`: YAML (snake_case keys) → a validated AuthzConfig.
 * Each leaf value has a parser that throws a friendly Error; one zod schema per section
 * ties them together, rejects unknown keys, and collects every problem into a ConfigError.
 */

import { isIPv4 } from 'node:net';
import { resolve } from 'node:path';
import { z } from 'zod';
import { auditSchema } from '../audit/audit-config.js';
import {
  audience, duration, exactlyOneOf, expected, flag, isRecord, loadConfigFile, memorySchema, nonEmptyString, oneOf, onLists, onObjects,
  parseAdmin, parseConfig, parsedString, parseListen, parseStore, parseUrl, positiveDuration, quoteValue, redisSchema,
  redisTlsNeedsRediss, scope, uniqueBy,
} from '../schema/config-schema.js';
import { egressFitsTheRest, egressSchema, issuerClientSchema } from './egress-schema.js';
import { compileCondition, ConditionCompileError } from '../policy/route-conditions.js';
import { messagesFitTheRest, messagesSchema } from './messages-schema.js';
import { parseDuration } from '../schema/duration.js';
import { telemetrySchema } from '../telemetry/telemetry-config.js';
import { ASYMMETRIC_ALGORITHMS, type Algorithm } from '../vocabulary/algorithms.js';
import { BINDING_MODES, type BindingMode } from '../vocabulary/binding.js';
import { DEFAULT_CONNECTION_WINDOW, HTTP2_DEFAULT_WINDOW } from '../vocabulary/connection-window.js';
import type { RouteConfig } from '../vocabulary/route.js';
import type { IssuerConfig } from '../vocabulary/trusted-issuer.js';
import { LEAK_ACTIONS, type AuthzConfig, type DpopOptions, type LeakAction } from './authz-config.js';

export function loadAuthzConfigFile(path: string): AuthzConfig {
  return loadConfigFile(path, parseAuthzConfig);
}

/** `baseDir` anchors relative `jwks_file` paths; `source` names the file in error messages. */
export function parseAuthzConfig(yamlText: string, opts: { baseDir: string; source?: string }): AuthzConfig {
  return parseConfig(yamlText, authzConfigSchema(opts.baseDir), opts.source);
}

// ---------------------------------------------------------------------------------------
// Leaf parsers.

function parseAlgorithm(name: string): Algorithm {
  const known = ASYMMETRIC_ALGORITHMS.find((alg) => alg === name);
  if (known) return known;
  const shown = quoteValue(name, 'this algorithm');
  const instead = 'use an asymmetric algorithm such as ES256 or EdDSA';
  if (/^none$/i.test(name)) {
    throw new Error(`${shown} is refused: an unsigned token can be forged by anyone (RFC 8725); ${instead}`);
  }
  if (/^hs/i.test(name)) {
    throw new Error(
      `${shown} is refused: with a symmetric algorithm anyone who has the verification key, ` +
        `here the issuer's public key, can forge tokens (RFC 8725); ${instead}`,
    );
  }
  const sameLetters = ASYMMETRIC_ALGORITHMS.find((alg) => alg.toLowerCase() === name.toLowerCase());
  if (sameLetters) {
    throw new Error(`unsupported algorithm ${shown}: names are case-sensitive, did you mean "${sameLetters}"?`);
  }
  throw new Error(`unsupported algorithm ${shown}, expected one of ${ASYMMETRIC_ALGORITHMS.join(', ')}`);
}

function isLoopbackHostname(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || (isIPv4(hostname) && hostname.startsWith('127.'));
}

const JWKS_HTTPS_ONLY = 'expected an https URL; http is allowed only for a loopback host (127.0.0.1, [::1], localhost)';

/**
 * Keys are trusted only over https; plain http is allowed for a sidecar on the same host, and
 * with jwks_transport: mesh (checked in checkKeySource) to the pod's own mesh proxy.
 */
function parseJwksUri(text: string): string {
  const url = parseUrl(text, JWKS_HTTPS_ONLY);
  if (url.username !== '' || url.password !== '') throw new Error('must not contain credentials (user:password@)');
  if (url.protocol === 'https:' || url.protocol === 'http:') return url.href;
  throw new Error(JWKS_HTTPS_ONLY);
}

function parseBinding(text: string): BindingMode {
  const mode = BINDING_MODES.find((candidate) => candidate === text);
  if (mode === undefined) throw new Error(`expected ${BINDING_MODES.join(', ')}`);
  return mode;
}

/** RFC 9110 token characters. */
const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function parseMethod(text: string): string {
  if (!HTTP_TOKEN.test(text)) throw new Error('expected an HTTP method such as GET or POST');
  return text.toUpperCase();
}

/**
 * A route path must be in the normal form a request path is compared in; anything else
 * could never match, or would look like it guards something it does not.
 */
function parseRoutePath(text: string): string {
  if (!text.startsWith('/')) throw new Error('must start with "/"');
  // No ";": a request is matched both as written and without its ";params" (route-table.ts),
  // and a route with one could only ever match one of the two.
  for (const bad of ['?', '#', '//', '/./', '/../', '\\', '%', ';']) {
    if (text.includes(bad)) throw new Error(`must not contain "${bad}": write the plain, normalized path`);
  }
  if (text.endsWith('/.') || text.endsWith('/..')) throw new Error('must not end with "/." or "/.."');
  if (!/^[\x21-\x7e]+$/.test(text)) throw new Error('must contain only visible ASCII characters, no spaces');
  return text;
}

// ---------------------------------------------------------------------------------------
// One schema per section. Defaults are spelled as in YAML: `.prefault(x)` parses x when the
// key is absent (`.default()` would also replace an `undefined` result, such as `admin: off`).

const MAX_CLOCK_SKEW_MS = parseDuration('5m');

const listenAddress = parsedString('host:port such as 127.0.0.1:9191, or unix:/path/to.sock', parseListen);
const adminAddress = parsedString('host:port such as 127.0.0.1:9192, or "off"', parseAdmin);
const algorithm = parsedString('an algorithm name such as ES256', parseAlgorithm);
const httpMethod = parsedString('an HTTP method such as GET', parseMethod);
const routePath = (example: string) => parsedString(`a path such as ${example}`, parseRoutePath);

/** The keys of a trusted issuer, shared by authz `issuers` and the issuer's `subject_issuers`. */
export const trustedIssuerFields = {
  issuer: nonEmptyString,
  jwks_file: nonEmptyString.optional(),
  jwks_uri: parsedString('an https URL', parseJwksUri).optional(),
  jwks_ca_file: nonEmptyString.optional(),
  // mesh: jwks_uri is http to the pod's own mesh proxy (Istio's), which carries it over mTLS.
  jwks_transport: oneOf<'tls' | 'mesh'>(['tls', 'mesh'], 'tls or mesh').optional(),
  algorithms: z
    .array(algorithm, expected('a list of algorithms such as [ES256]'))
    .min(1, 'expected at least one algorithm, such as [ES256]'),
  max_ttl: positiveDuration.prefault('10m'),
};

type TrustedIssuerRaw = {
  issuer: string; jwks_file?: string; jwks_uri?: string; jwks_ca_file?: string; jwks_transport?: 'tls' | 'mesh'; algorithms: Algorithm[]; max_ttl: number;
};

/** Exactly one key source; a CA bundle only for a URL. */
export function checkKeySource(raw: TrustedIssuerRaw, ctx: z.RefinementCtx): void {
  exactlyOneOf('jwks_file', 'jwks_uri')(raw, ctx);
  if (raw.jwks_ca_file !== undefined && raw.jwks_uri === undefined) {
    ctx.addIssue({ code: 'custom', path: ['jwks_ca_file'], message: 'only applies with jwks_uri' });
  }
  if (typeof raw.jwks_uri !== 'string' || !URL.canParse(raw.jwks_uri)) {
    if (raw.jwks_uri === undefined && raw.jwks_transport !== undefined) ctx.addIssue({ code: 'custom', path: ['jwks_transport'], message: 'only applies with jwks_uri' });
    return;
  }
  const url = new URL(raw.jwks_uri);
  if (raw.jwks_transport === 'mesh') {
    if (url.protocol !== 'http:') ctx.addIssue({ code: 'custom', path: ['jwks_uri'], message: 'expected an http URL with jwks_transport: mesh: the pod\'s mesh proxy does the TLS' });
    if (raw.jwks_ca_file !== undefined) ctx.addIssue({ code: 'custom', path: ['jwks_ca_file'], message: 'is not used with jwks_transport: mesh' });
  } else if (url.protocol === 'http:' && !isLoopbackHostname(url.hostname)) {
    ctx.addIssue({ code: 'custom', path: ['jwks_uri'], message: JWKS_HTTPS_ONLY });
  }
}

export function trustedIssuerConfig(raw: TrustedIssuerRaw, baseDir: string): IssuerConfig {
  return {
    issuer: raw.issuer,
    ...(raw.jwks_file !== undefined
      ? { jwksFile: resolve(baseDir, raw.jwks_file) }
      : { jwksUri: raw.jwks_uri }),
    ...(raw.jwks_ca_file !== undefined && { jwksCaFile: resolve(baseDir, raw.jwks_ca_file) }),
    algorithms: raw.algorithms,
    maxTtlMs: raw.max_ttl,
  };
}

function issuerSchema(baseDir: string) {
  return z
    .strictObject(trustedIssuerFields, expected('a mapping with issuer, jwks_file or jwks_uri, and algorithms'))
    .superRefine(checkKeySource, onObjects)
    .transform((raw) => trustedIssuerConfig(raw, baseDir));
}

/** A public route checks no token, so token rules on it would be silently ignored. */
function noTokenRulesWhenPublic(route: Record<string, unknown>, ctx: z.RefinementCtx) {
  if (route.public !== true) return;
  const ignored = ['scopes', 'callers', 'when'].filter((key) => Array.isArray(route[key]) && route[key].length > 0);
  if (route.one_time === true) ignored.push('one_time');
  for (const key of ignored) {
    ctx.addIssue({
      code: 'custom',
      path: [key],
      message: 'not allowed on a public route: public: true checks no token, so this would be ignored',
    });
  }
}

/** A CEL identifier: how a condition names it (`data.suspended_tenants`). */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

const conditionSchema = z.strictObject(
  {
    name: nonEmptyString,
    cel: nonEmptyString,
  },
  expected('a mapping with name and cel'),
);

type RouteRaw = { name: string; public: boolean; when?: { name: string; cel: string }[] };

/** Each `when:` expression compiled once, here; one that does not compile is a problem naming the route and the condition. */
function compileWhen(raw: RouteRaw, ctx: z.RefinementCtx) {
  if (raw.when === undefined || raw.when.length === 0) return undefined;
  const seen = new Set<string>();
  return raw.when.flatMap(({ name, cel }, index) => {
    const where = `condition "${name}" of route "${raw.name}"`;
    if (seen.has(name)) {
      ctx.addIssue({ code: 'custom', path: ['when', index, 'name'], message: `${where} is named twice: names tell denials apart` });
      return [];
    }
    seen.add(name);
    try {
      return [compileCondition(name, cel)];
    } catch (err) {
      if (!(err instanceof ConditionCompileError)) throw err;
      ctx.addIssue({ code: 'custom', path: ['when', index, 'cel'], message: `${where} ${err.message}` });
      return [];
    }
  });
}

const routeSchema = z
  .strictObject(
    {
      name: nonEmptyString,
      methods: z.array(httpMethod, expected('a list of HTTP methods such as [GET, POST]')).default([]),
      path: routePath('/payments').optional(),
      path_prefix: routePath('/orders/').optional(),
      scopes: z.array(scope, expected('a list of strings')).default([]),
      callers: z.array(nonEmptyString, expected('a list of strings')).default([]),
      public: flag,
      one_time: flag,
      forward_token: flag,
      when: z.array(conditionSchema, expected('a list of conditions, each with name and cel')).optional(),
    },
    expected('a mapping with name and path or path_prefix'),
  )
  .superRefine(exactlyOneOf('path', 'path_prefix'), onObjects)
  .superRefine(noTokenRulesWhenPublic, onObjects)
  .transform((raw, ctx): RouteConfig => {
    const conditions = compileWhen(raw, ctx);
    return {
      name: raw.name,
      methods: raw.methods,
      ...(raw.path !== undefined ? { path: raw.path } : { pathPrefix: raw.path_prefix }),
      scopes: raw.scopes,
      callers: raw.callers,
      public: raw.public,
      oneTime: raw.one_time,
      forwardToken: raw.forward_token,
      ...(conditions && conditions.length > 0 && { conditions }),
    };
  });

/** A check answers unknown_key after waiting this long at most on its kid's refetch. */
const MAX_CHECK_WAIT_MS = 500;

/** How keys are fetched; the issuer uses it for its subject issuers. */
export const jwksSchema = z
  .strictObject(
    {
      refresh_interval: positiveDuration.prefault('5m'),
      refetch_interval: positiveDuration.prefault('30s'),
      fetch_timeout: positiveDuration.prefault('5s'),
      // Envoy's ext_authz timeout is 1s here (README): an answer after it is no answer.
      check_wait: duration.refine((ms) => ms <= MAX_CHECK_WAIT_MS, 'must be at most 500ms: a check must answer well before Envoy gives up (1s)').prefault('250ms'),
    },
    expected('a mapping'),
  )
  .transform((raw) => ({
    refreshIntervalMs: raw.refresh_interval,
    refetchIntervalMs: raw.refetch_interval,
    fetchTimeoutMs: raw.fetch_timeout,
    checkWaitMs: raw.check_wait,
  }));

const dpopSchema = (baseDir: string) => z
  .strictObject(
    {
      algorithms: z.array(algorithm, expected('a list of algorithms')).min(1, 'expected at least one algorithm')
        .default(['ES256', 'EdDSA', 'RS256', 'PS256']),
      max_age: positiveDuration.refine((ms) => ms <= 600_000, 'must be at most 10m: a proof is meant for one request').prefault('60s'),
      nonce: flag,
      // Replicas must share it, so each accepts the nonces the others hand out.
      nonce_secret_file: nonEmptyString.optional(),
      nonce_lifetime: positiveDuration.prefault('5m'),
    },
    expected('a mapping'),
  )
  .superRefine((raw, ctx) => {
    if (raw.nonce === true && raw.nonce_secret_file === undefined) {
      ctx.addIssue({ code: 'custom', path: ['nonce_secret_file'], message: 'is required with nonce: true (a secret every replica shares)' });
    }
  }, onObjects)
  .transform((raw): DpopOptions => ({
    algorithms: raw.algorithms,
    maxAgeMs: raw.max_age,
    ...(raw.nonce && raw.nonce_secret_file !== undefined && {
      nonce: { secretFile: resolve(baseDir, raw.nonce_secret_file), lifetimeMs: raw.nonce_lifetime },
    }),
  }));

const cacheSchema = z
  .strictObject(
    {
      max_entries: z.int(expected('a whole number')).min(0, 'must be 0 or more (0 disables the cache)').default(10_000),
    },
    expected('a mapping'),
  )
  .transform((raw) => ({ maxEntries: raw.max_entries }));

const MAX_WORKERS = 64;
const HTTP2_MAX_WINDOW = 2 ** 31 - 1;

/**
 * Workers share the listener but not memory: with `store: memory`, each would keep its own
 * record of used one-time tokens and DPoP proofs, and accept each once per worker. A DPoP-bound
 * token is accepted under every binding mode but `mtls` (`none` too: a token carrying `cnf` is
 * always held to it), so each of those modes has DPoP proofs to remember.
 */
function workersShareOneTimeState(raw: Record<string, unknown>, ctx: z.RefinementCtx) {
  const message = workersOneTimeProblem(raw);
  if (message !== undefined) ctx.addIssue({ code: 'custom', path: ['workers'], message });
}

/**
 * The problem with `workers` of this raw (YAML) or validated config, if any. A reload checks the
 * config it would run: new routes beside the workers and store kept from the start.
 */
export function workersOneTimeProblem(raw: Record<string, unknown>): string | undefined {
  if (typeof raw.workers !== 'number' || raw.workers <= 1 || raw.store !== 'memory') return undefined;
  const routes = Array.isArray(raw.routes) ? raw.routes : [];
  const oneTime = routes.some((route) => isRecord(route) && (route.oneTime === true || route.one_time === true));
  const dpop = raw.binding !== 'mtls' && BINDING_MODES.some((mode) => mode === raw.binding);
  if (!oneTime && !dpop) return undefined;
  const used = oneTime ? 'one-time tokens' : `DPoP proofs (binding: ${String(raw.binding)} accepts DPoP-bound tokens)`;
  return `more than 1 needs a redis store: with store: memory each worker keeps its own record of used ${used}, so each would be accepted once per worker; use a redis store, or workers: 1${oneTime ? '' : ', or binding: mtls'}`;
}

function authzConfigSchema(baseDir: string) {
  return z
    .strictObject(
      {
        listen: listenAddress,
        admin: adminAddress.prefault('127.0.0.1:9192'),
        audience,
        issuers: z
          .array(issuerSchema(baseDir), expected('a list of issuers'))
          .min(1, 'expected at least one issuer')
          .superRefine(uniqueBy('issuers', 'issuer'), onLists),
        // A wide skew keeps expired tokens alive; 5m is already generous.
        clock_skew: duration.refine((skew) => skew <= MAX_CLOCK_SKEW_MS, 'must be at most 5m').prefault('30s'),
        binding: parsedString('mtls, dpop, mtls_or_dpop or none', parseBinding).prefault('mtls'),
        dpop: dpopSchema(baseDir).prefault({}),
        store: parsedString('"memory" or a redis URL', parseStore).prefault('memory'),
        redis: redisSchema(baseDir).prefault({}),
        memory: memorySchema.prefault({}),
        routes: z
          .array(routeSchema, expected('a list of routes'))
          .min(1, 'expected at least one route')
          .superRefine(uniqueBy('routes', 'name'), onLists),
        data: z.record(z.string(), nonEmptyString, expected('a mapping of names to YAML or JSON files'))
          .superRefine((names, ctx) => {
            for (const name of Object.keys(names).filter((n) => !IDENTIFIER.test(n))) {
              ctx.addIssue({ code: 'custom', path: [name], message: 'must be an identifier (letters, digits, _): conditions read it as data.NAME' });
            }
          }).default({}),
        jwks: jwksSchema.prefault({}),
        cache: cacheSchema.prefault({}),
        shutdown_grace: duration.prefault('10s'),
        workers: z.int(expected('a whole number')).min(1, 'must be at least 1').max(MAX_WORKERS, `must be at most ${MAX_WORKERS}`).default(1),
        http2_connection_window: z.int(expected('a whole number of bytes'))
          .min(HTTP2_DEFAULT_WINDOW, `must be at least ${HTTP2_DEFAULT_WINDOW} (HTTP/2's initial window)`)
          .max(HTTP2_MAX_WINDOW, `must be at most ${HTTP2_MAX_WINDOW}`)
          .default(DEFAULT_CONNECTION_WINDOW),
        telemetry: telemetrySchema.prefault({}),
        audit: auditSchema(baseDir).prefault({}),
        issuer_client: issuerClientSchema(baseDir).optional(),
        egress: egressSchema.optional(),
        messages: messagesSchema.optional(),
        leaks: oneOf<LeakAction>(LEAK_ACTIONS, 'a leak response').prefault('revoke'),
      },
      expected('a mapping with listen, audience, issuers and routes'),
    )
    .superRefine(workersShareOneTimeState, onObjects)
    .superRefine(redisTlsNeedsRediss, onObjects)
    .superRefine(egressFitsTheRest, onObjects)
    .superRefine(messagesFitTheRest, onObjects)
    .transform(
      (raw): AuthzConfig => ({
        listen: raw.listen,
        admin: raw.admin,
        audience: raw.audience,
        issuers: raw.issuers,
        clockSkewMs: raw.clock_skew,
        binding: raw.binding,
        dpop: raw.dpop,
        store: raw.store,
        redis: raw.redis,
        memory: raw.memory,
        routes: raw.routes,
        data: Object.fromEntries(Object.entries(raw.data).map(([name, file]) => [name, resolve(baseDir, file)])),
        jwks: raw.jwks,
        cache: raw.cache,
        shutdownGraceMs: raw.shutdown_grace,
        workers: raw.workers,
        http2ConnectionWindow: raw.http2_connection_window,
        telemetry: raw.telemetry,
        audit: raw.audit,
        ...(raw.issuer_client && { issuerClient: raw.issuer_client }),
        ...(raw.egress && { egress: raw.egress }),
        ...(raw.messages && { messages: raw.messages }),
        leaks: raw.leaks,
      }),
    );
}
