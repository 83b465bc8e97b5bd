#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startAuthz } from './authz/authz-service.js';
import { ConfigError } from './config/config-error.js';
import { loadAuthzConfigFile } from './config/load-authz-config.js';
import { parseDuration } from './config/duration.js';
import { runDemo } from './demo/run-demo.js';
import { openStore } from './store/open-store.js';
import {
  RevocationRequestError, describeRevocation, revocationRecord, type RevocationRequest,
} from './store/revocation-request.js';
import { StoreUnavailableError } from './store/store.js';
import { createLogger } from './telemetry/log.js';

const HELP = `hopguard: a per-hop token authorizer for Envoy (ext_authz v3)

Usage:
  hopguard authz --config FILE          serve envoy.service.auth.v3.Authorization/Check,
                                        gRPC health, and admin HTTP (/healthz /readyz /metrics)
  hopguard check-config --config FILE   validate an authz config file and exit
  hopguard revoke --config FILE TARGET [--reason TEXT]
                                        revoke in the shared store the config names
                                        (redis); every sidecar denies within a second.
                                        TARGET is one of:
                                          --jti ID [--issuer ISS]   one token
                                          --subject SUB             every token of SUB issued until now
                                          --client ID               every token of client ID until now
                                          --cert FILE               tokens bound to this certificate (PEM)
                                          --cert-thumbprint T [--for 24h]
                                                                    tokens bound to x5t#S256 T
  hopguard demo                         a self-contained walkthrough on embedded defaults:
                                        makes a key and certificates, starts a sidecar, and
                                        sends it checks as Envoy would (needs openssl)
  hopguard --help | --version

Signals: SIGTERM or SIGINT stops accepting checks, finishes those in flight
(shutdown_grace, default 10s), and exits 0.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
Config keys, deny codes and deployment: README.md.
`;

const EXIT_USAGE = 2;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
      jti: { type: 'string' },
      issuer: { type: 'string' },
      subject: { type: 'string' },
      client: { type: 'string' },
      cert: { type: 'string' },
      'cert-thumbprint': { type: 'string' },
      for: { type: 'string' },
      reason: { type: 'string' },
    },
  });
  const [command, ...rest] = positionals;
  if (values.version) {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`hopguard ${pkg.version}\n`);
    return 0;
  }
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(HELP);
    return command === undefined && !values.help ? EXIT_USAGE : 0;
  }
  if (rest.length > 0) return usage(`unexpected argument "${rest[0]}"`);

  switch (command) {
    case 'authz':
      return serveAuthz(requireConfig(values.config));
    case 'check-config': {
      const config = loadAuthzConfigFile(requireConfig(values.config));
      process.stdout.write(`config ok: audience ${config.audience}, ${config.issuers.length} issuer(s), ${config.routes.length} route(s)\n`);
      return 0;
    }
    case 'revoke':
      return revoke(requireConfig(values.config), values);
    case 'demo':
      return runDemo((line) => process.stdout.write(`${line}\n`));
    default:
      return usage(`unknown command "${command}"`);
  }
}

async function serveAuthz(configPath: string): Promise<number> {
  const config = loadAuthzConfigFile(configPath);
  const log = createLogger();
  const running = await startAuthz(config, { log });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info('shutdown_requested', { signal });
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await running.stop();
  return 0;
}

async function revoke(configPath: string, values: Record<string, string | boolean | undefined>): Promise<number> {
  const config = loadAuthzConfigFile(configPath);
  if (config.store === 'memory') {
    throw new UsageError('revoke needs a shared store: with store: memory the state lives inside one sidecar');
  }
  const text = (key: string) => (typeof values[key] === 'string' ? (values[key] as string) : undefined);
  const request: RevocationRequest = {};
  for (const [flag, field] of [['jti', 'jti'], ['issuer', 'issuer'], ['subject', 'subject'], ['client', 'client'], ['cert-thumbprint', 'certThumbprint'], ['reason', 'reason']] as const) {
    const value = text(flag);
    if (value !== undefined) request[field] = value;
  }
  const certFile = text('cert');
  if (certFile !== undefined) request.certPem = readFileSync(certFile, 'utf8');
  const forText = text('for');
  if (forText !== undefined) {
    try {
      request.forMs = parseDuration(forText);
    } catch (err) {
      throw new UsageError(`--for: ${(err as Error).message}`);
    }
  }
  let record;
  try {
    record = revocationRecord(request, config, Date.now());
  } catch (err) {
    if (err instanceof RevocationRequestError) throw new UsageError(err.message);
    throw err;
  }
  const store = await openStore(config, createLogger(() => undefined));
  try {
    await store.revoke(record);
  } catch (err) {
    if (err instanceof StoreUnavailableError) {
      process.stderr.write('hopguard: the shared store is unreachable; nothing was revoked\n');
      return 1;
    }
    throw err;
  } finally {
    await store.close();
  }
  process.stdout.write(`${describeRevocation(record, request)}\n`);
  return 0;
}

class UsageError extends Error {}

function requireConfig(path: string | undefined): string {
  if (!path) throw new UsageError('--config FILE is required');
  return path;
}

function usage(message: string): number {
  process.stderr.write(`hopguard: ${message}\nRun "hopguard --help" for usage.\n`);
  return EXIT_USAGE;
}

// `hopguard demo | head` closes stdout early: that is the reader's choice, not a failure.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`hopguard: ${err.message}\n`);
      process.exit(EXIT_USAGE);
    }
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.exit(usage((err as Error).message));
    }
    process.stderr.write(`hopguard: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
