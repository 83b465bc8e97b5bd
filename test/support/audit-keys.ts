import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A fresh Ed25519 audit signing key in `dir`: NAME.pem (PKCS#8) and NAME.pub.pem (SPKI), as openssl writes them. */
export function writeAuditKeyPair(dir: string, name = 'audit'): { privatePath: string; publicPath: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const paths = { privatePath: join(dir, `${name}.pem`), publicPath: join(dir, `${name}.pub.pem`) };
  writeFileSync(paths.privatePath, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(paths.publicPath, publicKey.export({ type: 'spki', format: 'pem' }));
  return paths;
}
