import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvoyClient, type CheckOutput } from '../src/authz/envoy-client.js';
import { configMapDir, logEvents, reloadConfig, reloads, replaceFile, start, stop, waitFor } from './support/config-reload.js';
import { CHECKOUT, createFixtures, type Fixtures } from './support/harness.js';
import { startOtlpHttpReceiver } from './support/otlp-receiver.js';

/**
 * Reload without restart, as an operator sees it: a real `hopguard authz` process, its config
 * file replaced (rename over it, or Kubernetes' ConfigMap symlink swap) or SIGHUP sent, checks
 * over gRPC, the JSON log and /metrics read back.
 */

let fixtures: Fixtures;

beforeAll(async () => {
  fixtures = await createFixtures();
});
afterAll(() => fixtures.cleanup());





const outcome = (out: CheckOutput) => (out.allowed ? 'allow' : out.body!.code!);

describe('config reload', () => {
  let token: string;
  const check = (envoy: EnvoyClient, path = '/orders/1', bearer = token) => envoy.check({
    path, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem, headers: { authorization: `Bearer ${bearer}` },
  });

  beforeAll(async () => {
    token = await fixtures.token({ claims: { tenant: 'acme' } });
  });

  it('applies a replaced file, keeps the old config on an invalid one, and counts both', async () => {
    writeFileSync(join(fixtures.dir, 'allowed.yaml'), '[acme]\n');
    const file = join(fixtures.dir, 'reload-authz.yaml');
    writeFileSync(file, reloadConfig(fixtures));
    const running = await start(file);
    try {
      const first = running.started.config_revision;
      expect(first).toMatch(/^[0-9a-f]{16}$/);
      expect(outcome(await check(running.envoy))).toBe('allow');

      replaceFile(file, reloadConfig(fixtures, { scope: 'orders:admin' }));
      await waitFor('the new route', async () => (outcome(await check(running.envoy)) === 'insufficient_scope' ? true : undefined), 2_000);
      const reloaded = await running.proc.logEvent('config_reloaded');
      expect(reloaded).toMatchObject({ trigger: 'file', routes: 2 });
      expect(reloaded.revision).not.toBe(first);

      // A condition that does not compile: refused whole, every problem logged, the old routes kept.
      replaceFile(file, reloadConfig(fixtures, { scope: 'orders:read' }).replace('token.claims.tenant in data.allowed', 'token.claims.tenant in') + 'bogus_key: 1\n');
      const failed = await running.proc.logEvent('config_reload_failed');
      expect(failed).toMatchObject({ trigger: 'file', problems: 2, revision: reloaded.revision });
      const problems = logEvents(running.proc, 'config_reload_problem').map((p) => `${p.key}: ${p.problem}`);
      expect(problems).toEqual([
        expect.stringMatching(/^routes\[1\]\.when\[0\]\.cel: condition "allowed-tenant" of route "tenants" does not parse/),
        'bogus_key: unknown key "bogus_key"',
      ]);
      expect(outcome(await check(running.envoy))).toBe('insufficient_scope');

      // A data file is a file the config names: changing it alone reloads.
      expect(outcome(await check(running.envoy, '/tenants/acme'))).toBe('allow');
      replaceFile(file, reloadConfig(fixtures, { scope: 'orders:admin' }));
      await waitFor('the valid config again', () => (logEvents(running.proc, 'config_reloaded').length === 2 ? true : undefined));
      replaceFile(join(fixtures.dir, 'allowed.yaml'), '[umbrella]\n');
      await waitFor('the new data', async () => (outcome(await check(running.envoy, '/tenants/acme')) === 'condition_failed' ? true : undefined), 2_000);

      // SIGHUP rereads even when nothing changed.
      running.proc.child.kill('SIGHUP');
      await waitFor('the SIGHUP reload', () => logEvents(running.proc, 'config_reloaded').find((r) => r.trigger === 'sighup'));

      const metrics = await (await fetch(`http://${running.admin}/metrics`)).text();
      expect(reloads(metrics, 'ok')).toBe(4);
      expect(reloads(metrics, 'failed')).toBe(1);
      expect(await (await fetch(`http://${running.admin}/readyz`)).json()).toMatchObject({ status: 'ready' });
    } finally {
      await stop(running);
    }
  });

  it('keeps restart-only keys and says so; audit records and spans name the revision that decided', async () => {
    writeFileSync(join(fixtures.dir, 'allowed.yaml'), '[acme]\n');
    const { privateKey } = generateKeyPairSync('ed25519');
    writeFileSync(join(fixtures.dir, 'audit-key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const auditFile = join(fixtures.dir, 'reload-audit.jsonl');
    const receiver = await startOtlpHttpReceiver();
    const audit = `audit:\n  output: ${auditFile}\n  allows: all\n  signing_key_file: ${join(fixtures.dir, 'audit-key.pem')}\n  flush_interval: 10ms\n`
      + `telemetry:\n  tracing: true\n  endpoint: ${receiver.endpoint}\n`;
    const file = join(fixtures.dir, 'restart-authz.yaml');
    writeFileSync(file, reloadConfig(fixtures, { extra: audit }));
    const running = await start(file);
    try {
      const first = running.started.config_revision;
      await check(running.envoy);
      replaceFile(file, reloadConfig(fixtures, { extra: audit.replace('flush_interval: 10ms', 'flush_interval: 20ms'), listen: '127.0.0.1:1', scope: 'orders:admin' }));
      const restart = await running.proc.logEvent('config_restart_required');
      expect(restart.keys).toBe('listen,audit');
      const { revision } = await running.proc.logEvent('config_reloaded');
      // Still serving where it started, with the new routes.
      expect(outcome(await check(running.envoy))).toBe('insufficient_scope');
      const records = await waitFor('two audit records', () => {
        const lines = readFileSync(auditFile, 'utf8').split('\n').filter((l) => l.includes('"validation"')).map((l) => JSON.parse(l));
        return lines.length >= 2 ? lines : undefined;
      });
      expect(records.map((r) => [r.decision, r.config_revision])).toEqual([['allow', first], ['deny', revision]]);
      const spans = await waitFor('two check spans', () => {
        const checks = receiver.spans.filter((span) => span.name === 'hopguard.check');
        return checks.length >= 2 ? checks : undefined;
      }, 10_000);
      expect(spans.map((span) => span.attributes['hopguard.config.revision'])).toEqual([first, revision]);
    } finally {
      await stop(running);
      await receiver.close();
    }
  });

  it('follows a ConfigMap update: the ..data symlink swapped over every file at once', async () => {
    const volume = configMapDir(join(fixtures.dir, 'configmap'), 'authz.yaml');
    writeFileSync(join(fixtures.dir, 'allowed.yaml'), '[acme]\n');
    volume.swap(reloadConfig(fixtures));
    const running = await start(volume.file);
    try {
      expect(outcome(await check(running.envoy))).toBe('allow');
      volume.swap(reloadConfig(fixtures, { scope: 'orders:admin' }));
      await waitFor('the swapped config', async () => (outcome(await check(running.envoy)) === 'insufficient_scope' ? true : undefined), 2_000);
      volume.swap(reloadConfig(fixtures));
      await waitFor('the second swap', async () => (outcome(await check(running.envoy)) === 'allow' ? true : undefined), 2_000);
    } finally {
      await stop(running);
    }
  });

  it('with workers: every worker reloads, on SIGHUP to the primary and on a file change', async () => {
    writeFileSync(join(fixtures.dir, 'allowed.yaml'), '[acme]\n');
    const file = join(fixtures.dir, 'workers-authz.yaml');
    writeFileSync(file, reloadConfig(fixtures, { extra: 'workers: 2\n' }));
    const running = await start(file);
    try {
      // Several connections, so both workers answer.
      const clients = Array.from({ length: 6 }, () => new EnvoyClient(running.started.grpc));
      const all = async () => new Set(await Promise.all(clients.map(async (c) => outcome(await check(c)))));
      expect(await all()).toEqual(new Set(['allow']));
      writeFileSync(file.replace('.yaml', '.next'), reloadConfig(fixtures, { extra: 'workers: 2\n', scope: 'orders:admin' }));
      renameSync(file.replace('.yaml', '.next'), file);
      await waitFor('both workers', () => (new Set(logEvents(running.proc, 'config_reloaded').map((r) => r.worker)).size === 2 ? true : undefined));
      expect(await all()).toEqual(new Set(['insufficient_scope']));
      running.proc.child.kill('SIGHUP');
      await waitFor('both workers on SIGHUP', () => (logEvents(running.proc, 'config_reloaded').filter((r) => r.trigger === 'sighup').length === 2 ? true : undefined));
      const metrics = await (await fetch(`http://${running.admin}/metrics`)).text();
      expect(reloads(metrics, 'ok')).toBe(4);
      for (const c of clients) c.close();
    } finally {
      await stop(running);
    }
  });
});
