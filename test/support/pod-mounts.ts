import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Ca, IssuedCert } from '../../src/devkit/pki.js';
import { writeAuditKeyPair } from './audit-keys.js';

/** Where the example's authz.yaml files expect what the injected pod mounts. */
const POD_ROOT = '/etc/hopguard/';

/** A ConfigMap's authz.yaml with its /etc/hopguard/ paths under `root`, where mountSidecarSecrets lays them out. */
export function sidecarConfigAt(root: string, configText: string): string {
  return configText.replaceAll(POD_ROOT, `${root}/`);
}

/**
 * The Secrets an injected pod mounts into hopguard authz (the workload certificate at
 * /etc/hopguard/tls, the sidecar's Redis password and CA at /etc/hopguard/redis, a throwaway
 * audit signing key at /etc/hopguard/audit/key.pem), laid out
 * under `root` for a test outside Kubernetes, readable by any user (the image tests run as
 * nobody).
 */
export function mountSidecarSecrets(root: string, ca: Ca, workload: IssuedCert): void {
  for (const dir of ['tls', 'redis', 'audit']) mkdirSync(path.join(root, dir), { recursive: true, mode: 0o755 });
  const files: Record<string, string> = {
    'tls/ca.crt': ca.certPem,
    'redis/ca.crt': ca.certPem,
    'redis/password': 'sidecar-password\n',
    'tls/tls.crt': workload.certPem,
    'tls/tls.key': workload.keyPem,
  };
  for (const [file, content] of Object.entries(files)) writeFileSync(path.join(root, file), content, { mode: 0o644 });
  writeAuditKeyPair(path.join(root, 'audit'), 'key');
}

interface PodSpec {
  containers: { name: string; volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[] }[];
  initContainers?: PodSpec['containers'];
  volumes?: { name: string; secret?: { secretName: string; defaultMode?: number } }[];
}

/**
 * The Secret mounted at `dir` in a container of the pod (by name; else its first container), with
 * how it is mounted; undefined when nothing, or no Secret, is mounted there.
 */
export function secretAt(pod: PodSpec, dir: string, containerName?: string): { secretName: string; readOnly: boolean; defaultMode?: number } | undefined {
  const containers = [...(pod.initContainers ?? []), ...pod.containers];
  const container = containerName === undefined ? pod.containers[0] : containers.find((c) => c.name === containerName);
  const mount = container?.volumeMounts?.find((m) => m.mountPath === dir);
  const secret = pod.volumes?.find((v) => v.name === mount?.name)?.secret;
  if (!mount || !secret) return undefined;
  return { secretName: secret.secretName, readOnly: mount.readOnly === true, ...(secret.defaultMode !== undefined && { defaultMode: secret.defaultMode }) };
}

/** The containers of the pod that mount the Secret `secretName`, by any volume. */
export function containersMounting(pod: PodSpec, secretName: string): string[] {
  const volumes = (pod.volumes ?? []).filter((v) => v.secret?.secretName === secretName).map((v) => v.name);
  return [...(pod.initContainers ?? []), ...pod.containers].filter((c) => (c.volumeMounts ?? []).some((m) => volumes.includes(m.name))).map((c) => c.name);
}
