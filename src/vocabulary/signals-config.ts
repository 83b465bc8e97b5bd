// The issuer's `signals:` section (design "Continuous access evaluation"): who may push SETs.
import type { IssuerConfig as TrustedIssuerConfig } from './trusted-issuer.js';

/** A Shared Signals transmitter: its SETs' `iss`, where its keys are, and the `aud` they must carry. */
export interface TransmitterConfig extends Omit<TrustedIssuerConfig, 'maxTtlMs'> {
  audience: string;
}

export interface SignalsConfig {
  transmitters: TransmitterConfig[];
  /** A SET whose `iat` is older than this is refused (and its jti is remembered this long). */
  maxAgeMs: number;
}
