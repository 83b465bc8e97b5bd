/**
 * Where the time goes, from a V8 .cpuprofile (node --cpu-prof): self time grouped by who owns
 * the code (hopguard's files, each dependency, Node internals, GC, idle), and the functions
 * with the most self time.
 */

import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Sampled ms, idle excluded. */
  busyMs: number;
  idleMs: number;
  byOwner: [string, number][];
  byFunction: [string, number][];
}

export function summarizeProfile(file: string, top = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const owners = new Map<string, number>();
  const functions = new Map<string, number>();
  let idle = 0;
  let busy = 0;
  for (const [id, us] of selfUs) {
    const frame = nodes.get(id)!.callFrame;
    if (frame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    busy += us;
    const owner = ownerOf(frame.url, frame.functionName);
    owners.set(owner, (owners.get(owner) ?? 0) + us);
    const name = `${frame.functionName || '(anonymous)'} ${shortUrl(frame.url)}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
    functions.set(name, (functions.get(name) ?? 0) + us);
  }
  const ms = (entries: Map<string, number>, n: number) =>
    [...entries].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => [k, v / 1000] as [string, number]);
  return { busyMs: busy / 1000, idleMs: idle / 1000, byOwner: ms(owners, 30), byFunction: ms(functions, top) };
}

function ownerOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) {
    const module = url.replace(/^node:(internal\/)?/, '').split('/')[0]!.replace(/\.js$/, '');
    return `node:${module}`;
  }
  const own = /\/(src\/[^?]+)$/.exec(url);
  if (own) return `hopguard ${own[1]!.replace(/\.js$/, '')}`;
  return url;
}

function shortUrl(url: string): string {
  const pkg = /node_modules\/(.+)$/.exec(url);
  if (pkg) return pkg[1]!;
  const own = /\/(src\/.+)$/.exec(url);
  return own ? own[1]! : url;
}

export function formatSummary(name: string, summary: ProfileSummary, checks: number): string {
  const pct = (ms: number) => `${((ms / summary.busyMs) * 100).toFixed(1).padStart(5)}%`;
  const perCheck = (ms: number) => `${((ms * 1000) / checks).toFixed(2).padStart(7)} µs/check`;
  const lines = [
    `${name}: ${summary.busyMs.toFixed(0)} ms busy over ${checks} checks (${((summary.busyMs * 1000) / checks).toFixed(1)} µs/check on this thread), ${summary.idleMs.toFixed(0)} ms idle`,
    '  self time by owner:',
    ...summary.byOwner.filter(([, ms]) => ms / summary.busyMs >= 0.005).map(([owner, ms]) => `    ${pct(ms)} ${perCheck(ms)}  ${owner}`),
    '  top functions (self time):',
    ...summary.byFunction.map(([fn, ms]) => `    ${pct(ms)} ${perCheck(ms)}  ${fn}`),
  ];
  return lines.join('\n');
}
