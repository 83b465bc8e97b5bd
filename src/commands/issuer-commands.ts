import { parseArgs } from 'node:util';
import { loadIssuerConfigFile } from '../config/load-issuer-config.js';
import { startIssuer } from '../issuer/issuer-service.js';
import { Keyring, createKeyFile, deleteKeyFiles, keyRetention } from '../issuer/keyring.js';
import { createLogger } from '../telemetry/log.js';
import { CONFIG_OPTION, UsageError, requireOption, serveUntilSignal } from './command-line.js';

/** `hopguard issuer --config FILE`: serve until SIGTERM or SIGINT. */
export async function issuerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: CONFIG_OPTION });
  const config = loadIssuerConfigFile(requireOption(values.config, '--config FILE'));
  const log = createLogger();
  return serveUntilSignal(await startIssuer(config, { log }), log);
}

/**
 * `hopguard keys rotate --config FILE [--now]`: add the next signing key. It is published at
 * once and signs after keys.publish_ahead (or at once with --now, for a compromised key:
 * sidecars then fetch it on the first unknown kid). Keys nothing needs any more are deleted.
 */
export async function keysCommand(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action !== 'rotate') throw new UsageError('usage: hopguard keys rotate --config FILE [--now]');
  const { values } = parseArgs({ args: rest, options: { ...CONFIG_OPTION, now: { type: 'boolean' } } });
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
