import { getPath, sectionOf } from "./format";

// The project workspace's layout: sections of panels. The automatic layout is made from what the
// project logged (a line chart per metric, in sections by the key's prefix; media; histograms;
// system metrics). Once the user arranges it, the layout is theirs and saved on the server (per
// project and user); keys logged later still get automatic panels, added to their sections.

export type PanelWidth = 1 | 2 | 3;

/** A line chart over steps (or another x) of one or more metrics. */
export interface LinePanel {
  type: "line";
  metrics: string[];
  /** The x-axis; unset: the workspace's. */
  x?: string;
  /** Unset: the workspace's smoothing and scale. */
  smoothing?: number;
  logScale?: boolean;
  yMin?: number | null;
  yMax?: number | null;
  title?: string;
}

/** Runs as points, or as lines across axes: over columns of the runs table (`config.lr`,
 * `summary.loss`, `state`, `tags`, `created_at`, ...). */
export interface ScatterPanel {
  type: "scatter";
  x: string;
  y: string;
  title?: string;
}
export interface ParallelPanel {
  type: "parallel";
  columns: string[];
  title?: string;
}
/** One bar per run: a column of the runs table. */
export interface BarPanel {
  type: "bar";
  column: string;
  title?: string;
}
export interface MediaPanelSpec {
  type: "media";
  metric: string;
  title?: string;
}
export interface HistogramPanelSpec {
  type: "histogram";
  metric: string;
  title?: string;
}

export type PanelSpec = (LinePanel | ScatterPanel | ParallelPanel | BarPanel | MediaPanelSpec | HistogramPanelSpec) & {
  id: string;
  /** Columns of the section's grid it spans. */
  w: PanelWidth;
  /** Its height, in rows of the grid (1 unless resized). */
  h?: PanelWidth;
};

export interface Section {
  id: string;
  name: string;
  panels: PanelSpec[];
}

export interface Layout {
  version: 1;
  sections: Section[];
  /** The keys that had automatic panels when the user last arranged it: a key not in it is new. */
  known: string[];
}

export const PANEL_TYPES = ["line", "scatter", "parallel", "bar", "media", "histogram"] as const;
export type PanelType = (typeof PANEL_TYPES)[number];

/** What the automatic layout is made of: keys by kind. */
export interface LayoutKeys {
  /** Numeric keys with their stream (`history` or `system`). */
  metrics: { name: string; stream: string }[];
  media: string[];
  histograms: string[];
}

/** The key a panel was made for automatically (its first metric), if any. */
export function panelKey(p: PanelSpec): string | null {
  if (p.type === "line") return p.metrics[0] ?? null;
  if (p.type === "media" || p.type === "histogram") return p.metric;
  return null;
}

/** A stable id for an automatic panel or section. */
const autoId = (kind: string, name: string) => `auto:${kind}:${name}`;

/** The automatic layout: Charts first, then named sections, Media, Histograms, then System. */
export function autoLayout(keys: LayoutKeys): Layout {
  const sections = new Map<string, PanelSpec[]>();
  const add = (section: string, panel: PanelSpec) => {
    if (!sections.has(section)) sections.set(section, []);
    sections.get(section)!.push(panel);
  };
  for (const m of keys.metrics) add(sectionOf(m.name, m.stream), { id: autoId("line", m.name), type: "line", metrics: [m.name], w: 1 });
  for (const k of keys.media) add("Media", { id: autoId("media", k), type: "media", metric: k, w: 1 });
  for (const k of keys.histograms) add("Histograms", { id: autoId("histogram", k), type: "histogram", metric: k, w: 1 });
  const rank = (s: string) => (s === "Charts" ? 0 : s === "Media" ? 2 : s === "Histograms" ? 3 : s === "System" ? 4 : 1);
  const ordered = [...sections.entries()].sort((a, b) => rank(a[0]) - rank(b[0]) || a[0].localeCompare(b[0]));
  return {
    version: 1,
    sections: ordered.map(([name, panels]) => ({ id: autoId("section", name), name, panels })),
    known: allKeys(keys),
  };
}

function allKeys(keys: LayoutKeys): string[] {
  return [...keys.metrics.map((m) => m.name), ...keys.media, ...keys.histograms];
}

/** A saved layout with automatic panels for the keys logged since it was saved, each added to
 * the section the automatic layout puts it in (found by its id, so a renamed section still gets
 * its keys, else by name, else made at the end with an id of its own). */
