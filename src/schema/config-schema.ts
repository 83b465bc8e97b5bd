/**
 * Building blocks shared by hopguard's config files (authz, issuer): YAML reading that never
 * quotes a source line, zod issues turned into {path, message} problems, and parsers for the
 * value kinds every file uses (durations, listen addresses, stores). Each problem names its key.
 */

import { isIPv4, isIPv6 } from 'node:net';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import type { ListenAddress } from '../vocabulary/listen-address.js';
import { DEFAULT_MAX_ONE_TIME_ENTRIES, type MemoryOptions } from '../vocabulary/memory-options.js';
import type { RedisOptions } from '../vocabulary/redis-options.js';
import { FILE_KINDS, FileReadError, readBoundedFile } from './bounded-read.js';
import { ConfigError, type ConfigProblem } from './config-error.js';
import { parseDuration } from './duration.js';

/** Reads and validates one config file; any problem, including an unreadable file, is a ConfigError. */
export function loadConfigFile<T>(path: string, parse: (text: string, opts: { baseDir: string; source: string }) => T): T {
  let text: string;
  try {
    text = readBoundedFile(path, FILE_KINDS.config).toString('utf8');
  } catch (err) {
    if (!(err instanceof FileReadError)) throw err;
    throw new ConfigError([{ path: '', message: `cannot read the config file: ${err.message}` }], path, { cause: err });
  }
  return parse(text, { baseDir: dirname(resolve(path)), source: path });
}

/** YAML text → a value of `schema`, or a ConfigError listing every problem. */
export function parseConfig<T>(yamlText: string, schema: z.ZodType<T>, source: string | undefined): T {
  const data = readYaml(yamlText, source);
  const result = schema.safeParse(data);
  if (!result.success) throw new ConfigError(result.error.issues.flatMap(toProblems), source);
  return result.data;
}

