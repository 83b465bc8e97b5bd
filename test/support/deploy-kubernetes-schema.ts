import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/MutatingWebhookConfiguration';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';

/**
 * Validation against the Kubernetes OpenAPI schemas as kubernetes-models ships them (compiled
 * with ajv): types, required fields, formats. Those schemas leave objects open, so a misspelt
 * optional field passes here; `kubectl apply` (strict field validation) is where it would fail.
 */

interface Validatable { validate(): void }
const MODELS: Record<string, new (data: any) => Validatable> = {
  'admissionregistration.k8s.io/v1 MutatingWebhookConfiguration': MutatingWebhookConfiguration,
  'apps/v1 Deployment': Deployment,
  'networking.k8s.io/v1 NetworkPolicy': NetworkPolicy,
  'policy/v1 PodDisruptionBudget': PodDisruptionBudget,
  'v1 ConfigMap': ConfigMap,
  'v1 Namespace': Namespace,
  'v1 Pod': Pod,
  'v1 Secret': Secret,
  'v1 Service': Service,
  'v1 ServiceAccount': ServiceAccount,
};

/** The schema problems of one resource, as "<kind>/<name>: <problem>"; empty when it is valid. */
export function kubernetesProblems(resource: unknown): string[] {
  const { apiVersion, kind, metadata } = (resource ?? {}) as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown } };
  const label = `${String(kind)}/${String(metadata?.name ?? '?')}`;
  const Model = MODELS[`${String(apiVersion)} ${String(kind)}`];
  if (Model === undefined) return [`${label}: no schema here for ${String(apiVersion)} ${String(kind)}`];
  try {
    new Model(resource).validate();
    return [];
  } catch (err) {
    return (err as Error).message.split('\n').map((line) => `${label}: ${line}`);
  }
}
