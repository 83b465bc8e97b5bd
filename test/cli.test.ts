import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvoyClient } from '../src/authz/envoy-client.js';
import { createSigningKey, type SigningKey } from '../src/devkit/signing-key.js';
import {
  AUDIENCE, CHECKOUT, ISSUER, READ_ORDERS_ROUTES_YAML, authzYaml, createFixtures, jwksServer, writeConfigFile, type Fixtures,
} from './support/harness.js';
import { grpcHealth } from './support/grpc-health.js';
import { runCli, spawnCli } from './support/process.js';

let fixtures: Fixtures;
beforeAll(async () => { fixtures = await createFixtures(); });
afterAll(() => fixtures.cleanup());



function config(listen: string, jwks: string, extra = ''): string {
  return `${authzYaml(fixtures, { listen, jwks })}${extra}${READ_ORDERS_ROUTES_YAML}`;
}

async function get(address: string, urlPath: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${address}${urlPath}`);
  return { status: res.status, body: await res.text() };
}



describe('hopguard CLI', () => {
  it('--help explains every command and exits 0', async () => {
    const { code, stdout } = await runCli(['--help']);
    expect(code).toBe(0);
    for (const command of ['authz --config', 'check-config --config', 'demo']) expect(stdout).toContain(command);
  });

  it('a missing command or an unknown one is a usage error (exit 2)', async () => {
    expect((await runCli([])).code).toBe(2);
    const unknown = await runCli(['serve']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "serve"');
    expect((await runCli(['authz'])).stderr).toContain('--config FILE is required');
  });

  it('check-config accepts a good file', async () => {
    const file = writeConfigFile(fixtures, 'good.yaml', config('127.0.0.1:0', `jwks_file: ${fixtures.jwksPath}`));
    const { code, stdout } = await runCli(['check-config', '--config', file]);
    expect(code).toBe(0);
    expect(stdout).toContain(`audience ${AUDIENCE}`);
  });

  it('check-config and authz refuse a bad file, naming the key, and nothing starts', async () => {
    const file = writeConfigFile(fixtures, 'bad.yaml', config('127.0.0.1:0', `jwks_file: ${fixtures.jwksPath}`).replace('[ES256]', '[ES256, HS256]'));
    for (const command of ['check-config', 'authz']) {
      const { code, stderr } = await runCli([command, '--config', file]);
      expect(code).toBe(2);
      expect(stderr).toContain('issuers[0].algorithms[1]');
      expect(stderr).toContain('HS256');
      expect(stderr).not.toContain('authz_started');
    }
  });

  it('authz refuses to start when its jwks_file cannot be read: a configuration error, naming the key', async () => {
    const file = writeConfigFile(fixtures, 'nokeys.yaml', config('127.0.0.1:0', `jwks_file: ${fixtures.dir}/missing.json`));
    const { code, stderr } = await runCli(['authz', '--config', file]);
    expect(code).toBe(2);
    expect(stderr).toContain('issuers[0].jwks_file: ');
  });
});

describe('hopguard authz, as a process', () => {
  it('serves on a unix socket, reports health, counts decisions, and drains in-flight checks on SIGTERM', async () => {
    const slowKey = await createSigningKey('ES256', 'slow-kid');
    let published: SigningKey[] = [fixtures.key];
    const jwks = await jwksServer(() => published);
    const socket = path.join(fixtures.dir, 'authz.sock');
    const file = writeConfigFile(fixtures, 'unix.yaml', config(`unix:${socket}`, `jwks_uri: ${jwks.url}`, 'jwks:\n  refetch_interval: 1ms\n  check_wait: 500ms\n'));
    const proc = spawnCli(['authz', '--config', file]);
    try {
      const started = await proc.logEvent('authz_started');
      expect(started.grpc).toBe(`unix:${socket}`);
      expect((await get(started.admin, '/healthz')).status).toBe(200);
      expect((await get(started.admin, '/readyz')).status).toBe(200);
      expect(await grpcHealth(started.grpc)).toBe('SERVING');

      const envoy = new EnvoyClient(started.grpc);
      const request = async (token: string) => envoy.check({
        path: '/orders/1', headers: { authorization: `Bearer ${token}` }, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem,
      });
      expect((await request(await fixtures.token())).allowed).toBe(true);
      const metrics = (await get(started.admin, '/metrics')).body;
      expect(metrics).toMatch(/hopguard_decisions_total\{[^}]*code="allowed"[^}]*\} 1/);

      // A token under a new kid makes hopguard refetch the JWKS, which now answers slowly:
      // that check is in flight when SIGTERM arrives, and must still be answered.
      // Slow, but within check_wait (a check waits no longer on a refetch).
      jwks.state.delayMs = 300;
      published = [fixtures.key, slowKey];
      const inFlight = request(await fixtures.token({}, slowKey));
      await new Promise((r) => setTimeout(r, 100));
      proc.child.kill('SIGTERM');
      expect((await inFlight).allowed).toBe(true);
      expect(await proc.exited).toBe(0);
      await expect(request(await fixtures.token())).rejects.toThrow();
      envoy.close();
      expect(proc.stderr()).toContain('"event":"authz_stopped"');
    } finally {
      proc.child.kill('SIGKILL');
      jwks.close();
    }
  });

  it('starts unready while its jwks_uri is down, and becomes ready when the issuer appears', async () => {
    const jwks = await jwksServer(() => [fixtures.key]);
    const { url } = jwks;
    jwks.close();
    await new Promise((r) => setTimeout(r, 50));
    const file = writeConfigFile(fixtures, 'late.yaml', config('127.0.0.1:0', `jwks_uri: ${url}`, 'jwks:\n  refetch_interval: 200ms\n  fetch_timeout: 500ms\n'));
    const proc = spawnCli(['authz', '--config', file]);
    let revived: http.Server | undefined;
    try {
      const started = await proc.logEvent('authz_started');
      const notReady = await get(started.admin, '/readyz');
      expect(notReady.status).toBe(503);
      expect(notReady.body).toContain(`keys not loaded for issuer ${ISSUER}`);
      expect(await grpcHealth(started.grpc)).toBe('NOT_SERVING');

      const port = Number(new URL(url).port);
      revived = http.createServer((_q, res) => res.end(JSON.stringify({ keys: [fixtures.key.publicJwk] })));
      await new Promise<void>((r) => revived!.listen(port, '127.0.0.1', () => r()));
      const deadline = Date.now() + 5000;
      while ((await get(started.admin, '/readyz')).status !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect((await get(started.admin, '/readyz')).status).toBe(200);
    } finally {
      proc.child.kill('SIGTERM');
      await proc.exited;
      revived?.close();
    }
  });

  it('a SIGTERM while it is still starting drains and exits 0 once started, not killed mid-start', async () => {
    // A Redis that is not there holds startup for about 4 × command_timeout, after the first log line.
    const file = writeConfigFile(fixtures, 'sigterm-starting.yaml', config('127.0.0.1:0', `jwks_file: ${fixtures.jwksPath}`,
      'store: redis://127.0.0.1:1\nredis:\n  key_prefix: "hopguard-test-sigterm:"\n  command_timeout: 1s\n'));
    const proc = spawnCli(['authz', '--config', file]);
    await proc.logEvent('revocation_feed_lost');
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(proc.stderr()).toContain('"event":"shutdown_requested"');
  });

  it('refetches keys on an unknown kid at most once per refetch interval', async () => {
    const jwks = await jwksServer(() => [fixtures.key]);
    const file = writeConfigFile(fixtures, 'ratelimit.yaml', config('127.0.0.1:0', `jwks_uri: ${jwks.url}`, 'jwks:\n  refetch_interval: 1h\n'));
    const proc = spawnCli(['authz', '--config', file]);
    try {
      const started = await proc.logEvent('authz_started');
      const envoy = new EnvoyClient(started.grpc);
      const afterStart = jwks.state.requests;
      const token = await fixtures.token({ header: { kid: 'unknown' } });
      const check = async () => (await envoy.check({
        path: '/orders/1', headers: { authorization: `Bearer ${token}` }, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem,
      })).body?.code;
      expect(await check()).toBe('unknown_key');
      // The kid is looked for once (as soon as the 1 s fetch floor allows), then not within the hour.
      await expect.poll(() => jwks.state.requests - afterStart, { timeout: 5_000 }).toBe(1);
      for (let i = 0; i < 5; i++) expect(await check()).toBe('unknown_key');
      envoy.close();
      expect(jwks.state.requests - afterStart).toBe(1);
    } finally {
      proc.child.kill('SIGTERM');
      await proc.exited;
      jwks.close();
    }
  });
});
