// An artifact version's lineage as a graph, and its layout, without markup: the run that logged
// the version, the version, the runs that used it; one hop further, what the logging run used
// and what the using runs logged. Columns are hops (inputs left, outputs right), and each
// column's nodes are ordered to keep edges from crossing.

import type { ArtifactInfo } from "./api";
import { parseRunPath } from "./artifacts";

export type LineageNode =
  | { id: string; kind: "run"; hop: number; label: string; detail: string; entity: string; project: string; runId: string }
  | { id: string; kind: "artifact"; hop: number; label: string; detail: string; center: boolean; entity: string; project: string; name: string; version: string }
  /** Stands for the nodes of a column that did not fit. */
  | { id: string; kind: "more"; hop: number; label: string; detail: string };

export interface LineageEdge {
  from: string;
  to: string;
}

export interface LineageInput {
  /** The project the page shows: its artifacts and runs are named without it. */
  entity: string;
  project: string;
  center: ArtifactInfo;
  loggedBy: string | null;
  usedBy: string[];
  /** The inputs and outputs of the runs whose next hop was loaded, by `entity/project/run_id`. */
  runArtifacts: Map<string, { inputs: ArtifactInfo[]; outputs: ArtifactInfo[] }>;
  /** Run names, by path (a run missing here shows its id). */
  runNames: Map<string, string>;
}

export const runNodeId = (path: string) => `run:${path}`;

/** `artifact:name:v0` for the page's project, `artifact:entity/project/name:v0` for others. */
export function artifactNodeId(a: { entity: string; project: string; name: string; version: string }, entity: string, project: string): string {
  const where = a.entity === entity && a.project === project ? "" : `${a.entity}/${a.project}/`;
  return `artifact:${where}${a.name}:${a.version}`;
}

/** The runs whose inputs and outputs the graph shows, so the caller loads just those. */
export function runsToExpand(loggedBy: string | null, usedBy: string[], perColumn: number): string[] {
  // The logging run is drawn once, left, even when it used the version too.
  const consumers = usedBy.filter((p) => p !== loggedBy);
  const shown = consumers.length <= perColumn ? consumers : consumers.slice(0, perColumn - 1);
  return [...new Set([...(loggedBy ? [loggedBy] : []), ...shown])];
}

/**
 * The graph: hop -2 the logging run's inputs, -1 the logging run, 0 the version, 1 the runs that
 * used it, 2 what those logged. A node met twice (a run that logged and used the version) stays
 * where it was first placed, with all its edges. A column holds at most `perColumn` nodes: the
 * rest become one "+N more" node, with the edges of those it stands for.
 */
export function buildLineage(input: LineageInput, perColumn = 12): { nodes: LineageNode[]; edges: LineageEdge[] } {
  const { entity, project } = input;
  const nodes = new Map<string, LineageNode>();
  const edges: LineageEdge[] = [];
  const local = (e: string, p: string) => (e === entity && p === project ? "" : `${e}/${p}/`);

  const addRun = (path: string, hop: number): string | null => {
    const run = parseRunPath(path);
    if (!run) return null;
    const id = runNodeId(path);
    if (!nodes.has(id)) {
      const name = input.runNames.get(path);
      const where = local(run.entity, run.project);
      nodes.set(id, { id, kind: "run", hop, label: name ?? run.runId, detail: `run ${where}${run.runId}`, ...run });
    }
    return id;
  };
  const addArtifact = (a: ArtifactInfo, hop: number, center = false): string => {
    const id = artifactNodeId(a, entity, project);
    if (!nodes.has(id)) {
      const where = local(a.entity, a.project);
      const label = `${where}${a.name}:${a.version}`;
      nodes.set(id, { id, kind: "artifact", hop, label, detail: a.type, center, entity: a.entity, project: a.project, name: a.name, version: a.version });
    }
    return id;
  };
  const edge = (from: string | null, to: string | null) => {
    if (from && to && from !== to && !edges.some((e) => e.from === from && e.to === to)) edges.push({ from, to });
  };

  const center = addArtifact(input.center, 0, true);
  if (input.loggedBy) {
    const producer = addRun(input.loggedBy, -1);
    edge(producer, center);
    for (const a of input.runArtifacts.get(input.loggedBy)?.inputs ?? []) edge(addArtifact(a, -2), producer);
  }
  for (const path of input.usedBy) {
    const consumer = addRun(path, 1);
    edge(center, consumer);
    for (const a of input.runArtifacts.get(path)?.outputs ?? []) edge(consumer, addArtifact(a, 2));
  }
  return foldColumns([...nodes.values()], edges, perColumn);
}

/** Puts what does not fit in a column into one "+N more" node of that column. */
function foldColumns(nodes: LineageNode[], edges: LineageEdge[], perColumn: number): { nodes: LineageNode[]; edges: LineageEdge[] } {
  const folded = new Map<string, string>();
  const extra: LineageNode[] = [];
  for (const hop of new Set(nodes.map((n) => n.hop))) {
    const column = nodes.filter((n) => n.hop === hop);
    if (column.length <= perColumn) continue;
    const hidden = column.slice(perColumn - 1);
    const id = `more:${hop}`;
    const runs = hidden.every((n) => n.kind === "run");
    extra.push({ id, kind: "more", hop, label: `+${hidden.length} more`, detail: runs ? "runs" : "artifacts" });
    for (const n of hidden) folded.set(n.id, id);
  }
  if (folded.size === 0) return { nodes, edges };
  const kept = [...nodes.filter((n) => !folded.has(n.id)), ...extra];
  const seen = new Set<string>();
  const out: LineageEdge[] = [];
  for (const e of edges) {
    const from = folded.get(e.from) ?? e.from;
    const to = folded.get(e.to) ?? e.to;
    const key = `${from}\n${to}`;
    if (from !== to && !seen.has(key)) {
      seen.add(key);
      out.push({ from, to });
    }
  }
  return { nodes: kept, edges: out };
}

