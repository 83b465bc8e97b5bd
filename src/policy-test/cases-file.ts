/**
 * The cases file of `hopguard test`: decision tests run in order against one config, as
 * `opa test` runs policy tests. A file that does not fit is a ConfigError naming the key
 * (exit 2), never a case that silently tests something else.
 */

import { z } from 'zod';
import { expected, loadConfigFile, nonEmptyString, parseConfig, uniqueBy, onLists } from '../schema/config-schema.js';
import { parseDuration } from '../schema/duration.js';
import { DENY_CODES, type DenyCode } from '../vocabulary/deny-codes.js';

export interface PolicyCase {
  name: string;
  request: {
    method: string;
    path: string;
    host: string;
    headers: Record<string, string>;
    /** The peer's SPIFFE ID; it presents a certificate the run makes for it. None: no peer certificate. */
    caller?: string;
    /** source.address, for inCidr conditions. */
    address?: string;
  };
  /** `none`: no credential; `reuse`: an earlier case's exact token; else a token the run signs. */
  token: 'none' | { reuse: string } | MintedToken;
  /** `allow`, or the deny code expected. */
  expect: 'allow' | DenyCode;
}

export interface MintedToken {
  /** Merged over the defaults; null removes a default. iat, exp and nbf may be "+90s" / "-5m" from now. */
  claims: Record<string, unknown>;
  /** Whose certificate `cnf` names; the caller by default; null: no cnf. */
  boundTo?: string | null;
}

const RELATIVE_TIME = /^[+-]\d+(ms|s|m|h)$/;

/** "-5m" → now - 300 (epoch seconds); any other value as given. */
export function resolveTimeClaim(value: unknown, nowSeconds: number): unknown {
  if (typeof value !== 'string' || !RELATIVE_TIME.test(value)) return value;
  const seconds = Math.floor(parseDuration(value.slice(1)) / 1000);
  return value.startsWith('-') ? nowSeconds - seconds : nowSeconds + seconds;
}

const headerMap = z.record(z.string(), z.string(expected('a string')), expected('a mapping of header names to strings'));

const requestSchema = z.strictObject(
  {
    method: nonEmptyString.default('GET'),
    path: z.string(expected('a path such as /orders/1')).regex(/^\//, 'must start with "/"'),
    host: nonEmptyString.default('localhost'),
    headers: headerMap.default({}),
    caller: z.string(expected('a SPIFFE ID')).regex(/^[\x21-\x7e]+$/, 'must be visible ASCII without spaces').refine((s) => !s.includes(','), 'must not contain ","').optional(),
    address: nonEmptyString.optional(),
  },
  expected('a mapping with path, and optionally method, host, headers, caller, address'),
);

const tokenSchema = z.union([
  z.literal('none'),
  z.strictObject(
    {
      claims: z.record(z.string(), z.unknown(), expected('a mapping of claims')).default({}),
      bound_to: z.string(expected('a SPIFFE ID or null')).regex(/^[\x21-\x7e]+$/).refine((s) => !s.includes(','), 'must not contain ","').nullable().optional(),
      reuse: nonEmptyString.optional(),
    },
    expected('a mapping with claims, bound_to or reuse, or "none"'),
  ),
], { error: 'expected "none" or a mapping with claims, bound_to or reuse' });

const outcome = z.string(expected('allow or a deny code')).refine(
  (value) => value === 'allow' || value in DENY_CODES,
  { error: (issue) => `expected allow or a deny code such as insufficient_scope, not ${JSON.stringify(String(issue.input).slice(0, 40))}` },
);

const caseSchema = z.strictObject(
  {
    name: nonEmptyString,
    request: requestSchema,
    token: tokenSchema.optional(),
    expect: outcome,
  },
  expected('a mapping with name, request and expect'),
);

const casesSchema = z
  .strictObject({
    cases: z.array(caseSchema, expected('a list of cases')).min(1, 'expected at least one case').superRefine(uniqueBy('cases', 'name'), onLists),
  }, expected('a mapping with cases'))
  .superRefine((file, ctx) => {
    // A reused token must be one an earlier case sent.
    const sent = new Set<string>();
    file.cases.forEach((each, index) => {
      const reuse = typeof each.token === 'object' ? each.token.reuse : undefined;
      if (reuse !== undefined) {
        const mixed = typeof each.token === 'object' && (Object.keys(each.token.claims).length > 0 || each.token.bound_to !== undefined);
        if (mixed) ctx.addIssue({ code: 'custom', path: ['cases', index, 'token'], message: 'reuse sends an earlier token as it was: it takes no claims or bound_to' });
        if (!sent.has(reuse)) ctx.addIssue({ code: 'custom', path: ['cases', index, 'token', 'reuse'], message: 'must name an earlier case that sent a token' });
      }
      if (each.token !== 'none') sent.add(each.name);
    });
  })
  .transform((file): PolicyCase[] => file.cases.map((each) => ({
    name: each.name,
    request: {
      method: each.request.method.toUpperCase(),
      path: each.request.path,
      host: each.request.host,
      headers: Object.fromEntries(Object.entries(each.request.headers).map(([k, v]) => [k.toLowerCase(), v])),
      ...(each.request.caller !== undefined && { caller: each.request.caller }),
      ...(each.request.address !== undefined && { address: each.request.address }),
    },
    token: each.token === 'none' ? 'none'
      : each.token?.reuse !== undefined ? { reuse: each.token.reuse }
      : { claims: each.token?.claims ?? {}, ...(each.token?.bound_to !== undefined && { boundTo: each.token.bound_to }) },
    expect: each.expect as PolicyCase['expect'],
  })));

export function loadCasesFile(path: string): PolicyCase[] {
  return loadConfigFile(path, (text, { source }) => parseConfig(text, casesSchema, source));
}
