import { parseArgs } from 'node:util';
import { startAuthz } from '../authz/authz-service.js';
import { loadAuthzConfigFile } from '../config/load-authz-config.js';
import { createLogger } from '../telemetry/log.js';
import { requireOption } from './usage-error.js';

const CONFIG_OPTION = { config: { type: 'string', short: 'c' } } as const;

/** `hopguard authz --config FILE`: serve until SIGTERM or SIGINT, then drain and exit 0. */
export async function authzCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: CONFIG_OPTION });
  const config = loadAuthzConfigFile(requireOption(values.config, '--config FILE'));
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

/** `hopguard check-config --config FILE`: validate without starting anything. */
export async function checkConfigCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: CONFIG_OPTION });
  const config = loadAuthzConfigFile(requireOption(values.config, '--config FILE'));
  process.stdout.write(`config ok: audience ${config.audience}, ${config.issuers.length} issuer(s), ${config.routes.length} route(s)\n`);
  return 0;
}
