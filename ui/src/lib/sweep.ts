// A sweep page's logic: trials' parameters as columns, the best so far, parameter importance
// (correlation with the metric, and a permutation test of it), and brushing on parallel axes.
import { flattenObject } from "./format";

export interface SweepInfo {
  entity: string;
  project: string;
  sweep_id: string;
  name: string | null;
  method: string;
  state: "running" | "paused" | "stopped" | "canceled" | "finished";
  config: Record<string, unknown> & { metric?: { name: string; goal?: "minimize" | "maximize"; target?: number } };
  created_at: string;
  trials: number;
  running: number;
  finished: number;
  crashed: number;
  grid_size: number | null;
  best: { run_id: string; value: number } | null;
}

export interface TrialInfo {
  seq: number;
  run_id: string;
  config: Record<string, unknown>;
  state: string;
  agent: string;
  assigned_at: string;
  metric: number | null;
  grid_index: number | null;
}

/** The parameters the trials have, as dotted columns, in order of first appearance. */
export function parameterColumns(trials: TrialInfo[]): string[] {
  const seen: string[] = [];
  for (const t of trials) for (const [k] of flattenObject(t.config)) if (!seen.includes(k)) seen.push(k);
  return seen;
}

export function paramValue(t: TrialInfo, column: string): unknown {
  return Object.fromEntries(flattenObject(t.config))[column];
}

/** The best value so far after each trial with a metric (by trial order), for the goal. */
export function bestSoFar(trials: TrialInfo[], goal: "minimize" | "maximize" = "minimize"): { seq: number; value: number; best: number }[] {
  const out: { seq: number; value: number; best: number }[] = [];
  let best: number | null = null;
  for (const t of [...trials].sort((a, b) => a.seq - b.seq)) {
    if (t.metric === null || !Number.isFinite(t.metric)) continue;
    best = best === null ? t.metric : goal === "minimize" ? Math.min(best, t.metric) : Math.max(best, t.metric);
    out.push({ seq: t.seq, value: t.metric, best });
  }
  return out;
}

/** A parameter's values as numbers: numbers as they are, anything else by its category's rank. */
export function asNumbers(values: unknown[]): (number | null)[] {
  const numeric = values.every((v) => v === null || v === undefined || typeof v === "number" || typeof v === "boolean");
  if (numeric) return values.map((v) => (typeof v === "number" ? v : typeof v === "boolean" ? Number(v) : null));
  const cats = [...new Set(values.filter((v) => v !== null && v !== undefined).map((v) => String(v)))].sort();
  return values.map((v) => (v === null || v === undefined ? null : cats.indexOf(String(v))));
}

export function pearson(xs: number[], ys: number[]): number | null {
  const n = xs.length;
  if (n < 3) return null;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
    syy += (ys[i] - my) ** 2;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : null;
}

/** A small seeded generator (mulberry32): the same permutations on every load. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Importance {
  column: string;
  /** Pearson correlation with the metric (categories by rank). */
  correlation: number | null;
  /** The permutation test: the share of shuffles of the metric whose |correlation| is at least
   * this one's (small: the parameter matters). */
  pValue: number | null;
  trials: number;
}

/** Each parameter's correlation with the metric over the finished trials, and its permutation test. */
export function importance(trials: TrialInfo[], columns: string[], shuffles = 500): Importance[] {
  const done = trials.filter((t) => t.metric !== null && Number.isFinite(t.metric));
  const random = rng(12345);
  return columns
    .map((column) => {
      const xs = asNumbers(done.map((t) => paramValue(t, column)));
      const pairs = xs.map((x, i) => [x, done[i].metric as number] as const).filter(([x]) => x !== null) as [number, number][];
      const x = pairs.map((p) => p[0]);
      const y = pairs.map((p) => p[1]);
      const r = pearson(x, y);
      let pValue: number | null = null;
      if (r !== null) {
        let atLeast = 0;
        const shuffled = [...y];
        for (let s = 0; s < shuffles; s++) {
          for (let i = shuffled.length - 1; i > 0; i--) {
            const j = Math.floor(random() * (i + 1));
            [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
          }
          const rs = pearson(x, shuffled);
          if (rs !== null && Math.abs(rs) >= Math.abs(r) - 1e-12) atLeast += 1;
        }
        pValue = (atLeast + 1) / (shuffles + 1);
      }
      return { column, correlation: r, pValue, trials: pairs.length };
    })
    .sort((a, b) => Math.abs(b.correlation ?? 0) - Math.abs(a.correlation ?? 0));
}

/** Brushes on parallel axes: per column, the range of numbers kept (categories by rank). */
export type Brushes = Record<string, [number, number]>;

/** The trials inside every brush. */
export function brushed(trials: TrialInfo[], brushes: Brushes, metricName: string | null): TrialInfo[] {
  const entries = Object.entries(brushes);
  if (entries.length === 0) return trials;
  const numbersOf = new Map<string, (number | null)[]>();
  for (const [column] of entries) {
    numbersOf.set(column, column === metricName ? trials.map((t) => t.metric) : asNumbers(trials.map((t) => paramValue(t, column))));
  }
  return trials.filter((_, i) =>
    entries.every(([column, [lo, hi]]) => {
      const v = numbersOf.get(column)![i];
      return v !== null && v >= Math.min(lo, hi) && v <= Math.max(lo, hi);
    }),
  );
}

/** One judgement of hyperband: a trial at a bracket (an iteration of the metric). */
export interface BracketDecision {
  run_id: string;
  bracket: number;
  value: number;
  threshold: number;
  rank: number;
  reached: number;
  kept: number;
  stopped: boolean;
  decided_at?: string | null;
}

/** The iterations hyperband judges at, from the configuration's `early_terminate` (as the server reads it). */
export function hyperbandBrackets(et: unknown): number[] {
  if (!et || typeof et !== "object") return [];
  const { min_iter, max_iter, eta = 3, s } = et as { min_iter?: number; max_iter?: number; eta?: number; s?: number };
  const out: number[] = [];
  if (typeof min_iter === "number") {
    let at = min_iter;
    for (let i = 0; i < Math.max(1, s ?? 3); i++, at *= eta) out.push(Math.round(at));
  } else if (typeof max_iter === "number") {
    let n = s;
    if (n === undefined) {
      n = 0;
      for (let at = max_iter; at / eta >= 1 && n < 20; at /= eta) n++;
      n = Math.max(1, n);
    }
    let at = max_iter;
    for (let i = 0; i < n; i++) {
      at /= eta;
      if (at < 1) break;
      out.push(Math.round(at));
    }
    out.reverse();
  }
  return [...new Set(out)];
}

export interface BracketView {
  bracket: number;
  /** Judgements made there, kept and stopped. */
  judged: number;
  kept: number;
  stopped: BracketDecision[];
  /** The latest judgement's cut (the worst value kept) and how many had reached it then. */
  threshold: number | null;
  reached: number;
}

/** Each bracket's decisions, for the sweep page. */
export function bracketViews(brackets: number[], decisions: BracketDecision[]): BracketView[] {
  const all = [...new Set([...brackets, ...decisions.map((d) => d.bracket)])].sort((a, b) => a - b);
  return all.map((bracket) => {
    const here = decisions.filter((d) => d.bracket === bracket);
    const last = here[here.length - 1];
    return {
      bracket,
      judged: here.length,
      kept: here.filter((d) => !d.stopped).length,
      stopped: here.filter((d) => d.stopped),
      threshold: last ? last.threshold : null,
      reached: last ? last.reached : 0,
    };
  });
}