export function readYaml(text: string, source: string | undefined): unknown {
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

export function toProblems(issue: z.core.$ZodIssue): ConfigProblem[] {
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
export function quoteValue(value: string, fallback: string): string {
  return /^[\w.+-]{1,20}$/.test(value) ? `"${value}"` : fallback;
}

// ---------------------------------------------------------------------------------------
// Schema building blocks.

/** Wrong-type wording for a schema; a missing required key gets "is required" instead. */
export function expected(what: string) {
  return { error: (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : `expected ${what}`) };
}

/** A string that `parse` turns into its value; whatever `parse` throws becomes the problem. */
export function parsedString<T>(what: string, parse: (text: string) => T) {
  return z.string(expected(what)).transform((text, ctx): T => {
    try {
      return parse(text);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });
}

/** One of `values`, spelled exactly. */
export function oneOf<T extends string>(values: readonly T[], what: string) {
  return parsedString(what, (text): T => {
    const found = values.find((v) => v === text);
    if (!found) throw new Error(`expected one of ${values.join(', ')}`);
    return found;
  });
}

export const nonEmptyString = z.string(expected('a non-empty string')).min(1, 'must not be empty');
export const flag = z.boolean(expected('true or false')).default(false);
export const duration = parsedString('a duration such as "30s" or "5m"', parseDuration);
export const positiveDuration = duration.refine((ms) => ms > 0, 'must be greater than 0');
export const audience = z.string(expected('a non-empty string')).regex(/^\S+$/, 'must be a non-empty string without whitespace');
export const scope = z.string(expected('a string')).regex(/^\S+$/, 'expected a scope: a non-empty string without spaces');

export const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

// Cross-key checks also run when some key of the same object is invalid, so every problem
// is reported at once; they read the partly parsed value defensively.
export const onObjects = { when: (payload: z.core.ParsePayload) => isRecord(payload.value) };
export const onLists = { when: (payload: z.core.ParsePayload) => Array.isArray(payload.value) };

export function exactlyOneOf(a: string, b: string) {
  return (value: Record<string, unknown>, ctx: z.RefinementCtx) => {
    const count = [a, b].filter((key) => value[key] !== undefined).length;
    if (count === 0) ctx.addIssue({ code: 'custom', message: `set ${a} or ${b}` });
    if (count === 2) ctx.addIssue({ code: 'custom', message: `set only one of ${a} and ${b}, not both` });
  };
}

function bothOrNeither(a: string, b: string) {
  return (value: Record<string, unknown>, ctx: z.RefinementCtx) => {
    const [set, unset] = value[a] === undefined ? [b, a] : [a, b];
    if (value[set] !== undefined && value[unset] === undefined) {
      ctx.addIssue({ code: 'custom', path: [unset], message: `is required with ${set}` });
    }
  };
}

/**
 * The redis section's TLS files only mean something to a rediss:// store; on a plain redis://
 * URL they would be ignored and the password would cross the network in clear.
 */
export function redisTlsNeedsRediss(raw: Record<string, unknown>, ctx: z.RefinementCtx) {
  // Parsed (tlsCaFile) or, when another key of the section is invalid, as written (tls_ca_file).
  const redis = isRecord(raw.redis) ? raw.redis : {};
  const tls = Object.keys(redis).some((key) => key.startsWith('tls') && redis[key] !== undefined);
  if (!tls || typeof raw.store !== 'string' || /^rediss:/i.test(raw.store)) return;
  ctx.addIssue({ code: 'custom', path: ['store'], message: 'redis.tls_* files are set, but the store URL is not rediss://: use rediss:// so the connection (and the password) goes over TLS' });
}

/** `key` is spelled the same in YAML and in the parsed item, so this reads either. */
export function uniqueBy(list: string, key: string) {
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

const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** A DNS host name; a dotted all-digit name that is not a valid IPv4 address is a typo, not a host name. */
/** `text` as a URL; an Error saying `expectedUrl` when it is not one, for the key's own message. */
export function parseUrl(text: string, expectedUrl: string): URL {
  if (!URL.canParse(text)) throw new Error(expectedUrl);
  return new URL(text);
}

export function isHostName(text: string): boolean {
  return isIPv4(text) || (DNS_NAME.test(text) && !/^[\d.]+$/.test(text));
}

/** `host:port`, host an IPv4 address, `[ipv6]` or a DNS name; port 0 asks for a free port. */
export function parseHostPort(text: string, what: string): { host: string; port: number } {
  const match = /^(\[[^\]]*\]|[^:[\]]*):(\d+)$/.exec(text);
  if (!match) throw new Error(`expected ${what}`);
  const [, rawHost = '', rawPort = ''] = match;
  const port = Number(rawPort);
  if (port > 65535) throw new Error('port must be from 0 to 65535 (0 picks a free port)');
  const bracketed = rawHost.startsWith('[');
  const host = bracketed ? rawHost.slice(1, -1) : rawHost;
  const valid = bracketed ? isIPv6(host) : isHostName(host);
  if (!valid) throw new Error('host must be an IPv4 address, an IPv6 address in brackets, or a DNS name');
  return { host, port };
}

export function parseListen(text: string): ListenAddress {
  if (!text.startsWith('unix:')) {
    return { kind: 'tcp', ...parseHostPort(text, 'host:port such as 127.0.0.1:9191, or unix:/path/to.sock') };
  }
  const path = text.slice('unix:'.length);
  if (!path.startsWith('/')) throw new Error('expected an absolute socket path such as unix:/run/hopguard.sock');
  return { kind: 'unix', path };
}

export function parseAdmin(text: string): { host: string; port: number } | undefined {
  return text === 'off' ? undefined : parseHostPort(text, 'host:port such as 127.0.0.1:9192, or "off"');
}

const STORE_SCHEMES = ['redis', 'rediss', 'redis-sentinel', 'redis-cluster'];

/** Parsed by hand: sentinel and cluster URLs list several hosts, which `new URL` rejects. */
export function parseStore(text: string): string {
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

/** The 128-bit keys of one-time marks stay collision-free far beyond this; the table is 24 bytes a slot. */
const MAX_ONE_TIME_ENTRIES = 100_000_000;

/** The `memory` section: what `store: memory` may hold. */
export const memorySchema = z
  .strictObject(
    {
      max_one_time_entries: z.int(expected('a whole number')).min(1, 'must be at least 1')
        .max(MAX_ONE_TIME_ENTRIES, `must be at most ${MAX_ONE_TIME_ENTRIES}`).default(DEFAULT_MAX_ONE_TIME_ENTRIES),
    },
    expected('a mapping'),
  )
  .transform((raw): MemoryOptions => ({ maxOneTimeEntries: raw.max_one_time_entries }));

export function redisSchema(baseDir: string) {
  const file = z.string(expected('a file path')).min(1).transform((f) => resolve(baseDir, f));
  return z
    .strictObject(
      {
        key_prefix: z.string(expected('a string')).regex(/^[\x21-\x7e]{1,64}$/, 'expected 1 to 64 visible ASCII characters').default('hopguard:'),
        password_file: file.optional(),
        tls_ca_file: file.optional(),
        tls_cert_file: file.optional(),
        tls_key_file: file.optional(),
        command_timeout: duration.prefault('250ms'),
        max_staleness: duration.prefault('30s'),
        resync_interval: duration.prefault('10s'),
      },
      expected('a mapping'),
    )
    .superRefine(bothOrNeither('tls_cert_file', 'tls_key_file'), onObjects)
    .transform((raw): RedisOptions => ({
      keyPrefix: raw.key_prefix,
      ...(raw.password_file !== undefined && { passwordFile: raw.password_file }),
      ...(raw.tls_ca_file !== undefined && { tlsCaFile: raw.tls_ca_file }),
      ...(raw.tls_cert_file !== undefined && { tlsCertFile: raw.tls_cert_file, tlsKeyFile: raw.tls_key_file }),
      commandTimeoutMs: raw.command_timeout,
      maxStalenessMs: raw.max_staleness,
      resyncIntervalMs: raw.resync_interval,
    }));
}