export function withNewKeys(saved: Layout, keys: LayoutKeys): Layout {
  const known = new Set(saved.known);
  const fresh = autoLayout(keys);
  let out = saved;
  for (const section of fresh.sections) {
    const added = section.panels.filter((p) => {
      const key = panelKey(p);
      return key !== null && !known.has(key);
    });
    if (added.length === 0) continue;
    const target = out.sections.find((s) => s.id === section.id) ?? out.sections.find((s) => s.name === section.name);
    const present = new Set(out.sections.flatMap((s) => s.panels.map((p) => p.id)));
    const fresh = added.filter((p) => !present.has(p.id));
    if (fresh.length === 0) continue;
    out = target
      ? { ...out, sections: out.sections.map((s) => (s === target ? { ...s, panels: [...s.panels, ...fresh] } : s)) }
      : { ...out, sections: [...out.sections, { ...section, id: out.sections.some((s) => s.id === section.id) ? newId("s") : section.id, panels: fresh }] };
  }
  return out;
}

/** The layout as the user changed it: the keys known are the ones logged now. */
export function arranged(layout: Layout, keys: LayoutKeys): Layout {
  return { ...layout, known: [...new Set([...layout.known, ...allKeys(keys)])] };
}

let counter = 0;
export function newId(prefix = "p"): string {
  counter += 1;
  return `${prefix}-${Date.now().toString(36)}-${counter.toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}

function mapSections(layout: Layout, f: (s: Section) => Section): Layout {
  return { ...layout, sections: layout.sections.map(f) };
}

export function addPanel(layout: Layout, sectionId: string, panel: PanelSpec): Layout {
  return mapSections(layout, (s) => (s.id === sectionId ? { ...s, panels: [...s.panels, panel] } : s));
}

export function removePanel(layout: Layout, panelId: string): Layout {
  return mapSections(layout, (s) => ({ ...s, panels: s.panels.filter((p) => p.id !== panelId) }));
}

/** Puts `panel` in the place of the panel with its id (an edit: settings it lacks are gone). */
export function replacePanel(layout: Layout, panel: PanelSpec): Layout {
  return mapSections(layout, (s) => ({ ...s, panels: s.panels.map((p) => (p.id === panel.id ? panel : p)) }));
}

export function updatePanel(layout: Layout, panelId: string, patch: Partial<PanelSpec>): Layout {
  return mapSections(layout, (s) => ({ ...s, panels: s.panels.map((p) => (p.id === panelId ? ({ ...p, ...patch } as PanelSpec) : p)) }));
}

export function findPanel(layout: Layout, panelId: string): { section: Section; index: number; panel: PanelSpec } | null {
  for (const section of layout.sections) {
    const index = section.panels.findIndex((p) => p.id === panelId);
    if (index >= 0) return { section, index, panel: section.panels[index] };
  }
  return null;
}

/** Moves a panel to `index` in a section (its own or another): the index counts the panels there
 * before the move, so dropping on a panel puts the moved one in its place (the target moves
 * back a place, or on, as the moved one came from before or after it). */
export function movePanel(layout: Layout, panelId: string, toSectionId: string, index: number): Layout {
  const found = findPanel(layout, panelId);
  if (!found || !layout.sections.some((s) => s.id === toSectionId)) return layout;
  const at = index;
  const without = removePanel(layout, panelId);
  return mapSections(without, (s) => {
    if (s.id !== toSectionId) return s;
    const panels = [...s.panels];
    panels.splice(Math.max(0, Math.min(at, panels.length)), 0, found.panel);
    return { ...s, panels };
  });
}

export function renameSection(layout: Layout, sectionId: string, name: string): Layout {
  const trimmed = name.trim();
  if (!trimmed) return layout;
  return mapSections(layout, (s) => (s.id === sectionId ? { ...s, name: trimmed } : s));
}

export function addSection(layout: Layout, name: string): Layout {
  return { ...layout, sections: [...layout.sections, { id: newId("s"), name: name.trim() || "New section", panels: [] }] };
}

/** Removes a section; its panels move to the section before it (or after, for the first). */
export function removeSection(layout: Layout, sectionId: string): Layout {
  const i = layout.sections.findIndex((s) => s.id === sectionId);
  if (i < 0 || layout.sections.length === 1) return layout;
  const panels = layout.sections[i].panels;
  const heir = layout.sections[i === 0 ? 1 : i - 1].id;
  const rest = layout.sections.filter((s) => s.id !== sectionId);
  return { ...layout, sections: rest.map((s) => (s.id === heir ? { ...s, panels: [...s.panels, ...panels] } : s)) };
}

/** A layout read from the server, checked: anything malformed is an error naming it. */
export function parseLayout(value: unknown): Layout {
  const fail = (what: string): never => {
    throw new Error(`the saved workspace is malformed: ${what}`);
  };
  if (!value || typeof value !== "object") fail("not an object");
  const v = value as Partial<Layout>;
  if (v.version !== 1) fail(`version ${String(v.version)}`);
  if (!Array.isArray(v.sections)) fail("no sections");
  for (const s of v.sections!) {
    if (typeof s.id !== "string" || typeof s.name !== "string" || !Array.isArray(s.panels)) fail("a section without id, name or panels");
    for (const p of s.panels) {
      if (typeof p.id !== "string" || !PANEL_TYPES.includes(p.type as PanelType)) fail(`panel ${JSON.stringify(p).slice(0, 60)}`);
      if (![1, 2, 3].includes(p.w)) fail(`panel ${p.id} has width ${String(p.w)}`);
      if (p.h !== undefined && ![1, 2, 3].includes(p.h)) fail(`panel ${p.id} has height ${String(p.h)}`);
      const strings = (v: unknown, least: number) => Array.isArray(v) && v.length >= least && v.every((x) => typeof x === "string") && new Set(v).size === v.length;
      const ok =
        p.type === "line" ? strings(p.metrics, 1)
        : p.type === "parallel" ? strings(p.columns, 2)
        : p.type === "scatter" ? typeof p.x === "string" && typeof p.y === "string"
        : p.type === "bar" ? typeof p.column === "string"
        : typeof p.metric === "string";
      if (!ok) fail(`panel ${p.id} (${p.type}) lacks what it draws`);
    }
  }
  return { version: 1, sections: v.sections!, known: Array.isArray(v.known) ? v.known.filter((k) => typeof k === "string") : [] };
}

/** A column's value for a run, as the runs table names columns: `config.x`, `summary.x`, `state`,
 * `tags`, `group`, `job_type`, `name`, `created_at`, `runtime`. */
export function columnValue(
  run: { name: string; state: string; tags?: string[]; group?: string | null; job_type?: string | null; created_at?: string; runtime_secs?: number; config?: Record<string, unknown>; summary?: Record<string, unknown> },
  column: string,
): unknown {
  if (column.startsWith("config.")) return getPath(run.config, column.slice(7));
  if (column.startsWith("summary.")) return getPath(run.summary, column.slice(8));
  switch (column) {
    case "name":
      return run.name;
    case "state":
      return run.state;
    case "tags":
      return (run.tags ?? []).join(", ");
    case "group":
      return run.group ?? null;
    case "job_type":
      return run.job_type ?? null;
    case "created_at":
      return run.created_at ? Date.parse(run.created_at) : null;
    case "runtime":
      return run.runtime_secs ?? null;
  }
  return undefined;
}

/** Values of one column over runs, as positions on an axis: numbers as they are; anything else as
 * categories, in order of first appearance. */
export function axisOf(values: unknown[]): { numeric: boolean; position: (v: unknown) => number | null; categories: string[]; min: number; max: number } {
  const nums = values.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : typeof v === "boolean" ? Number(v) : null));
  const present = values.filter((v) => v !== null && v !== undefined);
  const numeric = present.length > 0 && present.every((v) => typeof v === "number" || typeof v === "boolean");
  if (numeric) {
    const finite = nums.filter((n): n is number => n !== null);
    const min = finite.length ? Math.min(...finite) : 0;
    const max = finite.length ? Math.max(...finite) : 1;
    return { numeric, position: (v) => (typeof v === "number" && Number.isFinite(v) ? v : typeof v === "boolean" ? Number(v) : null), categories: [], min, max };
  }
  const categories: string[] = [];
  for (const v of present) {
    const text = typeof v === "string" ? v : JSON.stringify(v);
    if (!categories.includes(text)) categories.push(text);
  }
  return {
    numeric,
    position: (v) => (v === null || v === undefined ? null : categories.indexOf(typeof v === "string" ? v : JSON.stringify(v))),
    categories,
    min: 0,
    max: Math.max(0, categories.length - 1),
  };
}
