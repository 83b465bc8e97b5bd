import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The README's Layout section lists the folders of src/ in layers; a folder may import only from
 * the layers above its own. This reads that list and every import in src/, so the rule the README
 * states is the rule the tree follows.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const SRC = path.join(ROOT, 'src');

function readmeLayers(): string[][] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const block = /<!-- layers:[^>]*-->\s*```\n([\s\S]*?)```/.exec(readme);
  if (!block) throw new Error('README.md has no "<!-- layers: … -->" block in its Layout section');
  return block[1]!.trim().split('\n').map((line) => line.trim().split(/\s+/));
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** Relative imports of a file (static, dynamic, type-only and re-exports), as absolute .ts paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^import\s+)'(\.{1,2}\/[^']+)'/gm)].map((m) => m[1]!);
  return specifiers.map((s) => path.resolve(path.dirname(file), s.replace(/\.js$/, '.ts')));
}

/** The folder of src/ a file belongs to; files directly in src/ (cli.ts) stand above every layer. */
function folderOf(file: string): string | undefined {
  const parts = path.relative(SRC, file).split(path.sep);
  return parts.length > 1 ? parts[0] : undefined;
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((file) => [file, importsOf(file)]));

describe('layering of src/', () => {
  const layers = readmeLayers();
  const layerOf = new Map(layers.flatMap((folders, i) => folders.map((folder) => [folder, i] as const)));

  it('lists every folder of src/ exactly once', () => {
    const folders = [...new Set(files.map(folderOf).filter((f): f is string => f !== undefined))].sort();
    expect([...layerOf.keys()].sort()).toEqual(folders);
    expect(layers.flat()).toHaveLength(layerOf.size);
  });

  it('has every import point up: to a folder on a line above its own', () => {
    const wrong: string[] = [];
    for (const [file, targets] of graph) {
      const from = folderOf(file);
      if (from === undefined) continue;
      for (const target of targets) {
        const to = folderOf(target);
        if (to === undefined) {
          wrong.push(`${path.relative(SRC, file)} imports ${path.relative(SRC, target)}, which stands above every layer`);
        } else if (to !== from && !(layerOf.get(to)! < layerOf.get(from)!)) {
          wrong.push(`${path.relative(SRC, file)} (${from}) imports ${path.relative(SRC, target)} (${to})`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('keeps the vocabulary free of hopguard imports', () => {
    const vocabulary = files.filter((f) => folderOf(f) === 'vocabulary');
    expect(vocabulary.length).toBeGreaterThan(0);
    for (const file of vocabulary) {
      expect(graph.get(file)!.filter((t) => folderOf(t) !== 'vocabulary'), path.relative(SRC, file)).toEqual([]);
    }
  });

  it('has no import circle between files', () => {
    const circles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (file: string) => {
      state.set(file, 'open');
      stack.push(file);
      for (const next of graph.get(file) ?? []) {
        if (state.get(next) === 'open') circles.push([...stack.slice(stack.indexOf(next)), next].map((f) => path.relative(SRC, f)).join(' -> '));
        else if (!state.has(next)) visit(next);
      }
      stack.pop();
      state.set(file, 'done');
    };
    for (const file of files) if (!state.has(file)) visit(file);
    expect(circles).toEqual([]);
  });

  it('resolves every relative import to a file in src/', () => {
    const missing = [...graph].flatMap(([file, targets]) => targets.filter((t) => !graph.has(t)).map((t) => `${path.relative(SRC, file)} -> ${t}`));
    expect(missing).toEqual([]);
  });
});
