/**
 * `when:` conditions: CEL expressions (the language of Envoy RBAC, Istio and Kubernetes) over
 * the request, the token, `now` and `data`, compiled once when the config is loaded and run
 * on every check of their route after its scopes and callers have passed.
 *
 * Library: @marcbachmann/cel-js. Its Environment declares the variables and functions up front
 * and type-checks an expression against them, so an unknown variable, a misspelt function or
 * `1 + 'a'` is a config error at load rather than a denial at run time; it has no dependencies,
 * bounds an expression's AST, and evaluates a compiled expression in well under a microsecond
 * for the shapes used here (see README, Performance).
 */

import { Environment, type ASTNode } from '@marcbachmann/cel-js';
import { clockIn, inCidr, parseCidr, timeOfDay, weekday } from './condition-functions.js';
import type { ConditionVariables, RouteCondition } from '../vocabulary/route-condition.js';

/** A `when:` expression that does not compile; the message says why, without the source highlight. */
export class ConditionCompileError extends Error {
  override readonly name = 'ConditionCompileError';
  readonly code = 'invalid_condition';
}

const TIMESTAMP = 'google.protobuf.Timestamp';

/** Built once: cloning or building an Environment per expression would cost more than compiling it. */
const environment = new Environment({
  limits: { maxAstNodes: 1000, maxDepth: 50, maxListElements: 1000, maxMapEntries: 1000, maxCallArguments: 8 },
})
  .registerVariable('request', 'map', { description: 'method, path, query, host, headers (no authorization), source.address, source.principal' })
  .registerVariable('token', 'map', { description: 'iss, sub, client_id, aud, scopes, jti, iat, exp, act, claims' })
  .registerVariable('now', TIMESTAMP)
  .registerVariable('data', 'map', { description: 'the files named under data:, by name' })
  .registerFunction('string.inCidr(string): bool', inCidr, { description: 'the address is in the CIDR (or is the address)' })
  .registerFunction(`${TIMESTAMP}.timeOfDay(string): string`, timeOfDay, { description: '"HH:MM" (24 h) in the IANA time zone' })
  .registerFunction(`${TIMESTAMP}.weekday(string): string`, weekday, { description: '"Mon" … "Sun" in the IANA time zone' });

/** Functions whose literal argument is checked at load: a CIDR, or a time zone. */
const LITERAL_ARGUMENTS: Record<string, (text: string) => unknown> = {
  inCidr: parseCidr,
  timeOfDay: clockIn,
  weekday: clockIn,
  // cel-js' own timestamp accessors with a zone: an unknown zone would otherwise fail every check.
  getDayOfWeek: clockIn,
  getHours: clockIn,
  getMinutes: clockIn,
  getDayOfMonth: clockIn,
  getDayOfYear: clockIn,
  getMonth: clockIn,
  getFullYear: clockIn,
};

export function compileCondition(name: string, cel: string): RouteCondition {
  let compiled;
  try {
    compiled = environment.parse(cel);
  } catch (err) {
    throw new ConditionCompileError(`does not parse: ${firstLine(err)}`);
  }
  const checked = compiled.check();
  if (!checked.valid) throw new ConditionCompileError(`does not type-check: ${firstLine(checked.error)}`);
  if (checked.type !== 'bool' && checked.type !== 'dyn') {
    throw new ConditionCompileError(`must be a boolean expression, not ${checked.type}`);
  }
  checkLiteralArguments(compiled.ast);
  return { name, cel, evaluate: compiled };
}

/** The name of the first condition that does not hold (false, not a boolean, or an error); undefined when all do. */
export function failedCondition(conditions: readonly RouteCondition[], variables: ConditionVariables): string | undefined {
  for (const condition of conditions) {
    let result: unknown;
    try {
      result = condition.evaluate(variables);
    } catch {
      // A missing claim, a key not in data, a bad address: the condition cannot be shown to hold.
      return condition.name;
    }
    if (result !== true) return condition.name;
  }
  return undefined;
}

function checkLiteralArguments(node: ASTNode): void {
  if (node.op === 'rcall') {
    const [fn, receiver, args] = node.args;
    const check = LITERAL_ARGUMENTS[fn];
    const literal = args[0];
    if (check && literal?.op === 'value' && typeof literal.args === 'string') {
      try {
        check(literal.args);
      } catch (err) {
        throw new ConditionCompileError(`${fn}(${JSON.stringify(literal.args)}): ${(err as Error).message}`);
      }
    }
    checkLiteralArguments(receiver);
    for (const arg of args) checkLiteralArguments(arg);
    return;
  }
  const { args } = node as { args: unknown };
  const children = Array.isArray(args) ? args.flat() : [args];
  for (const child of children) if (isNode(child)) checkLiteralArguments(child);
}

function isNode(value: unknown): value is ASTNode {
  return typeof value === 'object' && value !== null && 'op' in value && 'args' in value;
}

/** cel-js messages carry a source highlight on the lines after the first. */
function firstLine(err: unknown): string {
  return String((err as Error | undefined)?.message ?? 'unknown error').split('\n')[0]!.trim();
}
