/**
 * The issuer's `signals:` section: the Shared Signals transmitters whose Security Event Tokens
 * POST /ssf/events accepts. A transmitter's keys are configured as a trusted issuer's are
 * (jwks_file or jwks_uri + jwks_ca_file, asymmetric algorithms only).
 */

import { z } from 'zod';
import { audience, duration, expected, onLists, onObjects, uniqueBy } from '../schema/config-schema.js';
import type { SignalsConfig } from '../vocabulary/signals-config.js';
import { checkKeySource, trustedIssuerConfig, trustedIssuerFields } from './load-authz-config.js';

const { max_ttl: _notForSets, ...keyFields } = trustedIssuerFields;

function transmitterSchema(baseDir: string) {
  return z
    .strictObject(
      { ...keyFields, audience: audience.optional() },
      expected('a mapping with issuer, jwks_file or jwks_uri, and algorithms'),
    )
    .superRefine((raw, ctx) => checkKeySource({ ...raw, max_ttl: 0 }, ctx), onObjects)
    .transform((raw) => {
      const { maxTtlMs: _unused, ...keys } = trustedIssuerConfig({ ...raw, max_ttl: 0 }, baseDir);
      return { ...keys, audience: raw.audience };
    });
}

/** `issuer` is this issuer's `iss`: a transmitter's SETs must name it in `aud` unless `audience` says otherwise. */
export function signalsSchema(baseDir: string) {
  return z
    .strictObject(
      {
        transmitters: z.array(transmitterSchema(baseDir), expected('a list of transmitters'))
          .superRefine(uniqueBy('transmitters', 'issuer'), onLists).default([]),
        max_age: duration.refine((ms) => ms >= 60_000 && ms <= 24 * 3600_000, 'must be between 1m and 24h').prefault('10m'),
      },
      expected('a mapping with transmitters'),
    );
}

export function signalsConfig(raw: z.output<ReturnType<typeof signalsSchema>>, issuer: string): SignalsConfig {
  return {
    transmitters: raw.transmitters.map((t) => ({ ...t, audience: t.audience ?? issuer })),
    maxAgeMs: raw.max_age,
  };
}
