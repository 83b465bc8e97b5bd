import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTrustDomain } from '../src/devkit/trust-domain.js';
import { kubernetesProblems } from './support/deploy-kubernetes-schema.js';
import { mountSidecarSecrets, sidecarConfigAt } from './support/pod-mounts.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const DOCKERFILE = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const LINTER = path.join(ROOT, 'node_modules/.bin/dockerfile-utils');

function lint(file: string): string {
  return execFileSync(LINTER, ['lint', file], { encoding: 'utf8' });
}

/** Instructions with continuation lines joined, comments dropped. */
const INSTRUCTIONS = DOCKERFILE.replace(/\\\n/g, ' ').split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#'));
const stages = INSTRUCTIONS.reduce<string[][]>((all, line) => {
  if (line.startsWith('FROM ')) all.push([]);
  all.at(-1)!.push(line);
  return all;
}, []);
const finalStage = stages.at(-1)!;

describe('Dockerfile', () => {
  it('passes the Dockerfile linter (dockerfile-utils)', () => {
    expect(lint(path.join(ROOT, 'Dockerfile'))).toBe('');
  });

  it('the linter does flag a broken Dockerfile', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hopguard-dockerfile-'));
    try {
      writeFileSync(path.join(dir, 'Dockerfile'), `${DOCKERFILE}\nHEALTHCHECK CMD ["true"]\nmaintainer someone\n`);
      const output = lint(path.join(dir, 'Dockerfile'));
      expect(output).toMatch(/There can only be one HEALTHCHECK instruction/);
      expect(output).toMatch(/Instructions should be written in uppercase letters/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('builds in one stage and ships only production dependencies from another', () => {
    expect(stages.map((stage) => stage[0])).toEqual([
      'FROM node:20.20-bookworm-slim AS build',
      'FROM node:20.20-bookworm-slim AS prod-deps',
      'FROM node:20.20-bookworm-slim',
    ]);
    expect(stages[1]).toContain('RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund');
    expect(finalStage).toContain('COPY --from=prod-deps /app/node_modules ./node_modules');
    expect(finalStage).toContain('COPY --from=build /src/dist ./dist');
    expect(finalStage.filter((line) => line.startsWith('RUN '))).toEqual([]);
  });

  it('runs as a numeric non-root user, with a health check, one entrypoint for every command', () => {
    expect(finalStage).toContain('USER 10001:10001');
    expect(finalStage.find((line) => line.startsWith('HEALTHCHECK '))).toMatch(/fetch\(process\.env\.HOPGUARD_HEALTH_URL\)/);
    expect(finalStage).toContain('ENTRYPOINT ["node", "/app/dist/cli.js"]');
  });

  it('.dockerignore lets in exactly what the COPY instructions take from the build context', () => {
    const allowed = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n')
      .filter((line) => line.startsWith('!')).map((line) => line.slice(1).replace(/\/$/, ''));
    const copied = INSTRUCTIONS.filter((line) => line.startsWith('COPY ') && !line.includes('--from='))
      .flatMap((line) => line.split(/\s+/).slice(1, -1)).map((source) => source.replace(/\/$/, ''));
    expect([...new Set(copied)].sort()).toEqual([...allowed].sort());
    for (const source of copied) expect(existsSync(path.join(ROOT, source)), source).toBe(true);
    expect(readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')).toMatch(/^\*$/m);
  });
});

/**
 * No Docker engine here: this lays out the final stage as the Dockerfile would (dist, the
 * production node_modules from `npm ci --omit=dev`, envoy/), makes it read-only, and runs the
 * CLI from it as an unprivileged user (nobody, when the tests run as root, since root ignores
 * file modes): a dependency needed at run time but listed for development, or a write to the
 * filesystem, fails here.
 */
const UNPRIVILEGED = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};

describe('the image layout, without Docker', () => {
  let app: string;
  const run = (...args: string[]) =>
    execFileSync(process.execPath, [path.join(app, 'dist/cli.js'), ...args], { encoding: 'utf8', cwd: app, ...UNPRIVILEGED });

  beforeAll(() => {
    app = mkdtempSync(path.join(tmpdir(), 'hopguard-image-'));
    for (const file of ['package.json', 'package-lock.json']) cpSync(path.join(ROOT, file), path.join(app, file));
    execFileSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: app, stdio: 'ignore' });
    cpSync(path.join(ROOT, 'dist'), path.join(app, 'dist'), { recursive: true });
    cpSync(path.join(ROOT, 'envoy'), path.join(app, 'envoy'), { recursive: true });
    // The input too, so the unprivileged user needs no access to the checkout.
    cpSync(path.join(ROOT, 'k8s/overlays/example/orders.yaml'), path.join(app, 'orders.yaml'));
    makeReadOnly(app);
  }, 180_000);
  afterAll(() => {
    if (app) {
      execFileSync('chmod', ['-R', 'u+w', app]);
      rmSync(app, { recursive: true, force: true });
    }
  });

  it('has Envoy\'s protos and no development dependency', () => {
    expect(existsSync(path.join(app, 'node_modules/@grpc/grpc-js-xds/deps/envoy-api/envoy/service/auth/v3/external_auth.proto'))).toBe(true);
    const installed = readdirSync(path.join(app, 'node_modules'));
    for (const dev of ['vitest', 'typescript', 'kubernetes-models', 'dockerfile-utils']) expect(installed).not.toContain(dev);
  });

  it('runs hopguard inject -f with the envoy/ template it ships', () => {
    const out = parseAllDocuments(run('inject', '-f', 'orders.yaml')).map((doc) => doc.toJS());
    const deployment = out.find((doc) => doc.kind === 'Deployment');
    const { initContainers, containers } = deployment.spec.template.spec;
    expect([...initContainers, ...containers].map((c: { name: string }) => c.name)).toEqual(['hopguard-envoy', 'hopguard-authz', 'orders']);
    expect(out.flatMap(kubernetesProblems)).toEqual([]);
  });

  it('runs hopguard check-config on the example\'s authz config, which checks the files its pod mounts', async () => {
    const configMap = parseAllDocuments(readFileSync(path.join(ROOT, 'k8s/overlays/example/orders.yaml'), 'utf8'))
      .map((doc) => doc.toJS()).find((doc) => doc.kind === 'ConfigMap');
    const mesh = await createTrustDomain('image-config', { orders: 'spiffe://cluster.local/ns/shop/sa/orders' });
    chmodSync(mesh.dir, 0o755);
    try {
      // The Secrets the pod mounts under /etc/hopguard/, here under the temp dir.
      const mounts = path.join(mesh.dir, 'etc-hopguard');
      const config = path.join(mesh.dir, 'authz.yaml');
      writeFileSync(config, sidecarConfigAt(mounts, configMap.data['authz.yaml']));
      const unmounted = spawnSync(process.execPath, [path.join(app, 'dist/cli.js'), 'check-config', '--config', config], { encoding: 'utf8', cwd: app, ...UNPRIVILEGED });
      expect({ status: unmounted.status, stdout: unmounted.stdout }).toEqual({ status: 2, stdout: '' });
      expect(unmounted.stderr).toContain(`hopguard: issuers[0].jwks_ca_file: cannot read ${mounts}/tls/ca.crt: it does not exist (ENOENT)`);

      mountSidecarSecrets(mounts, mesh.ca, mesh.workloads.orders);
      expect(run('check-config', '--config', config)).toMatch(/^config ok: audience spiffe:\/\/cluster\.local\/ns\/shop\/sa\/orders/);
    } finally {
      mesh.cleanup();
    }
  });

  it('serves hopguard authz, and the HEALTHCHECK command reports it healthy, then unhealthy once it stops', async () => {
    const mesh = await createTrustDomain('image', { orders: 'spiffe://test.local/ns/shop/sa/orders' });
    chmodSync(mesh.dir, 0o755);
    const config = path.join(mesh.dir, 'authz.yaml');
    writeFileSync(config, [
      'listen: 127.0.0.1:0', 'admin: 127.0.0.1:0', 'audience: spiffe://test.local/ns/shop/sa/orders',
      `issuers: [{ issuer: https://sts.test.local, jwks_file: ${mesh.jwksPath}, algorithms: [ES256] }]`,
      'routes: [{ name: all, path_prefix: / }]', '',
    ].join('\n'));
    const child = spawn(process.execPath, [path.join(app, 'dist/cli.js'), 'authz', '--config', config], { cwd: app, stdio: ['ignore', 'ignore', 'pipe'], ...UNPRIVILEGED });
    try {
      const started = await firstLogLine(child, 'authz_started');
      const healthUrl = `http://${started.admin}/healthz`;
      expect(healthcheck(healthUrl)).toBe(0);
      child.kill('SIGTERM');
      await once(child, 'exit');
      expect(healthcheck(healthUrl)).toBe(1);
    } finally {
      child.kill('SIGKILL');
      mesh.cleanup();
    }
  });
});

/** The final stage's HEALTHCHECK command, run as Docker would, against `url`; its exit code. */
function healthcheck(url: string): number {
  const json = /HEALTHCHECK .*? CMD (\[.*\])$/.exec(finalStage.find((line) => line.startsWith('HEALTHCHECK '))!)![1]!;
  const [command, ...args] = JSON.parse(json) as string[];
  expect(command).toBe('node');
  return spawnSync(process.execPath, args, { env: { ...process.env, HOPGUARD_HEALTH_URL: url }, ...UNPRIVILEGED }).status ?? -1;
}

async function firstLogLine(child: ChildProcess, event: string): Promise<Record<string, string>> {
  let text = '';
  for await (const chunk of child.stderr!) {
    text += String(chunk);
    const line = text.split('\n').find((l) => l.includes(`"event":"${event}"`));
    if (line !== undefined) return JSON.parse(line) as Record<string, string>;
  }
  throw new Error(`no ${event} log line; stderr: ${text}`);
}

function makeReadOnly(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isSymbolicLink()) chmodSync(path.join(entry.parentPath, entry.name), entry.isDirectory() ? 0o555 : 0o444);
  }
  chmodSync(dir, 0o555);
}
