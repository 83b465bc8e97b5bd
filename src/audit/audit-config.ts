/**
 * The `audit:` section, shared by every hopguard config file (authz, issuer). Off by default;
 * when on, a signing key is required: a log without signed checkpoints proves nothing to
 * someone who can rewrite the whole file.
 */

import { resolve } from 'node:path';
import { z } from 'zod';
import { expected, nonEmptyString, onObjects, parsedString, positiveDuration } from '../schema/config-schema.js';

export type AuditOutput = { kind: 'stdout' } | { kind: 'file'; path: string };

export interface AuditConfig {
  /** undefined: no audit log. */
  output?: AuditOutput;
  /** Which allows are recorded; every denial and every issuer event always is. */
  allows: 'none' | 'all' | 'sampled';
  /** With `allows: sampled`: the share of traces whose allows are recorded, from 0 to 1. */
  allowSampleRate: number;
  /** Who writes this log, named in each run (audit-run.ts); undefined: the host name. */
  writer?: string;
  /** Ed25519 private key (PKCS#8 PEM) that signs checkpoints. */
  signingKeyFile?: string;
  /** A signed checkpoint after this many records… */
  checkpointRecords: number;
  /** …or this long after the last one, whichever comes first. */
  checkpointIntervalMs: number;
  /** Records wait in memory at most this long before they are written: the loss window of a crash. */
  flushIntervalMs: number;
}

const ALLOWS = ['none', 'all', 'sampled'] as const;

function parseAllows(text: string): AuditConfig['allows'] {
  const allows = ALLOWS.find((a) => a === text);
  if (!allows) throw new Error(`expected ${ALLOWS.join(', ')}`);
  return allows;
}

function auditRules(raw: Record<string, unknown>, ctx: z.RefinementCtx) {
  if (raw.output !== undefined && raw.output !== 'off' && raw.signing_key_file === undefined) {
    ctx.addIssue({ code: 'custom', path: ['signing_key_file'], message: 'is required when audit output is on (an Ed25519 private key, PEM)' });
  }
  if (raw.allow_sample_rate !== undefined && raw.allows !== 'sampled') {
    ctx.addIssue({ code: 'custom', path: ['allow_sample_rate'], message: 'applies only with allows: sampled' });
  }
}

export function auditSchema(baseDir: string) {
  const file = nonEmptyString.transform((f) => resolve(baseDir, f));
  return z
    .strictObject(
      {
        output: parsedString('"off", "stdout" or a file path', (text): AuditOutput | undefined => {
          if (text === 'off') return undefined;
          if (text === 'stdout') return { kind: 'stdout' };
          if (text === '') throw new Error('expected "off", "stdout" or a file path');
          return { kind: 'file', path: resolve(baseDir, text) };
        }).prefault('off'),
        allows: parsedString(ALLOWS.join(' or '), parseAllows).prefault('none'),
        allow_sample_rate: z.number(expected('a number from 0 to 1')).gt(0, 'must be above 0').max(1, 'must be at most 1').optional(),
        writer: nonEmptyString.optional(),
        signing_key_file: file.optional(),
        checkpoint_records: z.int(expected('a whole number')).min(1, 'must be at least 1').default(1000),
        checkpoint_interval: positiveDuration.prefault('10s'),
        flush_interval: positiveDuration.prefault('250ms'),
      },
      expected('a mapping'),
    )
    .superRefine(auditRules, onObjects)
    .transform((raw): AuditConfig => ({
      ...(raw.output !== undefined && { output: raw.output }),
      allows: raw.allows,
      allowSampleRate: raw.allow_sample_rate ?? 0.01,
      ...(raw.writer !== undefined && { writer: raw.writer }),
      ...(raw.signing_key_file !== undefined && { signingKeyFile: raw.signing_key_file }),
      checkpointRecords: raw.checkpoint_records,
      checkpointIntervalMs: raw.checkpoint_interval,
      flushIntervalMs: raw.flush_interval,
    }));
}

/** What an absent `audit:` section means: no audit log. */
export const AUDIT_DEFAULTS: AuditConfig = auditSchema('/').parse({});
