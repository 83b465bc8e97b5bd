import { constants } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';

/**
 * The TLS settings of every server hopguard runs (issuer, injector webhook), for
 * createServer and for setSecureContext on a certificate reload alike. Renegotiation is off:
 * a client could otherwise swap its certificate after the handshake that verified it.
 */
export function serverTlsOptions(material: Pick<SecureContextOptions, 'cert' | 'key' | 'ca'>): SecureContextOptions {
  return { ...material, minVersion: 'TLSv1.2', secureOptions: constants.SSL_OP_NO_RENEGOTIATION };
}
