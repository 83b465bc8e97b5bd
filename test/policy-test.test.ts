import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './support/process.js';

/**
 * `hopguard test` as an operator runs it: the built CLI on a config and a cases file. The
 * example overlay's own configs (from their ConfigMaps) with the shipped cases must pass; a
 * file with wrong expectations must fail naming each wrong case, in the console and in JUnit.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const dir = mkdtempSync(path.join(tmpdir(), 'hopguard-policy-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The authz.yaml of a ConfigMap in k8s/overlays/example, written to a file of its own. */
function exampleConfig(workload: string): string {
  const manifest = readFileSync(path.join(ROOT, 'k8s/overlays/example', `${workload}.yaml`), 'utf8');
  const configMap = parseAllDocuments(manifest).map((doc) => doc.toJS()).find((doc) => doc?.kind === 'ConfigMap' && doc.data?.['authz.yaml']);
  const file = path.join(dir, `${workload}-authz.yaml`);
  writeFileSync(file, configMap.data['authz.yaml']);
  return file;
}

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

describe('hopguard test on the example overlay', () => {
  it.each(['orders', 'payments'])('%s: every shipped case passes', async (workload) => {
    const cases = path.join(ROOT, 'examples/policy-tests', `${workload}.cases.yaml`);
    const junit = path.join(dir, `${workload}.xml`);
    const run = await runCli(['test', '--config', exampleConfig(workload), cases, '--junit', junit]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    const total = lines.filter((l) => l.startsWith('ok ')).length;
    expect(total).toBeGreaterThanOrEqual(5);
    expect(lines.at(-1)).toBe(`${total} of ${total} cases passed`);
    // The replay and the wrong peer are among them: the run keeps one store, and makes peers' certificates.
    expect(run.stdout).toMatch(/ok {4}.*replay/);
    expect(readFileSync(junit, 'utf8')).toContain(`<testsuite name="${cases}" tests="${total}" failures="0"`);
  });
});

describe('hopguard test with conditions', () => {
  const config = () => {
    write('suspended.yaml', '[globex]\n');
    write('jwks.json', '{"keys": []}');
    return write('tenants-authz.yaml', `listen: 127.0.0.1:9191
audience: spiffe://test.local/ns/shop/sa/orders
issuers:
  - issuer: https://sts.test.local
    jwks_file: jwks.json
    algorithms: [ES256]
data:
  suspended: suspended.yaml
routes:
  - name: tenant-orders
    path_prefix: /tenants/
    scopes: [orders:read]
    one_time: true
    when:
      - name: own-tenant
        cel: request.path.startsWith('/tenants/' + token.claims.tenant + '/')
      - name: active
        cel: '!(token.claims.tenant in data.suspended)'
      - name: office
        cel: request.source.address.inCidr('10.0.0.0/8')
`);
  };
  const caller = 'spiffe://test.local/ns/shop/sa/frontend';
  const cases = (expectations: string[]) => write('tenants.cases.yaml', `cases:
  - name: own tenant
    request: { path: /tenants/acme/orders, caller: ${caller}, address: 10.1.2.3 }
    token: { claims: { scope: orders:read, tenant: acme } }
    expect: ${expectations[0]}
  - name: other tenant
    request: { path: /tenants/umbrella/orders, caller: ${caller}, address: 10.1.2.3 }
    token: { claims: { scope: orders:read, tenant: acme } }
    expect: ${expectations[1]}
  - name: suspended tenant
    request: { path: /tenants/globex/orders, caller: ${caller}, address: 10.1.2.3 }
    token: { claims: { scope: orders:read, tenant: globex } }
    expect: ${expectations[2]}
  - name: outside the office
    request: { path: /tenants/acme/orders, caller: ${caller}, address: 192.0.2.1 }
    token: { claims: { scope: orders:read, tenant: acme } }
    expect: ${expectations[3]}
  - name: no tenant claim
    request: { path: /tenants/acme/orders, caller: ${caller}, address: 10.1.2.3 }
    token: { claims: { scope: orders:read, tenant: null } }
    expect: ${expectations[4]}
  - name: replay of the first
    request: { path: /tenants/acme/orders, caller: ${caller}, address: 10.1.2.3 }
    token: { reuse: own tenant }
    expect: ${expectations[5]}
`);

  it('exit 0 when every case holds', async () => {
    const run = await runCli(['test', '--config', config(), cases(['allow', 'condition_failed', 'condition_failed', 'condition_failed', 'condition_failed', 'token_replayed'])]);
    expect(run.stdout).toContain('6 of 6 cases passed');
    expect(run.code).toBe(0);
  });

  it('exit 1 naming each case that does not hold, and JUnit failures for them', async () => {
    const junit = path.join(dir, 'fail.xml');
    const run = await runCli(['test', '--config', config(), cases(['allow', 'allow', 'condition_failed', 'allow', 'condition_failed', 'allow']), '--junit', junit]);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('ok    own tenant\n');
    expect(run.stdout).toContain('FAIL  other tenant: expected allow, got condition_failed (condition own-tenant)\n');
    expect(run.stdout).toContain('FAIL  outside the office: expected allow, got condition_failed (condition office)\n');
    expect(run.stdout).toContain('FAIL  replay of the first: expected allow, got token_replayed\n');
    expect(run.stdout).toContain('3 of 6 cases passed');
    const xml = readFileSync(junit, 'utf8');
    expect(xml).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<testsuites tests="6" failures="3"/);
    expect(xml.match(/<testcase /g)).toHaveLength(6);
    expect(xml.match(/<failure /g)).toHaveLength(3);
    expect(xml).toContain('<testcase classname="');
    expect(xml).toContain('name="other tenant"');
    expect(xml).toContain('<failure message="expected allow, got condition_failed (condition own-tenant)" type="decision">');
  });

  it.each([
    ['an unknown deny code', 'cases:\n  - { name: a, request: { path: /x }, expect: no_such_code }\n', 'cases[0].expect: expected allow or a deny code'],
    ['a reuse of a later case', 'cases:\n  - { name: a, request: { path: /x }, token: { reuse: b }, expect: allow }\n  - { name: b, request: { path: /x }, expect: allow }\n',
      'cases[0].token.reuse: must name an earlier case that sent a token'],
    ['an unknown key', 'cases:\n  - { name: a, request: { path: /x, verb: GET }, expect: allow }\n', 'cases[0].request.verb: unknown key "verb"'],
    ['two cases of one name', 'cases:\n  - { name: a, request: { path: /x }, expect: allow }\n  - { name: a, request: { path: /x }, expect: allow }\n', 'cases[1].name'],
    ['no cases', 'cases: []\n', 'cases: expected at least one case'],
  ])('exit 2 for a bad cases file: %s', async (_what, text, problem) => {
    const run = await runCli(['test', '--config', config(), write('bad.cases.yaml', text)]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(problem);
    expect(run.stdout).toBe('');
  });

  it('exit 2 for a bad config, and without a cases file', async () => {
    const bad = await runCli(['test', '--config', write('bad-authz.yaml', 'listen: nowhere\n'), cases(Array(6).fill('allow'))]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('listen');
    const none = await runCli(['test', '--config', config()]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('expected one cases file');
  });
});
