// A route's `when:` condition as the decision pipeline runs it (compiled in src/policy).

/** The named files under `data:`, parsed, by name. */
export type PolicyData = Readonly<Record<string, unknown>>;

/** What a condition sees (src/policy/condition-variables.ts builds it). */
export interface ConditionVariables {
  request: Readonly<Record<string, unknown>>;
  token: Readonly<Record<string, unknown>>;
  now: Date;
  data: PolicyData;
}

export interface RouteCondition {
  /** Named in the denial, span, metric and audit record; never a value it looked at. */
  readonly name: string;
  /** The expression as written. */
  readonly cel: string;
  /** True when the condition holds; anything else, or a throw, fails it. */
  readonly evaluate: (variables: ConditionVariables) => unknown;
}