export interface Placed<N> {
  node: N;
  x: number;
  y: number;
}

export interface Layout<N> {
  nodes: Placed<N>[];
  /** SVG path data, from the right side of `from` to the left side of `to`. */
  edges: { from: string; to: string; d: string }[];
  width: number;
  height: number;
}

export interface LayoutSize {
  nodeWidth: number;
  nodeHeight: number;
  /** Between columns and between rows. */
  gapX: number;
  gapY: number;
  /** Around it all. */
  pad: number;
}

/** Five columns fit in 1100 pixels. */
export const LAYOUT: LayoutSize = { nodeWidth: 172, nodeHeight: 44, gapX: 44, gapY: 14, pad: 8 };

/**
 * Places nodes in columns by hop (the hops present only, so no column is empty), each column's
 * rows centered on the tallest. The center column keeps its order; each column further out
 * sorts its nodes by the mean row of their neighbors in the column nearer the center (stable,
 * so nodes without any keep their order, after those with), which keeps edges from crossing.
 */
export function layoutLineage<N extends { id: string; hop: number }>(nodes: N[], edges: LineageEdge[], size: LayoutSize = LAYOUT): Layout<N> {
  const hops = [...new Set(nodes.map((n) => n.hop))].sort((a, b) => a - b);
  const columns = new Map(hops.map((h) => [h, nodes.filter((n) => n.hop === h)]));
  const row = new Map<string, number>();
  const neighbors = new Map<string, string[]>();
  for (const e of edges) {
    neighbors.set(e.from, [...(neighbors.get(e.from) ?? []), e.to]);
    neighbors.set(e.to, [...(neighbors.get(e.to) ?? []), e.from]);
  }
  const place = (hop: number, toward: number | null) => {
    let column = columns.get(hop)!;
    if (toward !== null) {
      const inner = new Set(columns.get(toward)!.map((n) => n.id));
      const mean = (n: N) => {
        const rows = (neighbors.get(n.id) ?? []).filter((id) => inner.has(id)).map((id) => row.get(id)!);
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Number.POSITIVE_INFINITY;
      };
      column = column.map((n, i) => ({ n, i, m: mean(n) })).sort((a, b) => a.m - b.m || a.i - b.i).map((x) => x.n);
      columns.set(hop, column);
    }
    column.forEach((n, i) => row.set(n.id, i));
  };
  // The center: hop 0 if present, else the hop nearest it.
  const middle = hops.reduce((best, h) => (Math.abs(h) < Math.abs(best) ? h : best), hops[0] ?? 0);
  const at = hops.indexOf(middle);
  if (at >= 0) {
    place(middle, null);
    for (let i = at - 1; i >= 0; i--) place(hops[i], hops[i + 1]);
    for (let i = at + 1; i < hops.length; i++) place(hops[i], hops[i - 1]);
  }

  const { nodeWidth: w, nodeHeight: h, gapX, gapY, pad } = size;
  const tallest = Math.max(0, ...[...columns.values()].map((c) => c.length));
  const height = tallest ? tallest * h + (tallest - 1) * gapY + 2 * pad : 0;
  const width = hops.length ? hops.length * w + (hops.length - 1) * gapX + 2 * pad : 0;
  const placed: Placed<N>[] = [];
  const where = new Map<string, Placed<N>>();
  hops.forEach((hop, col) => {
    const column = columns.get(hop)!;
    const top = pad + ((tallest - column.length) * (h + gapY)) / 2;
    column.forEach((node, i) => {
      const p = { node, x: pad + col * (w + gapX), y: top + i * (h + gapY) };
      placed.push(p);
      where.set(node.id, p);
    });
  });
  const paths = edges.flatMap((e) => {
    const a = where.get(e.from);
    const b = where.get(e.to);
    return a && b ? [{ from: e.from, to: e.to, d: edgePath(a, b, w, h) }] : [];
  });
  return { nodes: placed, edges: paths, width, height };
}

/** A curve from one node's side to the other's: forward edges leave right and enter left; an
 * edge back to an earlier column (a run that logged what it used) leaves left and enters right. */
function edgePath(a: { x: number; y: number }, b: { x: number; y: number }, w: number, h: number): string {
  const ay = a.y + h / 2;
  const by = b.y + h / 2;
  if (b.x > a.x) {
    const x1 = a.x + w;
    const mid = (x1 + b.x) / 2;
    return `M${x1},${ay} C${mid},${ay} ${mid},${by} ${b.x},${by}`;
  }
  if (b.x < a.x) {
    // Lower than the forward edges, so that one back along a forward one stays apart from it.
    const [y1, y2] = [a.y + (h * 3) / 4, b.y + (h * 3) / 4];
    const x2 = b.x + w;
    const mid = (a.x + x2) / 2;
    return `M${a.x},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
  }
  // Same column: a loop out to the right.
  const x = a.x + w;
  return `M${x},${ay} C${x + 40},${ay} ${x + 40},${by} ${x},${by}`;
}
