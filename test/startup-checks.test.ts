import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { READ_ORDERS_ROUTES_YAML, authzYaml, createFixtures, writeConfigFile, type Fixtures } from './support/harness.js';
import { runCli, runCliMeasuringRss, spawnCli, type CliOptions } from './support/process.js';

let fixtures: Fixtures;
let dir: string;
beforeAll(async () => {
  fixtures = await createFixtures();
  dir = path.join(fixtures.dir, 'startup');
  mkdirSync(dir);
});
afterAll(() => fixtures.cleanup());

const file = (name: string) => path.join(dir, name);

function config(jwks: string, extra = ''): string {
  return `${authzYaml(fixtures, { jwks })}${extra}${READ_ORDERS_ROUTES_YAML}`;
}

/** Far below what reading /dev/zero or a 7 MB config whole took (1.5 GB, 900 MB); a CLI alone is ~90 MB. */
const MAX_RSS_MIB = 200;

/** check-config and authz on one file: both exit 2 with the same stderr, and check-config never says "config ok". */
async function bothRefuse(configFile: string, options: CliOptions = {}): Promise<string> {
  const check = await runCli(['check-config', '--config', configFile], options);
  const authz = await runCli(['authz', '--config', configFile], options);
  expect(check.stdout).toBe('');
  expect({ code: check.code, stderr: check.stderr }).toEqual({ code: 2, stderr: authz.stderr });
  expect({ code: authz.code, stdout: authz.stdout }).toEqual({ code: 2, stdout: '' });
  return check.stderr;
}

/** Every stderr line but the CLI's closing `hopguard: …` line is a JSON log line; returns that line. */
function closingLine(stderr: string): string {
  const lines = stderr.trimEnd().split('\n');
  const last = lines.pop() ?? '';
  for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
  expect(last).toMatch(/^hopguard: /);
  return last;
}

/** issuer_client with egress, the fixtures' CA and checkout's certificate unless told otherwise. */
function issuerClient(files: { ca?: string; key?: string } = {}): string {
  return `issuer_client:
  token_endpoint: https://127.0.0.1:1/token
  ca_file: ${files.ca ?? fixtures.ca.certPath}
  cert_file: ${fixtures.checkout.certPath}
  key_file: ${files.key ?? fixtures.checkout.keyPath}
egress:
  listen: 127.0.0.1:0
`;
}

