import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { expect } from 'vitest';

/** The resource files under `dir` (kustomization.yaml files are not resources). */
export function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return yamlFiles(full);
    return /\.ya?ml$/.test(entry.name) && entry.name !== 'kustomization.yaml' ? [full] : [];
  });
}

/** Every document of a YAML stream, none with a syntax error. */
export function documents(text: string): Record<string, any>[] {
  return parseAllDocuments(text).map((doc) => {
    expect(doc.errors).toEqual([]);
    return doc.toJS() as Record<string, any>;
  }).filter((doc) => doc !== null);
}

/** kubectl's built-in kustomize, when it is new enough to read `labels:` (kustomize v4+). */
function kustomizeAvailable(): boolean {
  try {
    return /Kustomize Version: v[4-9]/.test(execFileSync('kubectl', ['version', '--client'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch {
    return false;
  }
}

/** `kubectl kustomize DIR`'s objects. Never skipped: without kustomize v4+ this fails and says how to get it. */
export function kustomizeBuild(dir: string): Record<string, any>[] {
  if (!kustomizeAvailable()) {
    throw new Error('kubectl with kustomize v4+ is required: install the "kubectl" package from the Kubernetes apt repository '
      + '(Debian\'s kubernetes-client is too old for the kustomizations\' labels: field)');
  }
  return documents(execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8' }));
}
