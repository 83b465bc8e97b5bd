import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import { ClusterIssuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1/ClusterIssuer';
import { EnvoyFilter } from '@kubernetes-models/istio/networking.istio.io/v1alpha3/EnvoyFilter';
import { ServiceEntry } from '@kubernetes-models/istio/networking.istio.io/v1/ServiceEntry';
import { AuthorizationPolicy } from '@kubernetes-models/istio/security.istio.io/v1/AuthorizationPolicy';
import { PeerAuthentication } from '@kubernetes-models/istio/security.istio.io/v1/PeerAuthentication';
import { IstioOperator } from '@kubernetes-models/istio/install.istio.io/v1alpha1/IstioOperator';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ValidatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration';

/**
 * Validation against the Kubernetes OpenAPI schemas as kubernetes-models ships them (and the CRD
 * schemas of Istio and cert-manager as @kubernetes-models/istio and /cert-manager ship them): types,
 * required fields and formats by its ajv-compiled validators; and, since those schemas leave
 * objects open (the API server's strict field validation is what refuses a misspelt field), the
 * field names by the schemas' own type declarations (.d.ts) that the package ships beside them.
 */

interface Validatable { validate(): void }
/** "<apiVersion> <kind>" → the model class. */
const MODELS: Record<string, new (data: any) => Validatable> = {
  'admissionregistration.k8s.io/v1 MutatingWebhookConfiguration': MutatingWebhookConfiguration,
  'admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration': ValidatingWebhookConfiguration,
  'monitoring.coreos.com/v1 PrometheusRule': PrometheusRule,
  'apps/v1 Deployment': Deployment,
  'networking.k8s.io/v1 NetworkPolicy': NetworkPolicy,
  'policy/v1 PodDisruptionBudget': PodDisruptionBudget,
  'v1 ConfigMap': ConfigMap,
  'v1 Namespace': Namespace,
  'v1 Pod': Pod,
  'v1 Secret': Secret,
  'v1 Service': Service,
  'v1 ServiceAccount': ServiceAccount,
  'cert-manager.io/v1 Certificate': Certificate,
  'cert-manager.io/v1 ClusterIssuer': ClusterIssuer,
  'networking.istio.io/v1alpha3 EnvoyFilter': EnvoyFilter,
  'networking.istio.io/v1 ServiceEntry': ServiceEntry,
  'security.istio.io/v1 AuthorizationPolicy': AuthorizationPolicy,
  'security.istio.io/v1 PeerAuthentication': PeerAuthentication,
  // Its model declares no spec at all: only its metadata can be checked here.
  'install.istio.io/v1alpha1 IstioOperator': IstioOperator,
};

/** The schema problems of one resource, as "<kind>/<name>: <problem>"; empty when it is valid. */
export function kubernetesProblems(resource: unknown): string[] {
  const { apiVersion, kind, metadata } = (resource ?? {}) as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown } };
  const label = `${String(kind)}/${String(metadata?.name ?? '?')}`;
  const Model = MODELS[`${String(apiVersion)} ${String(kind)}`];
  if (Model === undefined) return [`${label}: no schema here for ${String(apiVersion)} ${String(kind)}`];
  const problems: string[] = [];
  try {
    new Model(resource).validate();
  } catch (err) {
    problems.push(...(err as Error).message.split('\n').map((line) => `${label}: ${line}`));
  }
  walk(resource, declarationOf(String(apiVersion), String(kind)), '', problems, label);
  return problems;
}

// ---------------------------------------------------------------------------------------
// Field names from the .d.ts declarations. kubernetes-models and cert-manager declare one
// interface per schema (`export interface IContainer { "name": string; … }`, exported again under
// its schema name, `IIoK8sApiCoreV1Container`, which other files import for their fields' types);
// Istio's models declare each CRD as one interface with the nested types written inline. Both are
// read by one small parser of the TypeScript type syntax those generators write.

// The packages export only ESM entry points (no ./package.json): find them by their index.
const packageDir = (name: string) => path.dirname(fileURLToPath(import.meta.resolve(name)));
const PACKAGE_DIRS: Record<string, string> = {
  'kubernetes-models': packageDir('kubernetes-models'),
  '@kubernetes-models/apimachinery': packageDir('@kubernetes-models/apimachinery'),
  '@kubernetes-models/istio': packageDir('@kubernetes-models/istio'),
  '@kubernetes-models/cert-manager': packageDir('@kubernetes-models/cert-manager'),
  '@kubernetes-models/prometheus-operator': packageDir('@kubernetes-models/prometheus-operator'),
};