function ed25519PrivateKeyFile(name: string): string {
  const { privateKey } = generateKeyPairSync('ed25519');
  writeFileSync(file(name), privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return file(name);
}

describe('check-config loads every file authz loads, and refuses what authz refuses', () => {
  const cases: { name: string; yaml: () => string; key: string; says: string }[] = [
    {
      name: 'a missing jwks_file',
      yaml: () => config(`jwks_file: ${file('missing.json')}`),
      key: 'issuers[0].jwks_file', says: 'does not exist (ENOENT)',
    },
    {
      name: 'a jwks_file that is a directory',
      yaml: () => config(`jwks_file: ${dir}`),
      key: 'issuers[0].jwks_file', says: 'is a directory, not a regular file',
    },
    {
      name: 'a jwks_file in a symbolic link loop',
      yaml: () => {
        symlinkSync(file('loop-b.json'), file('loop-a.json'));
        symlinkSync(file('loop-a.json'), file('loop-b.json'));
        return config(`jwks_file: ${file('loop-a.json')}`);
      },
      key: 'issuers[0].jwks_file', says: 'symbolic link loop (ELOOP)',
    },
    {
      name: 'a jwks_file that is not JSON',
      yaml: () => {
        writeFileSync(file('invalid.json'), '{"keys": [');
        return config(`jwks_file: ${file('invalid.json')}`);
      },
      key: 'issuers[0].jwks_file', says: 'JWKS is not valid JSON',
    },
    {
      name: 'a jwks_file holding a private key',
      yaml: () => {
        writeFileSync(file('private.json'), JSON.stringify({ keys: [{ ...fixtures.key.publicJwk, d: 'c2VjcmV0' }] }));
        return config(`jwks_file: ${file('private.json')}`);
      },
      key: 'issuers[0].jwks_file', says: 'JWKS contains private key material',
    },
    {
      name: 'a missing jwks_ca_file',
      yaml: () => config(`jwks_uri: https://127.0.0.1:1/jwks.json\n    jwks_ca_file: ${file('missing-ca.pem')}`),
      key: 'issuers[0].jwks_ca_file', says: 'does not exist (ENOENT)',
    },
    {
      name: 'a jwks_ca_file that holds no certificate',
      yaml: () => config(`jwks_uri: https://127.0.0.1:1/jwks.json\n    jwks_ca_file: ${fixtures.jwksPath}`),
      key: 'issuers[0].jwks_ca_file', says: 'is not a PEM certificate bundle',
    },
    {
      name: 'a missing audit signing key',
      yaml: () => config(`jwks_file: ${fixtures.jwksPath}`, `audit:\n  output: ${file('audit.jsonl')}\n  signing_key_file: ${file('missing.key')}\n`),
      key: 'audit.signing_key_file', says: 'does not exist (ENOENT)',
    },
    {
      name: 'a missing audit directory',
      yaml: () => config(`jwks_file: ${fixtures.jwksPath}`,
        `audit:\n  output: ${file('no-such-dir/audit.jsonl')}\n  signing_key_file: ${ed25519PrivateKeyFile('audit.key')}\n`),
      key: 'audit.output', says: 'no-such-dir does not exist: create it',
    },
    {
      name: 'a missing DPoP nonce secret',
      yaml: () => config(`jwks_file: ${fixtures.jwksPath}`, `dpop:\n  nonce: true\n  nonce_secret_file: ${file('missing.secret')}\n`),
      key: 'dpop.nonce_secret_file', says: 'does not exist (ENOENT)',
    },
    {
      name: 'a missing Redis password file',
      yaml: () => config(`jwks_file: ${fixtures.jwksPath}`, `store: redis://127.0.0.1:1\nredis:\n  password_file: ${file('missing.password')}\n`),
      key: 'redis.password_file', says: 'does not exist (ENOENT)',
    },
    {
      name: 'a missing redis.tls_ca_file',
      yaml: () => config(`jwks_file: ${fixtures.jwksPath}`, `store: rediss://127.0.0.1:1\nredis:\n  tls_ca_file: ${file('missing-redis-ca.pem')}\n`),
      key: 'redis.tls_ca_file', says: 'does not exist (ENOENT)',
    },
    {
      name: 'a missing redis.tls_key_file',
      yaml: () => config(`jwks_file: ${fixtures.jwksPath}`,
        `store: rediss://127.0.0.1:1\nredis:\n  tls_cert_file: ${fixtures.checkout.certPath}\n  tls_key_file: ${file('missing-redis.key')}\n`),
      key: 'redis.tls_key_file', says: 'does not exist (ENOENT)',
    },
    {
      name: 'a Redis client certificate with another certificate\'s key',
      yaml: () => config(`jwks_file: ${fixtures.jwksPath}`,
        `store: rediss://127.0.0.1:1\nredis:\n  tls_cert_file: ${fixtures.checkout.certPath}\n  tls_key_file: ${fixtures.stranger.keyPath}\n`),
      key: 'redis.tls_cert_file', says: 'is not a PEM certificate whose private key is redis.tls_key_file',
    },
    {
      name: 'a missing issuer_client.ca_file',
      yaml: () => config(`jwks_file: ${fixtures.jwksPath}`, issuerClient({ ca: file('missing-issuer-ca.pem') })),
      key: 'issuer_client.ca_file', says: 'does not exist (ENOENT)',
    },
    {
      name: 'an issuer_client.ca_file that holds no certificate',
      yaml: () => config(`jwks_file: ${fixtures.jwksPath}`, issuerClient({ ca: fixtures.jwksPath })),
      key: 'issuer_client.ca_file', says: 'is not a PEM certificate bundle',
    },
    {
      name: 'a missing issuer_client.key_file',
      yaml: () => config(`jwks_file: ${fixtures.jwksPath}`, issuerClient({ key: file('missing-workload.key') })),
      key: 'issuer_client.key_file', says: 'does not exist (ENOENT)',
    },
    {
      name: 'an issuer_client certificate with another certificate\'s key',
      yaml: () => config(`jwks_file: ${fixtures.jwksPath}`, issuerClient({ key: fixtures.stranger.keyPath })),
      key: 'issuer_client.cert_file', says: 'is not a PEM certificate whose private key is issuer_client.key_file',
    },
  ];

  it.each(cases)('$name: both exit 2 naming $key', async ({ name, yaml, key, says }) => {
    const configFile = writeConfigFile(fixtures, `${name.replace(/\W+/g, '-')}.yaml`, yaml());
    const stderr = await bothRefuse(configFile);
    expect(stderr).toMatch(new RegExp(`^hopguard: ${key.replace(/[[\].]/g, '\\$&')}: `));
    expect(stderr).toContain(says);
  });

  it('an unreadable jwks_file: both exit 2 naming issuers[0].jwks_file (run unprivileged: root reads any file)', async () => {
    // The fixtures' dir is private to this user; the unprivileged run needs one it can enter.
    const open = mkdtempSync(path.join(tmpdir(), 'hopguard-unreadable-'));
    try {
      chmodSync(open, 0o755);
      const jwks = path.join(open, 'jwks.json');
      writeFileSync(jwks, JSON.stringify({ keys: [fixtures.key.publicJwk] }), { mode: 0o000 });
      const configFile = path.join(open, 'authz.yaml');
      writeFileSync(configFile, config(`jwks_file: ${jwks}`), { mode: 0o644 });
      const user = process.getuid?.() === 0 ? { user: { uid: 65534, gid: 65534 } } : {};
      const stderr = await bothRefuse(configFile, user);
      expect(stderr).toBe(`hopguard: issuers[0].jwks_file: cannot read ${jwks}: permission denied: check its mode and the user hopguard runs as (EACCES)\n`);
    } finally {
      rmSync(open, { recursive: true, force: true });
    }
  });

  it('reports every file problem at once', async () => {
    const configFile = writeConfigFile(fixtures, 'two-problems.yaml',
      config(`jwks_file: ${file('missing.json')}`, `dpop:\n  nonce: true\n  nonce_secret_file: ${file('missing.secret')}\n`));
    const stderr = await bothRefuse(configFile);
    expect(stderr).toContain('issuers[0].jwks_file: ');
    expect(stderr).toContain('dpop.nonce_secret_file: ');
  });

  it('accepts a config whose every file is there, and authz starts on it', async () => {
    const secret = file('nonce.secret');
    writeFileSync(secret, 'shared-between-replicas');
    const configFile = writeConfigFile(fixtures, 'all-files.yaml', config(`jwks_file: ${fixtures.jwksPath}`,
      `dpop:\n  nonce: true\n  nonce_secret_file: ${secret}\n`
      + `audit:\n  output: ${file('audit.jsonl')}\n  signing_key_file: ${ed25519PrivateKeyFile('good-audit.key')}\n`
      + issuerClient()));
    const check = await runCli(['check-config', '--config', configFile]);
    expect({ code: check.code, stderr: check.stderr }).toEqual({ code: 0, stderr: '' });
    expect(check.stdout).toMatch(/^config ok: /);
    const proc = spawnCli(['authz', '--config', configFile]);
    try {
      await proc.logEvent('authz_started');
    } finally {
      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
    }
  });
});

describe('startup errors name their key and say what to do', () => {
  async function occupiedPort(): Promise<{ port: number; close: () => void }> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
  }

  it.each([
    { key: 'listen', yaml: (port: number) => authzYaml(fixtures, { listen: `127.0.0.1:${port}` }) },
    { key: 'admin', yaml: (port: number) => authzYaml(fixtures).replace('admin: 127.0.0.1:0', `admin: 127.0.0.1:${port}`) },
  ])('$key on a port in use: exit 1, "$key: … is already in use", and stderr is JSON lines up to that line', async ({ key, yaml }) => {
    const busy = await occupiedPort();
    try {
      const configFile = writeConfigFile(fixtures, `${key}-busy.yaml`, `${yaml(busy.port)}${READ_ORDERS_ROUTES_YAML}`);
      const { code, stderr } = await runCli(['authz', '--config', configFile]);
      expect(code).toBe(1);
      expect(closingLine(stderr)).toBe(`hopguard: ${key}: 127.0.0.1:${busy.port} is already in use (EADDRINUSE): stop what listens there, or choose another port`);
    } finally {
      busy.close();
    }
  });

  it('a unix socket in a directory that does not exist: exit 1, naming listen and the directory', async () => {
    const socketDir = file('no-socket-dir');
    const configFile = writeConfigFile(fixtures, 'socket-dir.yaml',
      `${authzYaml(fixtures, { listen: `unix:${socketDir}/authz.sock` })}${READ_ORDERS_ROUTES_YAML}`);
    const { code, stderr } = await runCli(['authz', '--config', configFile]);
    expect(code).toBe(1);
    expect(closingLine(stderr)).toBe(`hopguard: listen: cannot create the socket ${socketDir}/authz.sock: the directory ${socketDir} does not exist; create it (or mount the volume) or choose another path`);
  });
});

