import { ConfigError, type ConfigProblem } from '../../src/schema/config-error.js';

/** The problems a config parser names for `yaml`; fails the test when it accepts it. */
export function configProblems(parse: (yaml: string) => unknown, yaml: string): ConfigProblem[] {
  try {
    parse(yaml);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}
