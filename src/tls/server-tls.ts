import { constants } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';

/**
 * TLS 1.3, or TLS 1.2 with ECDHE key exchange (forward secrecy) and AEAD ciphers only:
 * node's default list also offers RSA key exchange and DHE.
 */
const CIPHERS = [
  'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * The TLS settings of every server hopguard runs (issuer, injector webhook), for
 * createServer and for setSecureContext on a certificate reload alike. Renegotiation is off:
 * a client could otherwise swap its certificate after the handshake that verified it.
 */
export function serverTlsOptions(material: Pick<SecureContextOptions, 'cert' | 'key' | 'ca'>): SecureContextOptions {
  return {
    ...material,
    minVersion: 'TLSv1.2',
    ciphers: CIPHERS,
    honorCipherOrder: true,
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
  };
}
