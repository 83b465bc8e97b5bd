import type { Logger } from '../telemetry/log.js';
import type { TrustedIssuer } from './access-token-verifier.js';

/** A trusted issuer, or any party whose keys are loaded the same way (a signals transmitter). */
type KeyedParty = Pick<TrustedIssuer, 'keys'> & { config: Pick<TrustedIssuer['config'], 'issuer' | 'jwksFile'> };

/**
 * A key file that cannot be read is a deployment error: refuse to start. A JWKS URL may be
 * briefly unreachable (the issuer starting alongside): start unready and keep trying.
 */
export async function loadIssuerKeys(issuer: KeyedParty, retryMs: number, log: Logger): Promise<void> {
  try {
    await issuer.keys.start();
  } catch (err) {
    if (issuer.config.jwksFile !== undefined) throw err;
    log.warn('jwks_not_loaded_yet', { issuer: issuer.config.issuer, retry_ms: retryMs });
    setTimeout(() => void loadIssuerKeys(issuer, retryMs, log), retryMs).unref();
  }
}

