import { parseArgs } from 'node:util';
import { listenForShutdown, serveUntilSignal } from '../admin/serve-until-signal.js';
import { loadIssuerConfigFile } from '../config/load-issuer-config.js';
import { startIssuer } from '../issuer/issuer-service.js';
import { Keyring, createKeyFile, deleteKeyFiles, keyRetention } from '../issuer/keyring.js';
import { openStore } from '../store/open-store.js';
import { describeRevocation } from '../store/revocation-request.js';
import { StoreUnavailableError, type RevocationRecord } from '../store/store.js';
import { createLogger } from '../telemetry/log.js';
import { CONFIG_OPTION, UsageError, requireOption } from './command-line.js';

/** `hopguard issuer --config FILE`: serve until SIGTERM or SIGINT. */
export async function issuerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: CONFIG_OPTION });
  const config = loadIssuerConfigFile(requireOption(values.config, '--config FILE'));
  const log = createLogger();
  listenForShutdown();
  return serveUntilSignal(await startIssuer(config, { log }), log);
}

const KEYS_USAGE = 'usage: hopguard keys rotate --config FILE [--now] | hopguard keys revoke --config FILE KID [--reason TEXT]';

/** `hopguard keys rotate|revoke`: the issuer's signing keys, changed on disk; a running issuer rereads them within a second. */
export async function keysCommand(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action === 'rotate') return rotateKeys(rest);
  if (action === 'revoke') return revokeKey(rest);
  throw new UsageError(KEYS_USAGE);
}

/**
 * Adds the next signing key. It is published at once and signs after keys.publish_ahead (or at
 * once with --now, for a compromised key: sidecars then fetch it on the first unknown kid).
 * Keys nothing needs any more are deleted.
 */
async function rotateKeys(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...CONFIG_OPTION, now: { type: 'boolean' } } });
  const config = loadIssuerConfigFile(requireOption(values.config, '--config FILE'));
  const now = Date.now();
  const signsAt = values.now ? now : now + config.keys.publishAheadMs;
  const kid = await createKeyFile(config.keys.dir, config.keys.algorithm, signsAt);
  const keyring = new Keyring(config.keys.dir, keyRetention(config));
  await keyring.load();
  const pruned = keyring.expiredFiles(now);
  deleteKeyFiles(pruned);
  process.stdout.write(`added key ${kid} (${config.keys.algorithm}); published now, signs from ${new Date(signsAt).toISOString()}`
    + `${pruned.length ? `; removed ${pruned.length} expired key(s)` : ''}\n`);
  return 0;
}

/**
 * Withdraws a leaked key at once: a key revocation in the shared store (sidecars refuse every
 * token naming the key within a second, as they learn other revocations), then its file is
 * deleted (the issuer stops publishing it and refuses its refresh tokens within a second).
 * The key that signs now is refused: its successor must sign first (`keys rotate --now`).
 */
async function revokeKey(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { ...CONFIG_OPTION, reason: { type: 'string' } }, allowPositionals: true });
  const [kid, ...extra] = positionals;
  if (kid === undefined || extra.length > 0) throw new UsageError(KEYS_USAGE);
  const configFile = requireOption(values.config, '--config FILE');
  const config = loadIssuerConfigFile(configFile);
  const now = Date.now();
  const retention = keyRetention(config);
  const keyring = new Keyring(config.keys.dir, retention);
  await keyring.load();
  const key = keyring.byKid(kid);
  if (!key) throw new UsageError(`no key ${kid} in ${config.keys.dir}`);
  if (keyring.signsNow(key, now)) {
    throw new UsageError(`key ${kid} signs now, and the issuer needs a key to sign with: run `
      + `"hopguard keys rotate --config ${configFile} --now" first, then revoke ${kid}`);
  }
  // Kept until no sidecar can still hold the key: its JWKS cache is shorter than publish_ahead.
  const record: RevocationRecord = {
    revocation: { kind: 'key', issuer: config.issuer, kid },
    expiresAtMs: now + Math.max(retention.verifiedMs, config.keys.publishAheadMs + retention.publishedMs),
    ...(values.reason !== undefined && { reason: values.reason }),
  };
  const shared = config.store !== 'memory';
  if (shared) {
    const store = await openStore(config, createLogger(() => undefined));
    try {
      await store.revoke(record);
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      process.stderr.write('hopguard: the shared store is unreachable; nothing was revoked\n');
      return 1;
    } finally {
      await store.close();
    }
  }
  deleteKeyFiles([key.file]);
  process.stdout.write(`${shared
    ? `${describeRevocation(record, {})}: every sidecar on the store refuses them within a second (token_revoked)`
    : `revoked key ${kid}. store: memory: sidecars stop trusting it at their next JWKS fetch (their jwks refresh_interval); `
      + 'with a shared store (redis) they would refuse its tokens within a second'}\n`
    + `deleted ${key.file}: a running issuer stops publishing it and refuses the refresh tokens it signed within a second\n`
    + `next: copy ${config.keys.dir} wherever else it is mounted (other replicas, a Kubernetes Secret); `
    + 'clients get tokens signed by the new key on their next request\n');
  return 0;
}
