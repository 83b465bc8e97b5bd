/**
 * Reads `hopguard authz --config FILE`: YAML (snake_case keys) → a validated AuthzConfig.
 * Each leaf value has a parser that throws a friendly Error; one zod schema per section
 * ties them together, rejects unknown keys, and collects every problem into a ConfigError.
 */

import { readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import {
  ASYMMETRIC_ALGORITHMS,
  BINDING_MODES,
  type Algorithm,
  type AuthzConfig,
  type BindingMode,
  type IssuerConfig,
  type ListenAddress,
  type RouteConfig,
} from './authz-config.js';
import { ConfigError, type ConfigProblem } from './config-error.js';
import { parseDuration } from './duration.js';

export function loadAuthzConfigFile(path: string): AuthzConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new ConfigError([{ path: '', message: `cannot read the config file (${reason})` }], path, { cause: err });
  }
  return parseAuthzConfig(text, { baseDir: dirname(resolve(path)), source: path });
}

/** `baseDir` anchors relative `jwks_file` paths; `source` names the file in error messages. */
export function parseAuthzConfig(yamlText: string, opts: { baseDir: string; source?: string }): AuthzConfig {
  const data = readYaml(yamlText, opts.source);
  const result = authzConfigSchema(opts.baseDir).safeParse(data);
  if (!result.success) throw new ConfigError(result.error.issues.flatMap(toProblems), opts.source);
  return result.data;
}

function readYaml(text: string, source: string | undefined): unknown {
  const lineCounter = new LineCounter();
  // prettyErrors would quote the offending source line, which may hold a secret.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((err) => {
        const { line, col } = lineCounter.linePos(err.pos[0]);
        const what = err.code === 'MULTIPLE_DOCS' ? 'the file must hold a single YAML document' : err.message;
        return { path: '', message: `YAML syntax error at line ${line}, column ${col}: ${what}` };
      }),
      source,
    );
  }
  try {
    return doc.toJS();
  } catch (err) {
    // Unresolved aliases and alias bombs surface here, not in doc.errors.
    throw new ConfigError([{ path: '', message: `invalid YAML: ${(err as Error).message}` }], source);
  }
}

// ---------------------------------------------------------------------------------------
// Turning zod issues into problems. Schemas below carry their own wording; only unknown
// keys need rewording here.

function toProblems(issue: z.core.$ZodIssue): ConfigProblem[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => ({
      path: formatPath([...issue.path, key]),
      message: `unknown key ${quoteKey(key)}`,
    }));
  }
  return [{ path: formatPath(issue.path), message: issue.message }];
}

/** ['issuers', 0, 'algorithms', 1] → `issuers[0].algorithms[1]`. */
function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, key) => {
    if (typeof key === 'number') return `${out}[${key}]`;
    return out === '' ? String(key) : `${out}.${String(key)}`;
  }, '');
}

function quoteKey(key: string): string {
  return JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key);
}

/** Echo a value only when it is short and plain (an algorithm name), never free text. */
function quoteValue(value: string, fallback: string): string {
  return /^[\w.+-]{1,20}$/.test(value) ? `"${value}"` : fallback;
}

// ---------------------------------------------------------------------------------------
// Schema building blocks.

/** Wrong-type wording for a schema; a missing required key gets "is required" instead. */
function expected(what: string) {
  return { error: (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : `expected ${what}`) };
}

/** A string that `parse` turns into its value; whatever `parse` throws becomes the problem. */
function parsedString<T>(what: string, parse: (text: string) => T) {
  return z.string(expected(what)).transform((text, ctx): T => {
    try {
      return parse(text);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });
}

const nonEmptyString = z.string(expected('a non-empty string')).min(1, 'must not be empty');
const flag = z.boolean(expected('true or false')).default(false);
const duration = parsedString('a duration such as "30s" or "5m"', parseDuration);
const positiveDuration = duration.refine((ms) => ms > 0, 'must be greater than 0');

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

// Cross-key checks also run when some key of the same object is invalid, so every problem
// is reported at once; they read the partly parsed value defensively.
const onObjects = { when: (payload: z.core.ParsePayload) => isRecord(payload.value) };
const onLists = { when: (payload: z.core.ParsePayload) => Array.isArray(payload.value) };

function exactlyOneOf(a: string, b: string) {
  return (value: Record<string, unknown>, ctx: z.RefinementCtx) => {
    const count = [a, b].filter((key) => value[key] !== undefined).length;
    if (count === 0) ctx.addIssue({ code: 'custom', message: `set ${a} or ${b}` });
    if (count === 2) ctx.addIssue({ code: 'custom', message: `set only one of ${a} and ${b}, not both` });
  };
}

/** `key` is spelled the same in YAML and in the parsed item, so this reads either. */
function uniqueBy(list: string, key: string) {
  return (items: unknown[], ctx: z.RefinementCtx) => {
    const firstIndex = new Map<unknown, number>();
    items.forEach((item, index) => {
      const value = isRecord(item) ? item[key] : undefined;
      if (typeof value !== 'string') return;
      const first = firstIndex.get(value);
      if (first === undefined) {
        firstIndex.set(value, index);
      } else {
        const message = `duplicate ${key}, already used by ${list}[${first}]`;
        ctx.addIssue({ code: 'custom', path: [index, key], message });
      }
    });
  };
}

// ---------------------------------------------------------------------------------------
// Leaf parsers.

const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** `host:port`, host an IPv4 address, `[ipv6]` or a DNS name; port 0 asks for a free port. */
function parseHostPort(text: string, what: string): { host: string; port: number } {
  const match = /^(\[[^\]]*\]|[^:[\]]*):(\d+)$/.exec(text);
  if (!match) throw new Error(`expected ${what}`);
  const [, rawHost = '', rawPort = ''] = match;
  const port = Number(rawPort);
  if (port > 65535) throw new Error('port must be from 0 to 65535 (0 picks a free port)');
  const bracketed = rawHost.startsWith('[');
  const host = bracketed ? rawHost.slice(1, -1) : rawHost;
  // A dotted all-digit name that is not a valid IPv4 address is a typo, not a host name.
  const valid = bracketed ? isIPv6(host) : isIPv4(host) || (DNS_NAME.test(host) && !/^[\d.]+$/.test(host));
  if (!valid) throw new Error('host must be an IPv4 address, an IPv6 address in brackets, or a DNS name');
  return { host, port };
}

