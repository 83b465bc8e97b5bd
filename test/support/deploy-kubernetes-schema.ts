import { readFileSync, readdirSync } from 'node:fs';
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

/**
 * Validation against the Kubernetes OpenAPI schemas as kubernetes-models ships them: types,
 * required fields and formats by its ajv-compiled validators; and, since those schemas leave
 * objects open (the API server's strict field validation is what refuses a misspelt field), the
 * field names by the schemas' own type declarations (.d.ts) that the package ships beside them.
 */

interface Validatable { validate(): void }
/** "<apiVersion> <kind>" → the model class. */
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
  const problems: string[] = [];
  try {
    new Model(resource).validate();
  } catch (err) {
    problems.push(...(err as Error).message.split('\n').map((line) => `${label}: ${line}`));
  }
  const [group, version] = String(apiVersion).includes('/') ? String(apiVersion).split('/') : ['', String(apiVersion)];
  const declaration = path.join(MODELS_DIR, group ?? '', version ?? '', `${String(kind)}.d.ts`);
  walk(resource, interfaceIn(declaration, `I${String(kind)}`), '', problems, label);
  return problems;
}

// ---------------------------------------------------------------------------------------
// Field names from the .d.ts declarations: `export interface IContainer { "name": string; … }`,
// each exported again under its schema name (`IIoK8sApiCoreV1Container`), which other
// declarations use for their fields' types.

// Both packages export only ESM entry points (no ./package.json): find them by their index.
const MODELS_DIR = path.dirname(fileURLToPath(import.meta.resolve('kubernetes-models')));
const APIMACHINERY_DIR = path.dirname(fileURLToPath(import.meta.resolve('@kubernetes-models/apimachinery')));

interface Declared { fields: Map<string, string> }
let catalog: Map<string, Declared> | undefined;

function declarations(): Map<string, Declared> {
  if (catalog) return catalog;
  catalog = new Map();
  for (const root of [MODELS_DIR, APIMACHINERY_DIR]) {
    for (const file of readdirSync(root, { recursive: true, encoding: 'utf8' })) {
      if (file.endsWith('.d.ts') && !file.startsWith('_schemas')) readDeclarations(path.join(root, file), catalog);
    }
  }
  return catalog;
}

function readDeclarations(file: string, into: Map<string, Declared>): void {
  const text = readFileSync(file, 'utf8').replace(/\/\*\*[\s\S]*?\*\//g, '');
  for (const match of text.matchAll(/export interface (\w+)(?: extends [^{]+)? \{\n([\s\S]*?)\n\}/g)) {
    const fields = new Map<string, string>();
    // One field per `"name"?: type;`, a map type spanning lines included.
    for (const field of match[2]!.matchAll(/^ {4}"([^"]+)"\??: ((?:\{[\s\S]*?\n {4}\})|[^;\n]+);$/gm)) {
      fields.set(field[1]!, field[2]!.replace(/\s+/g, ' '));
    }
    const declared = { fields };
    into.set(`${file}#${match[1]}`, declared);
    const alias = new RegExp(`\\b${match[1]} as (\\w+)`).exec(text)?.[1];
    if (alias !== undefined) into.set(alias, declared);
  }
}

function interfaceIn(file: string, name: string): Declared | undefined {
  return declarations().get(`${file}#${name}`);
}

function walk(value: unknown, declared: Declared | undefined, at: string, problems: string[], label: string): void {
  if (declared === undefined || typeof value !== 'object' || value === null || Array.isArray(value)) return;
  for (const [key, child] of Object.entries(value)) {
    const where = at ? `${at}.${key}` : key;
    const type = declared.fields.get(key);
    if (type === undefined) {
      problems.push(`${label}: ${where}: unknown field "${key}"`);
      continue;
    }
    const list = /^Array<(\w+)>$/.exec(type)?.[1];
    const map = /^\{ \[key: string\]: (\w+); \}$/.exec(type)?.[1];
    if (list !== undefined && Array.isArray(child)) child.forEach((item, i) => walk(item, declarations().get(list), `${where}[${i}]`, problems, label));
    else if (map !== undefined && typeof child === 'object' && child !== null) {
      for (const [k, item] of Object.entries(child)) walk(item, declarations().get(map), `${where}.${k}`, problems, label);
    } else walk(child, declarations().get(type), where, problems, label);
  }
}
