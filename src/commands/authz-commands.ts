import { parseArgs } from 'node:util';
import { loadAuthzMaterials } from '../authz/authz-materials.js';
import { serveAuthz } from '../authz/authz-workers.js';
import { loadAuthzConfigFile } from '../config/load-authz-config.js';
import { createLogger } from '../telemetry/log.js';
import { CONFIG_OPTION, requireOption } from './command-line.js';

/** `hopguard authz --config FILE`: serve (in `workers` processes) until SIGTERM or SIGINT, then drain and exit 0. */
export async function authzCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: CONFIG_OPTION });
  const configFile = requireOption(values.config, '--config FILE');
  return serveAuthz(loadAuthzConfigFile(configFile), createLogger(), configFile);
}

/**
 * `hopguard check-config --config FILE`: validate the file and load every file it names, as
 * `authz` does at start (the same function), without listening or connecting to anything.
 */
export async function checkConfigCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: CONFIG_OPTION });
  const config = loadAuthzConfigFile(requireOption(values.config, '--config FILE'));
  loadAuthzMaterials(config);
  process.stdout.write(`config ok: audience ${config.audience}, ${config.issuers.length} issuer(s), ${config.routes.length} route(s)\n`);
  return 0;
}
