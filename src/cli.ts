#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { UsageError } from './commands/command-line.js';
import { ConfigError } from './schema/config-error.js';

const HELP = `hopguard: a per-hop token authorizer for Envoy (ext_authz v3)

Usage:
  hopguard authz --config FILE          serve envoy.service.auth.v3.Authorization/Check,
                                        gRPC health, and admin HTTP (/healthz /readyz /metrics)
  hopguard check-config --config FILE   validate an authz config file and load every file it
                                        names, as authz does at start; then exit
  hopguard test --config FILE CASES [--junit OUT]
                                        run the decision tests in CASES (YAML) against the
                                        config's routes, conditions and data, offline, in
                                        order, on one in-memory store; exit 0 when all pass,
                                        1 naming each failing case, 2 for a bad file
                                        (--junit: also write JUnit XML to OUT)
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
  hopguard issuer --config FILE         serve the token issuer over HTTPS with mTLS client auth:
                                        POST /token (client_credentials, token exchange,
                                        refresh_token), POST /revoke, JWKS and RFC 8414 metadata
  hopguard keys rotate --config FILE [--now]
                                        add the issuer's next signing key: published now,
                                        signing after keys.publish_ahead (--now: at once)
  hopguard keys revoke --config FILE KID [--reason TEXT]
                                        withdraw a leaked key at once: every sidecar on the
                                        shared store refuses its tokens within a second, the
                                        issuer unpublishes it and refuses its refresh tokens;
                                        run keys rotate --now first if KID signs now
  hopguard inject --config FILE         serve the sidecar injector: a Kubernetes mutating
                                        admission webhook (HTTPS POST /mutate) adding Envoy
                                        and hopguard authz to pods annotated
                                        hopguard.dev/inject: "true"; and POST /decommission,
                                        the validating webhook for ServiceAccount DELETE that
                                        revokes the workload's tokens in the config's store
  hopguard inject -f FILE [--config FILE] [--namespace NS]
                                        the same offline: print FILE's manifests with the
                                        sidecars added (FILE - reads stdin)
  hopguard audit verify FILE --key PUB [--key PUB...] [--head H] [--writer W] [--live]
                                        check an audit log's hash chain, runs and signed
                                        checkpoints with public keys only, and print its
                                        head; exit 1, naming the lines, if a record was
                                        edited, deleted, inserted, reordered or cut off,
                                        another log's run spliced in, the log does not
                                        hold the head H anchored earlier, or a run is not
                                        W's (--live: its writer is still running;
                                        --allow-legacy: accept lines without runs)
  hopguard demo                         a self-contained walkthrough on embedded defaults:
                                        makes a key and certificates, starts a sidecar, and
                                        sends it checks as Envoy would (needs openssl)
  hopguard --help | --version

Signals: SIGTERM or SIGINT stops accepting checks, finishes those in flight
(shutdown_grace, default 10s), and exits 0. SIGHUP makes authz reread its config
and the files it names (it also does so when they change); an invalid config is
logged and the running one kept.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
Config keys, deny codes and deployment: README.md.
`;

/**
 * Each command parses its own flags: adding one is a module and a line here. Imported when
 * run, so a sidecar's startup loads only what `authz` needs (the issuer, injector, demo and
 * their dependencies cost ~100 ms more to load).
 */
const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  authz: async (argv) => (await import('./commands/authz-commands.js')).authzCommand(argv),
  'check-config': async (argv) => (await import('./commands/authz-commands.js')).checkConfigCommand(argv),
  test: async (argv) => (await import('./commands/test-command.js')).testCommand(argv),
  revoke: async (argv) => (await import('./commands/revoke-command.js')).revokeCommand(argv),
  issuer: async (argv) => (await import('./commands/issuer-commands.js')).issuerCommand(argv),
  keys: async (argv) => (await import('./commands/issuer-commands.js')).keysCommand(argv),
  inject: async (argv) => (await import('./commands/inject-command.js')).injectCommand(argv),
  audit: async (argv) => (await import('./commands/audit-command.js')).auditCommand(argv),
  demo: async () => (await import('./demo/run-demo.js')).runDemo((line) => process.stdout.write(`${line}\n`)),
};

const EXIT_USAGE = 2;

async function main([command, ...rest]: string[]): Promise<number> {
  if (command === '--version') {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`hopguard ${pkg.version}\n`);
    return 0;
  }
  if (command === undefined || command === '--help' || command === '-h' || command === 'help' || rest.includes('--help')) {
    process.stdout.write(HELP);
    return command === undefined ? EXIT_USAGE : 0;
  }
  const run = COMMANDS[command];
  if (!run) throw new UsageError(`unknown command "${command}"`);
  return run(rest);
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
      process.stderr.write(`hopguard: ${(err as Error).message}\nRun "hopguard --help" for usage.\n`);
      process.exit(EXIT_USAGE);
    }
    process.stderr.write(`hopguard: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
