import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAuthzConfig } from '../src/config/load-authz-config.js';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { ANNOTATIONS } from '../src/inject/sidecar-injection.js';
import { kubernetesProblems } from './support/deploy-kubernetes-schema.js';
import { documents, kustomizeBuild, yamlFiles } from './support/manifests.js';

/**
 * k8s/cert-manager: the example's certificates as cert-manager Certificates. No cert-manager runs
 * here: every resource is checked against cert-manager's CRD schemas
 * (@kubernetes-models/cert-manager, field names included), and each Certificate against what
 * mounts its Secret: the names, the SANs the injector and the configs expect, the usages.
 */

type Obj = Record<string, any>;
const DIR = path.resolve(import.meta.dirname, '../k8s/cert-manager');
const kustomization = documents(readFileSync(path.join(DIR, 'kustomization.yaml'), 'utf8'))[0]!;
const OWN = yamlFiles(DIR).flatMap((file) => documents(readFileSync(file, 'utf8')).map((doc) => ({ file: path.relative(DIR, file), doc })));
const built = kustomizeBuild(DIR);
const of = (kind: string) => built.filter((doc) => doc.kind === kind);
const named = (kind: string, name: string) => of(kind).find((doc) => doc.metadata.name === name)!;
const certificates = of('Certificate');
const certificateFor = (namespace: string, secretName: string) =>
  certificates.filter((c) => c.metadata.namespace === namespace && c.spec.secretName === secretName);

/** Every Secret volume of every pod template, with its namespace. */
const secretVolumes = of('Deployment').flatMap((d) => ((d.spec.template.spec.volumes ?? []) as Obj[])
  .filter((v) => v.secret !== undefined).map((v) => ({ namespace: d.metadata.namespace as string, secretName: v.secret.secretName as string, deployment: d.metadata.name as string })));

