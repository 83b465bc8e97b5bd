import { isRecord } from '../schema/config-schema.js';
import type { OnError } from './inject-config.js';
import { InjectionError, planInjection, type InjectionSettings } from './sidecar-injection.js';

/**
 * One AdmissionReview (admission.k8s.io/v1) in, the answer out: a pure function, so the HTTPS
 * server only moves bytes. A review without a uid cannot be answered at all: the server
 * replies 400 and the API server applies the webhook's failurePolicy. A review for a pod that
 * asks for injection but cannot have it is answered by `onError`: denied (fail closed) or
 * admitted without sidecars and with a warning (fail open).
 */

export type AdmissionOutcome =
  | { kind: 'unanswerable'; message: string }
  | { kind: 'answered'; review: AdmissionReviewResponse; event: AdmissionEvent };

export interface AdmissionReviewResponse {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  response: {
    uid: string;
    allowed: boolean;
    patchType?: 'JSONPatch';
    /** base64 of the JSON Patch. */
    patch?: string;
    status?: { code: number; message: string };
    warnings?: string[];
  };
}

/** What the server logs: identifiers and fixed reasons only. */
export interface AdmissionEvent {
  outcome: 'injected' | 'skipped' | 'denied' | 'admitted_on_error';
  namespace: string;
  pod: string;
  identity?: string;
  reason?: string;
}

type SettingsFor = (namespace: string) => InjectionSettings;

export function admit(body: unknown, settingsFor: SettingsFor, onError: OnError): AdmissionOutcome {
  if (!isRecord(body) || body.apiVersion !== 'admission.k8s.io/v1' || body.kind !== 'AdmissionReview') {
    return { kind: 'unanswerable', message: 'expected an admission.k8s.io/v1 AdmissionReview' };
  }
  const request = body.request;
  if (!isRecord(request) || typeof request.uid !== 'string' || request.uid === '') {
    return { kind: 'unanswerable', message: 'the AdmissionReview has no request.uid' };
  }
  const uid = request.uid;
  const namespace = typeof request.namespace === 'string' ? request.namespace : '';
  const object = request.object;
  const metadata = isRecord(object) && isRecord(object.metadata) ? object.metadata : {};
  const podName = [metadata.name, metadata.generateName, request.name].find((n): n is string => typeof n === 'string' && n !== '') ?? '';
  const base = { namespace, pod: podName };
  const reply = (response: Omit<AdmissionReviewResponse['response'], 'uid'>, event: AdmissionEvent): AdmissionOutcome => ({
    kind: 'answered',
    review: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, ...response } },
    event,
  });

  try {
    if (!isRecord(request.kind) || request.kind.kind !== 'Pod' || request.operation !== 'CREATE') {
      throw new InjectionError('the webhook handles only CREATE of Pods: check the MutatingWebhookConfiguration rules');
    }
    const plan = planInjection(object, settingsFor(namespace));
    if (!plan.injected) return reply({ allowed: true }, { ...base, outcome: 'skipped', reason: plan.reason });
    return reply(
      { allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(plan.patch)).toString('base64') },
      { ...base, outcome: 'injected', identity: plan.identity },
    );
  } catch (err) {
    if (!(err instanceof InjectionError)) throw err;
    const message = `hopguard sidecar injection failed: ${err.message}`;
    if (onError === 'deny') {
      return reply({ allowed: false, status: { code: 400, message } }, { ...base, outcome: 'denied', reason: err.message });
    }
    return reply({ allowed: true, warnings: [`${message}; the pod was admitted without sidecars`] }, { ...base, outcome: 'admitted_on_error', reason: err.message });
  }
}
