#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startAuthz } from './authz/authz-service.js';
import { ConfigError } from './config/config-error.js';
import { loadAuthzConfigFile } from './config/load-authz-config.js';
import { runDemo } from './demo/run-demo.js';
import { createLogger } from './telemetry/log.js';

const HELP = `hopguard: a per-hop token authorizer for Envoy (ext_authz v3)

Usage:
  hopguard authz --config FILE          serve envoy.service.auth.v3.Authorization/Check,
                                        gRPC health, and admin HTTP (/healthz /readyz /metrics)
  hopguard check-config --config FILE   validate an authz config file and exit
  hopguard demo                         a self-contained walkthrough on embedded defaults:
                                        makes a key and certificates, starts a sidecar, and
                                        sends it checks as Envoy would (needs openssl)
  hopguard --help | --version

Signals: SIGTERM or SIGINT stops accepting checks, finishes those in flight
(shutdown_grace, default 10s), and exits 0.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
Docs: README.md; config keys and deny codes: docs in README.md.
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

class UsageError extends Error {}

function requireConfig(path: string | undefined): string {
  if (!path) throw new UsageError('--config FILE is required');
  return path;
}

function usage(message: string): number {
  process.stderr.write(`hopguard: ${message}\nRun "hopguard --help" for usage.\n`);
  return EXIT_USAGE;
}

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
