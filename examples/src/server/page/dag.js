// The task DAG as SVG with a simple layered layout: a task's layer is one more than the deepest
// of its dependencies (and of the task that discovered it); within a layer tasks are ordered by
// the mean position of their parents. An edge that skips layers runs through a free slot below
// the tasks of each layer it crosses, never through a task. Dependency edges are solid arrows;
// discovery branches are dashed and drawn from the task that found them.

import { svg } from './dom.js';
import { taskLabel } from './format.js';

const W = 168; // node width
const H = 30; // node height
const GX = 56; // gap between layers
const GY = 12; // gap between nodes of a layer
const PAD = 10;
const MAX_NODES = 400;

function truncate(s, n) {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

/** Each task's parents: `[{id, branch}]`, only those present in `byId`. */
function parentsOf(task, byId) {
  const out = task.dependencies.filter((d) => byId.has(d)).map((id) => ({ id, branch: false }));
  const p = task.links?.parent_id;
  if (p && byId.has(p) && !task.dependencies.includes(p)) out.push({ id: p, branch: true });
  return out;
}

/** `{layers: [[task]], pos: Map(id → {x, y}), parents: Map(id → [{id, branch}])}`. */
export function layout(tasks) {
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const parents = new Map(tasks.map((t) => [t.id, parentsOf(t, byId)]));
  const layer = new Map();
  const visiting = new Set();
  const depth = (id) => {
    if (layer.has(id)) return layer.get(id);
    if (visiting.has(id)) return 0; // a cycle cannot be stored, but never loop on bad data
    visiting.add(id);
    const d = parents.get(id).reduce((m, p) => Math.max(m, depth(p.id) + 1), 0);
    visiting.delete(id);
    layer.set(id, d);
    return d;
  };
  const layers = [];
  for (const t of tasks) (layers[depth(t.id)] ||= []).push(t);
  const pos = new Map();
  layers.forEach((ts, li) => {
    if (li > 0) {
      const mean = (t) => {
        const ys = parents.get(t.id).map((p) => pos.get(p.id)?.row ?? 0);
        return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : 0;
      };
      ts.sort((a, b) => mean(a) - mean(b));
    }
    ts.forEach((t, row) => pos.set(t.id, { x: PAD + li * (W + GX), y: PAD + row * (H + GY), row }));
  });
  return { layers, layer, pos, parents };
}

/** The path of an edge from `from` (layer `lf`) to `to` (layer `lt`), through `slot(l)` rows. */
function edgePath(from, to, lf, lt, slot) {
  const pts = [[from.x + W, from.y + H / 2]];
  for (let l = lf + 1; l < lt; l++) {
    const y = PAD + slot(l) * (H + GY) + H / 2;
    const x = PAD + l * (W + GX);
    pts.push([x, y], [x + W, y]);
  }
  pts.push([to.x, to.y + H / 2]);
  let d = `M${pts[0][0]},${pts[0][1]}`;
  for (let i = 1; i < pts.length; i++) {
    const [x1, y1] = pts[i - 1];
    const [x2, y2] = pts[i];
    if (i % 2 === 0) {
      d += ` L${x2},${y2}`; // along a free slot, across a layer
    } else {
      const mx = (x1 + x2) / 2;
      d += ` C${mx},${y1} ${mx},${y2} ${x2},${y2}`; // between two layers
    }
  }
  return d;
}

/** The SVG of `tasks`; `onSelect(id)` on a click; `selected` is highlighted. */
export function renderDag(tasks, { selected, onSelect }) {
  if (tasks.length === 0) return svg('svg', { class: 'dag', width: 1, height: 1 });
  const shown = tasks.slice(0, MAX_NODES);
  const { layers, layer, pos, parents } = layout(shown);
  // One free slot per long edge in every layer it crosses, below that layer's tasks.
  const used = layers.map((l) => l.length);
  const edges = [];
  for (const t of shown) {
    for (const p of parents.get(t.id)) {
      const [lf, lt] = [layer.get(p.id), layer.get(t.id)];
      const slots = new Map();
      for (let l = lf + 1; l < lt; l++) slots.set(l, used[l]++);
      edges.push(svg('path', {
        d: edgePath(pos.get(p.id), pos.get(t.id), lf, lt, (l) => slots.get(l)),
        class: p.branch ? 'edge branch' : 'edge',
        'marker-end': p.branch ? 'url(#arrow-branch)' : 'url(#arrow)',
      }));
    }
  }
  const rows = Math.max(...used);
  const width = PAD * 2 + layers.length * (W + GX) - GX;
  const height = PAD * 2 + rows * (H + GY) - GY;
  const defs = svg(
    'defs',
    {},
    svg('marker', { id: 'arrow', viewBox: '0 0 8 8', refX: 8, refY: 4, markerWidth: 7, markerHeight: 7, orient: 'auto' },
      svg('path', { d: 'M0,0 L8,4 L0,8 z', class: 'arrowhead' })),
    svg('marker', { id: 'arrow-branch', viewBox: '0 0 8 8', refX: 8, refY: 4, markerWidth: 7, markerHeight: 7, orient: 'auto' },
      svg('path', { d: 'M0,0 L8,4 L0,8 z', class: 'arrowhead branch' })),
  );
  const nodes = shown.map((t) => {
    const { x, y } = pos.get(t.id);
    const branch = Boolean(t.links?.parent_id);
    const label = (branch ? '◆ ' : '') + taskLabel(t);
    return svg('g', {
      class: `node st-${t.state}${branch ? ' branch' : ''}${t.id === selected ? ' selected' : ''}`,
      transform: `translate(${x},${y})`,
      dataset: { taskId: t.id, state: t.state },
      onclick: () => onSelect(t.id),
    },
    svg('title', {}, `${taskLabel(t)} — ${t.state}${branch ? ' (discovery branch)' : ''}`),
    svg('rect', { width: W, height: H, rx: 6 }),
    svg('circle', { cx: 12, cy: H / 2, r: 4, class: 'dot' }),
    svg('text', { x: 22, y: H / 2 + 4 }, truncate(label, 22)));
  });
  const root = svg('svg', { class: 'dag', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img' },
    defs, svg('g', {}, edges), svg('g', {}, nodes));
  return root;
}

export const DAG_LIMIT = MAX_NODES;
