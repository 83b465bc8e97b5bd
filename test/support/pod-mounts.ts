import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Ca, IssuedCert } from '../../src/devkit/pki.js';

/** Where the example's authz.yaml files expect what the injected pod mounts. */
const POD_ROOT = '/etc/hopguard/';

/** A ConfigMap's authz.yaml with its /etc/hopguard/ paths under `root`, where mountSidecarSecrets lays them out. */
export function sidecarConfigAt(root: string, configText: string): string {
  return configText.replaceAll(POD_ROOT, `${root}/`);
}

/**
 * The Secrets an injected pod mounts into hopguard authz (the workload certificate at
 * /etc/hopguard/tls, the sidecar's Redis password and CA at /etc/hopguard/redis), laid out
 * under `root` for a test outside Kubernetes, readable by any user (the image tests run as
 * nobody).
 */
export function mountSidecarSecrets(root: string, ca: Ca, workload: IssuedCert): void {
  for (const dir of ['tls', 'redis']) mkdirSync(path.join(root, dir), { recursive: true, mode: 0o755 });
  const files: Record<string, string> = {
    'tls/ca.crt': ca.certPem,
    'redis/ca.crt': ca.certPem,
    'redis/password': 'sidecar-password\n',
    'tls/tls.crt': workload.certPem,
    'tls/tls.key': workload.keyPem,
  };
  for (const [file, content] of Object.entries(files)) writeFileSync(path.join(root, file), content, { mode: 0o644 });
}
