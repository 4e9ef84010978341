/**
 * Folders under src/ follow the dependency graph: no import cycle between folders
 * (a file may import its own folder freely). A new cycle fails here, naming one
 * import per edge of it.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'src');

function* sources(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (entry.name.endsWith('.ts')) yield path;
  }
}

/** folder → folder → one "file imports spec" that makes the edge. */
function folderGraph(): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>();
  for (const file of sources(SRC)) {
    const from = relative(SRC, dirname(file)) || '.';
    const edges = graph.get(from) ?? new Map<string, string>();
    graph.set(from, edges);
    for (const m of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
      const spec = m[1] as string;
      const to = relative(SRC, dirname(resolve(dirname(file), spec))) || '.';
      if (to !== from && !edges.has(to)) edges.set(to, `${relative(SRC, file)} imports '${spec}'`);
    }
  }
  return graph;
}

/** Every strongly connected set of more than one folder (Tarjan). */
function cycles(graph: Map<string, Map<string, string>>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) out.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

test('no import cycle between folders of src/', () => {
  const graph = folderGraph();
  assert.ok(graph.size > 5, `read ${SRC}`);
  const found = cycles(graph).map((component) => {
    const inside = new Set(component);
    const edges = component.flatMap((from) =>
      [...(graph.get(from) ?? [])].filter(([to]) => inside.has(to)).map(([to, why]) => `  ${from} → ${to}: ${why}`),
    );
    return `${component.join(', ')}\n${edges.join('\n')}`;
  });
  assert.deepEqual(found, [], `folders importing each other:\n${found.join('\n')}`);
});

test('the check sees a cycle when there is one', () => {
  const graph = new Map([
    ['a', new Map([['b', 'x']])],
    ['b', new Map([['c', 'y']])],
    ['c', new Map([['a', 'z']])],
    ['d', new Map([['a', 'w']])],
  ]);
  assert.deepEqual(cycles(graph), [['a', 'b', 'c']]);
});