function parseListen(text: string): ListenAddress {
  if (!text.startsWith('unix:')) {
    return { kind: 'tcp', ...parseHostPort(text, 'host:port such as 127.0.0.1:9191, or unix:/path/to.sock') };
  }
  const path = text.slice('unix:'.length);
  if (!path.startsWith('/')) throw new Error('expected an absolute socket path such as unix:/run/hopguard.sock');
  return { kind: 'unix', path };
}

function parseAdmin(text: string): { host: string; port: number } | undefined {
  return text === 'off' ? undefined : parseHostPort(text, 'host:port such as 127.0.0.1:9192, or "off"');
}

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

/** Keys are trusted only over https; plain http is allowed for a sidecar on the same host. */
function parseJwksUri(text: string): string {
  const httpsOnly = 'expected an https URL; http is allowed only for a loopback host (127.0.0.1, [::1], localhost)';
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(httpsOnly);
  }
  if (url.username !== '' || url.password !== '') throw new Error('must not contain credentials (user:password@)');
  if (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHostname(url.hostname))) return url.href;
  throw new Error(httpsOnly);
}

/** DPoP modes stay in BINDING_MODES for the release that implements them; refused until then. */
const UNAVAILABLE_BINDINGS: readonly BindingMode[] = ['dpop', 'mtls_or_dpop'];

function parseBinding(text: string): BindingMode {
  const mode = BINDING_MODES.find((candidate) => candidate === text);
  if (mode === undefined) {
    throw new Error(`expected ${BINDING_MODES.filter((m) => !UNAVAILABLE_BINDINGS.includes(m)).join(' or ')}`);
  }
  if (UNAVAILABLE_BINDINGS.includes(mode)) {
    throw new Error('DPoP binding is not available in this version of hopguard; use mtls or none');
  }
  return mode;
}

const STORE_SCHEMES = ['redis', 'rediss', 'redis-sentinel', 'redis-cluster'];