describe('every file read is bounded before it is read', () => {
  it('/dev/zero as the config is refused at once, in little memory', async () => {
    for (const command of ['check-config', 'authz']) {
      const { code, stderr, maxRssMiB } = await runCliMeasuringRss([command, '--config', '/dev/zero']);
      expect({ code, stderr }).toEqual({ code: 2, stderr: 'hopguard: /dev/zero: cannot read the config file: it is a character device, not a regular file\n' });
      expect(maxRssMiB).toBeLessThan(MAX_RSS_MIB);
    }
  });

  it('/dev/zero as a jwks_file is refused at once, in little memory', async () => {
    const configFile = writeConfigFile(fixtures, 'jwks-zero.yaml', config('jwks_file: /dev/zero'));
    for (const command of ['check-config', 'authz']) {
      const { code, stderr, maxRssMiB } = await runCliMeasuringRss([command, '--config', configFile]);
      expect({ code, stderr }).toEqual({ code: 2, stderr: 'hopguard: issuers[0].jwks_file: cannot read /dev/zero: it is a character device, not a regular file\n' });
      expect(maxRssMiB).toBeLessThan(MAX_RSS_MIB);
    }
  });

  it('a 7 MB config is refused with the 1 MiB limit, in little memory', async () => {
    const routes = Array.from({ length: 70_000 }, (_, i) => `  - name: route-${i}\n    methods: [GET]\n    path_prefix: /orders-${i}/\n    scopes: [orders:read]\n`);
    const configFile = writeConfigFile(fixtures, 'huge.yaml', `${authzYaml(fixtures)}routes:\n${routes.join('')}`);
    const { code, stderr, maxRssMiB } = await runCliMeasuringRss(['check-config', '--config', configFile]);
    expect({ code, stderr }).toEqual({ code: 2, stderr: `hopguard: ${configFile}: cannot read the config file: it is larger than 1 MiB, the limit for a config file\n` });
    expect(maxRssMiB).toBeLessThan(MAX_RSS_MIB);
  });

  it('a 2 MiB jwks_file is refused with the 1 MiB limit by check-config and authz alike', async () => {
    const jwks = file('huge-jwks.json');
    const padding = Array.from({ length: 4000 }, (_, i) => ({ ...fixtures.key.publicJwk, kid: `k${i}`.padEnd(500, 'x') }));
    writeFileSync(jwks, JSON.stringify({ keys: padding }));
    const stderr = await bothRefuse(writeConfigFile(fixtures, 'jwks-huge.yaml', config(`jwks_file: ${jwks}`)));
    expect(stderr).toBe(`hopguard: issuers[0].jwks_file: cannot read ${jwks}: it is larger than 1 MiB, the limit for a JWKS\n`);
  });

  it('a FIFO as a jwks_file is refused without waiting for a writer', async () => {
    const fifo = file('jwks.fifo');
    const made = spawnSync('mkfifo', [fifo]);
    expect(made.status, `mkfifo (coreutils) is needed: ${made.error?.message ?? made.stderr}`).toBe(0);
    const configFile = writeConfigFile(fixtures, 'jwks-fifo.yaml', config(`jwks_file: ${fifo}`));
    for (const command of ['check-config', 'authz']) {
      const proc = spawnCli([command, '--config', configFile]);
      // Before, opening the FIFO waited for a writer for ever.
      const killer = setTimeout(() => proc.child.kill('SIGKILL'), 10_000);
      const code = await proc.exited;
      clearTimeout(killer);
      expect({ code, stderr: proc.stderr() }).toEqual({ code: 2, stderr: `hopguard: issuers[0].jwks_file: cannot read ${fifo}: it is a FIFO, not a regular file\n` });
    }
  });

  it('inject -f /dev/zero is refused at once, in little memory', async () => {
    const { code, stderr, maxRssMiB } = await runCliMeasuringRss(['inject', '-f', '/dev/zero']);
    expect({ code, stderr }).toEqual({ code: 2, stderr: 'hopguard: -f: cannot read /dev/zero: it is a character device, not a regular file\n' });
    expect(maxRssMiB).toBeLessThan(MAX_RSS_MIB);
  });
});
