import type { AuditRecorder } from '../audit/audit-log.js';
import { isRecord } from '../schema/config-schema.js';
import { StoreUnavailableError, type RevocationWriter } from '../store/store.js';
import type { Logger } from '../telemetry/log.js';

/**
 * Decommission (design "Continuous access evaluation"): the injector's ValidatingWebhook for
 * ServiceAccount DELETE. The deletion is always admitted (a webhook must not keep a cluster from
 * removing an identity); unless the review is a dry run, every token of the workload's SPIFFE ID
 * issued until now dies: revoked as a subject (its own tokens) and as a client (tokens it obtained
 * for someone else, by exchange), in the store the injector's config names.
 */

export interface DecommissionDeps {
  trustDomain: string;
  store: Pick<RevocationWriter, 'revoke'>;
  audit: AuditRecorder;
  log: Logger;
  /** How long the revocation is kept: at least the longest lifetime of any token of that workload. */
  revocationTtlMs: number;
  now?: () => number;
}

export type DecommissionAnswer =
  | { kind: 'unanswerable'; message: string }
  | { kind: 'answered'; review: { apiVersion: 'admission.k8s.io/v1'; kind: 'AdmissionReview'; response: { uid: string; allowed: true; warnings?: string[] } } };

/** Kubernetes object names: a namespace is a DNS label, a ServiceAccount a DNS subdomain. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const REASON = 'ServiceAccount deleted';

export class Decommission {
  private readonly now: () => number;

  constructor(private readonly deps: DecommissionDeps) {
    this.now = deps.now ?? Date.now;
  }

  async review(body: unknown): Promise<DecommissionAnswer> {
    if (!isRecord(body) || body.apiVersion !== 'admission.k8s.io/v1' || body.kind !== 'AdmissionReview') {
      return { kind: 'unanswerable', message: 'expected an admission.k8s.io/v1 AdmissionReview' };
    }
    const request = body.request;
    if (!isRecord(request) || typeof request.uid !== 'string' || request.uid === '') {
      return { kind: 'unanswerable', message: 'the AdmissionReview has no request.uid' };
    }
    const admit = (warnings?: string[]): DecommissionAnswer => ({
      kind: 'answered',
      review: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: request.uid as string, allowed: true, ...(warnings && { warnings }) } },
    });

    const { namespace, name } = request;
    const isDelete = isRecord(request.kind) && request.kind.group === '' && request.kind.kind === 'ServiceAccount' && request.operation === 'DELETE';
    if (!isDelete || typeof namespace !== 'string' || !DNS_LABEL.test(namespace) || typeof name !== 'string' || !DNS_SUBDOMAIN.test(name)) {
      this.deps.log.warn('decommission_ignored', { reason: 'not a ServiceAccount DELETE with a namespace and name' });
      return admit(['hopguard decommission handles only DELETE of ServiceAccounts: check the ValidatingWebhookConfiguration rules']);
    }
    const subject = `spiffe://${this.deps.trustDomain}/ns/${namespace}/sa/${name}`;
    const dryRun = request.dryRun === true;
    const user = isRecord(request.userInfo) && typeof request.userInfo.username === 'string' ? request.userInfo.username : undefined;
    const event = { event: 'decommission', subject, dryRun, ...(user !== undefined && { caller: `k8s:${user}` }) } as const;
    if (dryRun) {
      this.deps.audit.record({ ...event, decision: 'allow' });
      return admit();
    }

    const nowMs = this.now();
    const record = (kind: 'subject' | 'client') => ({
      revocation: { kind, value: subject, before: nowMs / 1000 },
      expiresAtMs: nowMs + this.deps.revocationTtlMs,
      reason: REASON,
    });
    try {
      await this.deps.store.revoke(record('subject'));
      await this.deps.store.revoke(record('client'));
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      // Still admitted: the operator is told, and the audit and log say what was not done.
      this.deps.audit.record({ ...event, decision: 'deny', code: 'state_unavailable' });
      this.deps.log.error('decommission_revocation_failed', { subject });
      return admit([`hopguard could not revoke the tokens of ${subject}: the shared store is unavailable; run hopguard revoke --subject and --client`]);
    }
    this.deps.audit.record({ ...event, decision: 'allow', revoked: 'subject' });
    this.deps.log.info('decommissioned', { subject });
    return admit();
  }
}