/** Parsed by hand: sentinel and cluster URLs list several hosts, which `new URL` rejects. */
function parseStore(text: string): string {
  const expectation = `expected "memory" or a URL such as redis://host:6379 (schemes: ${STORE_SCHEMES.join(', ')})`;
  if (text === 'memory') return text;
  const match = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)(.*)$/is.exec(text);
  if (!match) throw new Error(expectation);
  const [, scheme = '', authority = '', rest = ''] = match;
  const at = authority.lastIndexOf('@');
  // ioredis also reads a password from the query string.
  if ((at >= 0 && authority.slice(0, at).includes(':')) || /[?&][^=&#]*pass[^=&#]*=/i.test(rest)) {
    throw new Error(
      'the URL contains a password: put the password in HOPGUARD_REDIS_PASSWORD or a file, not in the config',
    );
  }
  if (!STORE_SCHEMES.includes(scheme.toLowerCase())) throw new Error(expectation);
  if (authority.slice(at + 1) === '') throw new Error('the URL has no host');
  return text;
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
  for (const bad of ['?', '#', '//', '/./', '/../', '\\', '%']) {
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
const audience = z
  .string(expected('a non-empty string'))
  .regex(/^\S+$/, 'must be a non-empty string without whitespace');
const algorithm = parsedString('an algorithm name such as ES256', parseAlgorithm);
const httpMethod = parsedString('an HTTP method such as GET', parseMethod);
const scope = z.string(expected('a string')).regex(/^\S+$/, 'expected a scope: a non-empty string without spaces');
const routePath = (example: string) => parsedString(`a path such as ${example}`, parseRoutePath);

function issuerSchema(baseDir: string) {
  return z
    .strictObject(
      {
        issuer: nonEmptyString,
        jwks_file: nonEmptyString.optional(),
        jwks_uri: parsedString('an https URL', parseJwksUri).optional(),
        algorithms: z
          .array(algorithm, expected('a list of algorithms such as [ES256]'))
          .min(1, 'expected at least one algorithm, such as [ES256]'),
        max_ttl: positiveDuration.prefault('10m'),
      },
      expected('a mapping with issuer, jwks_file or jwks_uri, and algorithms'),
    )
    .superRefine(exactlyOneOf('jwks_file', 'jwks_uri'), onObjects)
    .transform(
      (raw): IssuerConfig => ({
        issuer: raw.issuer,
        ...(raw.jwks_file !== undefined
          ? { jwksFile: resolve(baseDir, raw.jwks_file) }
          : { jwksUri: raw.jwks_uri }),
        algorithms: raw.algorithms,
        maxTtlMs: raw.max_ttl,
      }),
    );
}

/** A public route checks no token, so token rules on it would be silently ignored. */
function noTokenRulesWhenPublic(route: Record<string, unknown>, ctx: z.RefinementCtx) {
  if (route.public !== true) return;
  const ignored = ['scopes', 'callers'].filter((key) => Array.isArray(route[key]) && route[key].length > 0);
  if (route.one_time === true) ignored.push('one_time');
  for (const key of ignored) {
    ctx.addIssue({
      code: 'custom',
      path: [key],
      message: 'not allowed on a public route: public: true checks no token, so this would be ignored',
    });
  }
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
    },
    expected('a mapping with name and path or path_prefix'),
  )
  .superRefine(exactlyOneOf('path', 'path_prefix'), onObjects)
  .superRefine(noTokenRulesWhenPublic, onObjects)
  .transform(
    (raw): RouteConfig => ({
      name: raw.name,
      methods: raw.methods,
      ...(raw.path !== undefined ? { path: raw.path } : { pathPrefix: raw.path_prefix }),
      scopes: raw.scopes,
      callers: raw.callers,
      public: raw.public,
      oneTime: raw.one_time,
      forwardToken: raw.forward_token,
    }),
  );

const jwksSchema = z
  .strictObject(
    {
      refresh_interval: positiveDuration.prefault('5m'),
      refetch_interval: positiveDuration.prefault('30s'),
      fetch_timeout: positiveDuration.prefault('5s'),
    },
    expected('a mapping'),
  )
  .transform((raw) => ({
    refreshIntervalMs: raw.refresh_interval,
    refetchIntervalMs: raw.refetch_interval,
    fetchTimeoutMs: raw.fetch_timeout,
  }));

const cacheSchema = z
  .strictObject(
    {
      max_entries: z.int(expected('a whole number')).min(0, 'must be 0 or more (0 disables the cache)').default(10_000),
    },
    expected('a mapping'),
  )
  .transform((raw) => ({ maxEntries: raw.max_entries }));

function redisSchema(baseDir: string) {
  const file = z.string(expected('a file path')).min(1).transform((f) => resolve(baseDir, f));
  return z
    .strictObject(
      {
        key_prefix: z.string(expected('a string')).regex(/^[\x21-\x7e]{1,64}$/, 'expected 1 to 64 visible ASCII characters').default('hopguard:'),
        password_file: file.optional(),
        tls_ca_file: file.optional(),
        command_timeout: duration.prefault('250ms'),
        max_staleness: duration.prefault('30s'),
        resync_interval: duration.prefault('10s'),
      },
      expected('a mapping'),
    )
    .transform((raw) => ({
      keyPrefix: raw.key_prefix,
      ...(raw.password_file !== undefined && { passwordFile: raw.password_file }),
      ...(raw.tls_ca_file !== undefined && { tlsCaFile: raw.tls_ca_file }),
      commandTimeoutMs: raw.command_timeout,
      maxStalenessMs: raw.max_staleness,
      resyncIntervalMs: raw.resync_interval,
    }));
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
        binding: parsedString('mtls or none', parseBinding).prefault('mtls'),
        store: parsedString('"memory" or a redis URL', parseStore).prefault('memory'),
        redis: redisSchema(baseDir).prefault({}),
        routes: z
          .array(routeSchema, expected('a list of routes'))
          .min(1, 'expected at least one route')
          .superRefine(uniqueBy('routes', 'name'), onLists),
        jwks: jwksSchema.prefault({}),
        cache: cacheSchema.prefault({}),
        shutdown_grace: duration.prefault('10s'),
      },
      expected('a mapping with listen, audience, issuers and routes'),
    )
    .transform(
      (raw): AuthzConfig => ({
        listen: raw.listen,
        admin: raw.admin,
        audience: raw.audience,
        issuers: raw.issuers,
        clockSkewMs: raw.clock_skew,
        binding: raw.binding,
        store: raw.store,
        redis: raw.redis,
        routes: raw.routes,
        jwks: raw.jwks,
        cache: raw.cache,
        shutdownGraceMs: raw.shutdown_grace,
      }),
    );
}
