import { applyPatch } from 'rfc6902';
import { parseAllDocuments, stringify } from 'yaml';
import { isRecord } from '../schema/config-schema.js';
import { InjectionError, planInjection, type InjectionSettings } from './sidecar-injection.js';

/**
 * `hopguard inject -f FILE`: the webhook's injection applied to manifests on disk, like
 * `istioctl kube-inject`. Every document comes back in order; Pods and the pod templates of
 * workloads are injected when annotated, everything else passes through unchanged.
 */

/** kind → where its pod template is. */
const POD_TEMPLATE_PATHS: Record<string, string[]> = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export interface OfflineResult {
  yaml: string;
  /** One line per injected or skipped workload, for stderr. */
  notes: string[];
}

export function injectManifests(
  yamlText: string,
  settingsFor: (namespace: string) => InjectionSettings,
  defaultNamespace: string,
): OfflineResult {
  const notes: string[] = [];
  const documents = parseAllDocuments(yamlText, { prettyErrors: false });
  if (!Array.isArray(documents)) throw new InjectionError('the input is empty');
  const outputs = documents.map((doc, index) => {
    if (doc.errors.length > 0) throw new InjectionError(`document ${index + 1}: YAML syntax error: ${doc.errors[0]!.message}`);
    const object: unknown = doc.toJS();
    if (!isRecord(object) || typeof object.kind !== 'string') return object;
    const templatePath = object.kind === 'Pod' ? [] : POD_TEMPLATE_PATHS[object.kind];
    if (templatePath === undefined) return object;
    const metadata = isRecord(object.metadata) ? object.metadata : {};
    const label = `${object.kind}/${typeof metadata.name === 'string' ? metadata.name : '?'}`;
    const pod = templatePath.reduce<unknown>((node, key) => (isRecord(node) ? node[key] : undefined), object);
    const namespace = typeof metadata.namespace === 'string' ? metadata.namespace : defaultNamespace;
    let plan;
    try {
      plan = planInjection(pod, settingsFor(namespace));
    } catch (err) {
      if (err instanceof InjectionError) throw new InjectionError(`${label}: ${err.message}`);
      throw err;
    }
    if (!plan.injected) {
      notes.push(`${label}: skipped (${plan.reason})`);
      return object;
    }
    const failed = applyPatch(pod, plan.patch).find((result) => result !== null);
    if (failed) throw new Error(`${label}: the injection patch did not apply: ${failed.message}`);
    notes.push(`${label}: injected as ${plan.identity}`);
    return object;
  });
  return { yaml: outputs.map((object) => stringify(object, { lineWidth: 0 })).join('---\n'), notes };
}
