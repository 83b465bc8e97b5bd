import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadPolicyData } from '../authz/authz-materials.js';
import { loadAuthzConfigFile } from '../config/load-authz-config.js';
import { loadCasesFile } from '../policy-test/cases-file.js';
import { junitXml } from '../policy-test/junit.js';
import { runCases } from '../policy-test/run-cases.js';
import { CONFIG_OPTION, UsageError, requireOption } from './command-line.js';

/**
 * `hopguard test --config authz.yaml CASES.yaml [--junit FILE]`: the cases in order against the
 * config's policy, offline. Exit 0 when all pass, 1 naming each that does not, 2 for a bad
 * config or cases file (a ConfigError, printed by cli.ts).
 */
export async function testCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { ...CONFIG_OPTION, junit: { type: 'string' } }, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('expected one cases file: hopguard test --config authz.yaml CASES.yaml');
  const casesFile = positionals[0]!;
  const config = loadAuthzConfigFile(requireOption(values.config, '--config FILE'));
  // Only the files a decision reads: the run trusts its own key, and uses no store, TLS or audit files.
  const data = loadPolicyData(config);
  const cases = loadCasesFile(casesFile);
  const results = await runCases(config, data, cases);
  for (const r of results) {
    process.stdout.write(r.passed ? `ok    ${r.name}\n` : `FAIL  ${r.name}: expected ${r.expected}, got ${r.actual}\n`);
  }
  const failed = results.filter((r) => !r.passed).length;
  process.stdout.write(`${results.length - failed} of ${results.length} cases passed\n`);
  if (values.junit !== undefined) writeFileSync(values.junit, junitXml(casesFile, results));
  return failed === 0 ? 0 : 1;
}