/** A declared type, as far as field names go: anything that is not an object, a list or a map is open. */
type TypeNode =
  | { kind: 'object'; fields: Map<string, TypeNode>; index?: TypeNode }
  | { kind: 'array'; of: TypeNode }
  | { kind: 'named'; name: string; file: string }
  | { kind: 'open' };
const OPEN: TypeNode = { kind: 'open' };

/** Where a model's interface is declared: the package by the API group, then <group>/<version>/<Kind>.d.ts. */
function declarationOf(apiVersion: string, kind: string): TypeNode | undefined {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') as [string, string] : ['', apiVersion];
  const pkg = group.endsWith('istio.io') ? '@kubernetes-models/istio'
    : group.includes('cert-manager.io') ? '@kubernetes-models/cert-manager'
      : group === 'monitoring.coreos.com' ? '@kubernetes-models/prometheus-operator' : 'kubernetes-models';
  return resolveNamed({ kind: 'named', name: `I${kind}`, file: path.join(PACKAGE_DIRS[pkg]!, group, version, `${kind}.d.ts`) });
}

interface DeclarationFile { interfaces: Map<string, TypeNode>; imports: Map<string, string> }
const files = new Map<string, DeclarationFile | undefined>();

function declarationFile(file: string): DeclarationFile | undefined {
  if (files.has(file)) return files.get(file);
  let text: string;
  try {
    text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
  } catch {
    files.set(file, undefined);
    return undefined;
  }
  const interfaces = new Map<string, TypeNode>();
  for (const match of text.matchAll(/export interface (\w+)(?: extends [^{]+)? (?=\{)/g)) {
    interfaces.set(match[1]!, new TypeParser(text, match.index + match[0].length, file).type());
  }
  for (const match of text.matchAll(/\b(\w+) as (\w+)/g)) {
    const declared = interfaces.get(match[1]!);
    if (declared !== undefined) interfaces.set(match[2]!, declared);
  }
  const imports = new Map<string, string>();
  for (const match of text.matchAll(/^import \{([^}]+)\} from "([^"]+)";$/gm)) {
    const target = importedFile(file, match[2]!);
    if (target === undefined) continue;
    for (const name of match[1]!.split(',').map((n) => n.trim()).filter(Boolean)) imports.set(name, target);
  }
  const declared = { interfaces, imports };
  files.set(file, declared);
  return declared;
}

function importedFile(from: string, specifier: string): string | undefined {
  if (specifier.startsWith('.')) return path.resolve(path.dirname(from), specifier.replace(/\.js$/, '.d.ts'));
  const pkg = Object.keys(PACKAGE_DIRS).find((name) => specifier.startsWith(`${name}/`));
  return pkg === undefined ? undefined : `${path.join(PACKAGE_DIRS[pkg]!, specifier.slice(pkg.length + 1))}.d.ts`;
}

function resolveNamed(node: TypeNode): Exclude<TypeNode, { kind: 'named' }> | undefined {
  for (let hops = 0; node.kind === 'named' && hops < 8; hops++) {
    const declared = declarationFile(node.file);
    const local = declared?.interfaces.get(node.name);
    if (local !== undefined) {
      node = local;
      continue;
    }
    const imported = declared?.imports.get(node.name);
    if (imported === undefined) return undefined;
    node = { kind: 'named', name: node.name, file: imported };
  }
  return node.kind === 'named' ? undefined : node;
}

/**
 * The generators' type syntax: `{ "f"?: T; [key: string]: T; }`, `Array<T>`, `T[]`, unions and
 * intersections (whose object parts are merged: a field any part declares is known), string
 * literals, names, generic references (`Exclude<…>`, open) and indexed access (`I["spec"]`, open).
 */
class TypeParser {
  constructor(private readonly text: string, private at: number, private readonly file: string) {}

