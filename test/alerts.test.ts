import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { kubernetesProblems } from './support/deploy-kubernetes-schema.js';
import { documents } from './support/manifests.js';

/**
 * Issue 16 #5: the alert rules ship as a PrometheusRule (k8s/base) and as a plain rules file
 * (alerts/), one set of groups; promtool checks them and runs their unit tests, in which every
 * alert fires once and stays silent once. test/dashboards.test.ts checks that every metric they read
 * is one hopguard exports.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const RULE = documents(readFileSync(path.join(ROOT, 'k8s/base/prometheus-rules.yaml'), 'utf8'))[0]!;
const PLAIN = documents(readFileSync(path.join(ROOT, 'alerts/hopguard.rules.yaml'), 'utf8'))[0]!;
const TESTS = documents(readFileSync(path.join(ROOT, 'alerts/hopguard.rules.test.yaml'), 'utf8'))[0]!;
const ALERTS: { alert: string; expr: string }[] = RULE.spec.groups.flatMap((g: { rules: { alert: string; expr: string }[] }) => g.rules);

function promtool(args: string[]): { code: number | null; output: string } {
  const found = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  if (found.error) {
    throw new Error('promtool is required: install Debian\'s "prometheus" package (apt-get install prometheus), which ships /usr/bin/promtool; .ci/run installs it');
  }
  const run = spawnSync('promtool', args, { cwd: path.join(ROOT, 'alerts'), encoding: 'utf8' });
  return { code: run.status, output: `${run.stdout}${run.stderr}` };
}

describe('alert rules', () => {
  it('are one set of groups: the plain rules file is the PrometheusRule\'s spec.groups', () => {
    expect(PLAIN).toEqual({ groups: RULE.spec.groups });
  });

  it('the PrometheusRule validates against the Prometheus Operator\'s schema, which catches a misspelt field', () => {
    expect(kubernetesProblems(RULE)).toEqual([]);
    const misspelt = structuredClone(RULE);
    misspelt.spec.groups[0].rules[0].annotation = {};
    expect(kubernetesProblems(misspelt)).toEqual(['PrometheusRule/hopguard: spec.groups[0].rules[0].annotation: unknown field "annotation"']);
  });

  it('promtool check rules accepts them', () => {
    const { code, output } = promtool(['check', 'rules', 'hopguard.rules.yaml']);
    expect(output).toContain(`SUCCESS: ${ALERTS.length} rules found`);
    expect(code).toBe(0);
  });

  it('promtool test rules passes, with a firing and a silent case for every alert', () => {
    const cases = TESTS.tests.flatMap((t: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }) => t.alert_rule_test);
    for (const { alert } of ALERTS) {
      const mine = cases.filter((c: { alertname: string }) => c.alertname === alert);
      expect(mine.some((c: { exp_alerts: unknown[] }) => c.exp_alerts.length > 0), `${alert} fires somewhere`).toBe(true);
      expect(mine.some((c: { exp_alerts: unknown[] }) => c.exp_alerts.length === 0), `${alert} is silent somewhere`).toBe(true);
    }
    const { code, output } = promtool(['test', 'rules', 'hopguard.rules.test.yaml']);
    expect(output).toContain('SUCCESS');
    expect(code).toBe(0);
  });
});
