import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { openAuditLog } from '../audit/audit-log.js';
import { FILE_KINDS, readConfiguredFile } from '../schema/bounded-read.js';
import { loadAuthzConfigFile } from '../config/load-authz-config.js';
import { parseDuration } from '../schema/duration.js';
import { openStore } from '../store/open-store.js';
import {
  RevocationRequestError, describeRevocation, revocationRecord, type RevocationRequest,
} from '../store/revocation-request.js';
import { StoreUnavailableError } from '../store/store.js';
import { createLogger } from '../telemetry/log.js';
import { CONFIG_OPTION, UsageError, requireOption } from './command-line.js';

/** `hopguard revoke --config FILE TARGET [--reason TEXT]`: write a revocation to the shared store. */
export async function revokeCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...CONFIG_OPTION,
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
  const config = loadAuthzConfigFile(requireOption(values.config, '--config FILE'));
  if (config.store === 'memory') {
    throw new UsageError('revoke needs a shared store: with store: memory the state lives inside one sidecar');
  }
  const request: RevocationRequest = {
    ...(values.jti !== undefined && { jti: values.jti }),
    ...(values.issuer !== undefined && { issuer: values.issuer }),
    ...(values.subject !== undefined && { subject: values.subject }),
    ...(values.client !== undefined && { client: values.client }),
    ...(values['cert-thumbprint'] !== undefined && { certThumbprint: values['cert-thumbprint'] }),
    ...(values.cert !== undefined && { certPem: readConfiguredFile(values.cert, '--cert', FILE_KINDS.certificate).toString('utf8') }),
    ...(values.for !== undefined && { forMs: durationOption(values.for) }),
    ...(values.reason !== undefined && { reason: values.reason }),
  };
  let record;
  try {
    record = revocationRecord(request, config, Date.now());
  } catch (err) {
    if (err instanceof RevocationRequestError) throw new UsageError(err.message);
    throw err;
  }
  const log = createLogger(() => undefined);
  const store = await openStore(config, log);
  // An admin action is audited where the config's audit: section says (use an admin log, or
  // stdout, rather than a running sidecar's file: one file has one writer).
  const audit = await openAuditLog(config.audit, { log });
  const target = record.revocation;
  const event = {
    event: 'revocation', revoked: target.kind, caller: `cli:${userInfo().username}`,
    ...(target.kind === 'subject' && { subject: target.value }),
    ...(target.kind === 'client' && { client: target.value }),
    ...(target.kind === 'jti' && { tokenFingerprint: target.fingerprint }),
  } as const;
  try {
    await store.revoke(record);
    audit.record({ ...event, decision: 'allow' });
  } catch (err) {
    if (err instanceof StoreUnavailableError) {
      audit.record({ ...event, decision: 'deny', code: 'state_unavailable' });
      process.stderr.write('hopguard: the shared store is unreachable; nothing was revoked\n');
      return 1;
    }
    throw err;
  } finally {
    await Promise.all([store.close(), audit.close()]);
  }
  process.stdout.write(`${describeRevocation(record, request)}\n`);
  return 0;
}

function durationOption(text: string): number {
  try {
    return parseDuration(text);
  } catch (err) {
    throw new UsageError(`--for: ${(err as Error).message}`);
  }
}