  type(): TypeNode {
    const parts = [this.postfix()];
    while (this.peek('|') || this.peek('&')) {
      this.at++;
      parts.push(this.postfix());
    }
    if (parts.length === 1) return parts[0]!;
    const objects = parts.map((p) => resolveNamed(p) ?? OPEN).filter((p) => p.kind === 'object');
    if (objects.length === 0) return parts.find((p) => p.kind === 'array') ?? OPEN;
    const fields = new Map<string, TypeNode>();
    for (const object of objects) for (const [key, value] of object.fields) if (!fields.has(key)) fields.set(key, value);
    const index = objects.find((o) => o.index !== undefined)?.index;
    return { kind: 'object', fields, ...(index !== undefined && { index }) };
  }

  private postfix(): TypeNode {
    let node = this.primary();
    while (this.peek('[')) {
      this.at++;
      if (this.peek(']')) {
        this.at++;
        node = { kind: 'array', of: node };
      } else {
        this.type();
        this.expect(']');
        node = OPEN;
      }
    }
    return node;
  }

  private primary(): TypeNode {
    this.skipSpace();
    const c = this.text[this.at];
    if (c === '{') return this.object();
    if (c === '(') {
      this.at++;
      const inner = this.type();
      this.expect(')');
      return inner;
    }
    if (c === '"' || c === "'") {
      this.string();
      return OPEN;
    }
    const name = /^[\w$.-]+/.exec(this.text.slice(this.at))?.[0];
    if (name === undefined) throw new Error(`${this.file}: cannot read the type at ${this.text.slice(this.at, this.at + 40)}`);
    this.at += name.length;
    if (this.peek('<')) {
      this.at++;
      const args = [this.type()];
      while (this.peek(',')) {
        this.at++;
        args.push(this.type());
      }
      this.expect('>');
      return name === 'Array' ? { kind: 'array', of: args[0]! } : OPEN;
    }
    return /^I[A-Z]/.test(name) ? { kind: 'named', name, file: this.file } : OPEN;
  }

  private object(): TypeNode {
    this.expect('{');
    const fields = new Map<string, TypeNode>();
    let index: TypeNode | undefined;
    while (!this.peek('}')) {
      if (this.peek('[')) {
        this.at++;
        this.at += /^\s*\w+\s*/.exec(this.text.slice(this.at))![0].length; // `key`
        this.expect(':');
        this.type(); // string
        this.expect(']');
        this.expect(':');
        index = this.type();
      } else {
        let key: string;
        if (this.peek('"')) key = this.string();
        else {
          key = /^\w+/.exec(this.text.slice(this.at))?.[0] ?? '';
          if (key === '') throw new Error(`${this.file}: cannot read the field at ${this.text.slice(this.at, this.at + 40)}`);
          this.at += key.length;
        }
        if (this.peek('?')) this.at++;
        this.expect(':');
        fields.set(key, this.type());
      }
      if (this.peek(';') || this.peek(',')) this.at++;
    }
    this.expect('}');
    // `{}`: any object (an EnvoyFilter patch's value is a google.protobuf.Struct).
    if (fields.size === 0 && index === undefined) return OPEN;
    return { kind: 'object', fields, ...(index !== undefined && { index }) };
  }

  private string(): string {
    this.skipSpace();
    const quote = this.text[this.at]!;
    const end = this.text.indexOf(quote, this.at + 1);
    const value = this.text.slice(this.at + 1, end);
    this.at = end + 1;
    return value;
  }

  private peek(token: string): boolean {
    this.skipSpace();
    return this.text.startsWith(token, this.at);
  }

  private expect(token: string): void {
    if (!this.peek(token)) throw new Error(`${this.file}: expected "${token}" at ${this.text.slice(this.at, this.at + 40)}`);
    this.at += token.length;
  }

  private skipSpace(): void {
    while (/\s/.test(this.text[this.at] ?? '')) this.at++;
  }
}

function walk(value: unknown, declared: TypeNode | undefined, at: string, problems: string[], label: string): void {
  const node = declared === undefined ? undefined : resolveNamed(declared);
  if (node === undefined || node.kind === 'open') return;
  if (node.kind === 'array') {
    if (Array.isArray(value)) value.forEach((item, i) => walk(item, node.of, `${at}[${i}]`, problems, label));
    return;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
  for (const [key, child] of Object.entries(value)) {
    const where = at ? `${at}.${key}` : key;
    const type = node.fields.get(key) ?? node.index;
    if (type === undefined) {
      problems.push(`${label}: ${where}: unknown field "${key}"`);
      continue;
    }
    walk(child, type, where, problems, label);
  }
}