describe('k8s/cert-manager', () => {
  it('lists exactly its files, and kubectl kustomize builds it with every object valid, cert-manager\'s included', () => {
    for (const resource of kustomization.resources as string[]) expect(existsSync(path.join(DIR, resource)), resource).toBe(true);
    expect([...new Set(OWN.map((r) => r.file))].sort()).toEqual((kustomization.resources as string[]).filter((r) => !r.startsWith('..')).sort());
    expect(built.flatMap(kubernetesProblems)).toEqual([]);
    expect(certificates.length).toBeGreaterThanOrEqual(7);
  });

  it.each(OWN.map((r) => [`${r.file}: ${r.doc.kind}/${r.doc.metadata.name}`, r.doc] as const))('%s validates against cert-manager\'s CRD schema', (_, doc) => {
    expect(kubernetesProblems(doc)).toEqual([]);
  });

  it('the CRD check refuses a misspelt field, a wrong type and a wrong enum value', () => {
    const cert = structuredClone(OWN.find((r) => r.doc.kind === 'Certificate' && r.doc.metadata.name === 'hopguard-orders')!.doc);
    cert.spec.uri = cert.spec.uris;
    cert.spec.privateKey.algorithm = 'DSA';
    cert.spec.isCA = 'no';
    expect(kubernetesProblems(cert)).toEqual([
      'Certificate/hopguard-orders: data/spec/isCA must be boolean, data/spec/privateKey/algorithm must be equal to one of the allowed values',
      'Certificate/hopguard-orders: spec.uri: unknown field "uri"',
    ]);
  });

  it('one mesh CA: a self-signed root whose key stays in the cert-manager namespace, signing every other certificate', () => {
    const ca = named('Certificate', 'hopguard-mesh-ca');
    expect(ca.metadata.namespace).toBe('cert-manager');
    expect(ca.spec).toMatchObject({ isCA: true, issuerRef: { kind: 'ClusterIssuer', name: 'hopguard-selfsigned' } });
    expect(named('ClusterIssuer', 'hopguard-selfsigned').spec).toEqual({ selfSigned: {} });
    expect(named('ClusterIssuer', 'hopguard-mesh-ca').spec).toEqual({ ca: { secretName: ca.spec.secretName } });
    for (const cert of certificates.filter((c) => c !== ca)) {
      expect(cert.spec.issuerRef, cert.metadata.name).toEqual({ kind: 'ClusterIssuer', name: 'hopguard-mesh-ca', group: 'cert-manager.io' });
      expect(cert.spec.isCA, cert.metadata.name).toBeUndefined();
      expect(cert.spec.privateKey, cert.metadata.name).toEqual({ algorithm: 'ECDSA', size: 256, rotationPolicy: 'Always' });
    }
  });

  it('every TLS Secret a pod mounts is made by exactly one Certificate in its namespace; none the key Secrets', () => {
    const tls = secretVolumes.filter((v) => v.secretName.endsWith('-tls'));
    expect(tls.map((v) => v.secretName).sort()).toEqual(['hopguard-injector-tls', 'hopguard-issuer-tls', 'hopguard-redis-tls']);
    for (const v of tls) expect(certificateFor(v.namespace, v.secretName), `${v.deployment}: ${v.secretName}`).toHaveLength(1);
    // Signing keys, Redis passwords and ACLs are never cert-manager's.
    for (const v of secretVolumes.filter((s) => !s.secretName.endsWith('-tls'))) expect(certificateFor(v.namespace, v.secretName)).toEqual([]);
  });

  it('the issuer\'s and the injector\'s server certificates name the hosts their clients dial; the webhook\'s caBundle comes from the injector\'s', () => {
    const issuerHost = new URL(parseIssuerConfig(named('ConfigMap', 'hopguard-issuer').data['issuer.yaml'], { baseDir: '/' }).issuer).hostname;
    expect(certificateFor('hopguard-system', 'hopguard-issuer-tls')[0]!.spec).toMatchObject({ usages: ['digital signature', 'server auth'] });
    expect(certificateFor('hopguard-system', 'hopguard-issuer-tls')[0]!.spec.dnsNames).toContain(issuerHost);
    const webhook = named('MutatingWebhookConfiguration', 'hopguard-sidecar-injector');
    const { name, namespace } = webhook.webhooks[0].clientConfig.service;
    const [injectorCert] = certificateFor(namespace, 'hopguard-injector-tls');
    expect(injectorCert!.spec.dnsNames).toContain(`${name}.${namespace}.svc`);
    expect(webhook.metadata.annotations['cert-manager.io/inject-ca-from']).toBe(`${injectorCert!.metadata.namespace}/${injectorCert!.metadata.name}`);
    const redisHost = /@([^:]+):/.exec(parseIssuerConfig(named('ConfigMap', 'hopguard-issuer').data['issuer.yaml'], { baseDir: '/' }).store)![1];
    expect(certificateFor('hopguard-system', 'hopguard-redis-tls')[0]!.spec.dnsNames).toContain(redisHost);
  });

  it('each injected workload has a certificate whose only SAN is the SPIFFE ID the injector derives, in the Secret it mounts, for mTLS both ways', () => {
    const workloads = of('Deployment').filter((d) => d.spec.template.metadata.annotations?.[ANNOTATIONS.inject] === 'true');
    expect(workloads.map((d) => d.metadata.name).sort()).toEqual(['frontend', 'orders', 'payments']);
    for (const deployment of workloads) {
      const serviceAccount = deployment.spec.template.spec.serviceAccountName;
      const namespace = deployment.metadata.namespace;
      const identity = `spiffe://cluster.local/ns/${namespace}/sa/${serviceAccount}`;
      const [cert] = certificateFor(namespace, `hopguard-${serviceAccount}-tls`);
      expect(cert, deployment.metadata.name).toBeDefined();
      expect(cert!.spec).toMatchObject({ uris: [identity], usages: ['digital signature', 'client auth', 'server auth'], duration: '24h', renewBefore: '8h' });
      expect(cert!.spec.dnsNames).toBeUndefined();
      expect(cert!.spec.commonName).toBeUndefined();
      // The audience its sidecar enforces is the same identity.
      expect(parseAuthzConfig(named('ConfigMap', `hopguard-${serviceAccount}`).data['authz.yaml'], { baseDir: '/' }).audience).toBe(identity);
    }
  });
});
