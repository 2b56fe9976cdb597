import { describe, expect, it } from "vitest";
import { asNumbers, bestSoFar, bracketViews, brushed, hyperbandBrackets, importance, parameterColumns, pearson, type BracketDecision, type TrialInfo } from "../../src/lib/sweep";

const trial = (seq: number, config: Record<string, unknown>, metric: number | null): TrialInfo => ({
  seq, run_id: `r${seq}`, config, state: metric === null ? "running" : "finished", agent: "a", assigned_at: "", metric, grid_index: null,
});

describe("sweep logic", () => {
  const trials = [
    trial(0, { lr: 0.1, opt: { name: "sgd" }, noise: 3 }, 0.9),
    trial(1, { lr: 0.01, opt: { name: "adam" }, noise: 1 }, 0.5),
    trial(2, { lr: 0.001, opt: { name: "adam" }, noise: 2 }, 0.2),
    trial(3, { lr: 0.05, opt: { name: "sgd" }, noise: 1 }, 0.7),
    trial(4, { lr: 0.002, opt: { name: "adam" }, noise: 3 }, 0.3),
    trial(5, { lr: 0.02, opt: { name: "sgd" }, noise: 2 }, null),
  ];

  it("names parameters as dotted columns and keeps the best so far", () => {
    expect(parameterColumns(trials)).toEqual(["lr", "opt.name", "noise"]);
    expect(bestSoFar(trials).map((b) => b.best)).toEqual([0.9, 0.5, 0.2, 0.2, 0.2]);
    expect(bestSoFar(trials, "maximize").map((b) => b.best)).toEqual([0.9, 0.9, 0.9, 0.9, 0.9]);
  });

  it("ranks parameters by correlation, with a permutation test", () => {
    expect(asNumbers(["sgd", "adam", null])).toEqual([1, 0, null]);
    expect(pearson([1, 2, 3], [2, 4, 6])).toBeCloseTo(1);
    const ranked = importance(trials, ["lr", "opt.name", "noise"]);
    expect(ranked[0].column).toBe("lr");
    expect(ranked[0].correlation!).toBeGreaterThan(0.9);
    expect(ranked[0].pValue!).toBeLessThan(0.05);
    const noise = ranked.find((r) => r.column === "noise")!;
    expect(noise.pValue!).toBeGreaterThan(0.2);
    expect(ranked[0].trials).toBe(5);
  });

  it("keeps the trials inside every brush", () => {
    expect(brushed(trials, { lr: [0.005, 0.2] }, "loss").map((t) => t.seq)).toEqual([0, 1, 3, 5]);
    expect(brushed(trials, { lr: [0.2, 0.005], loss: [0.6, 1] }, "loss").map((t) => t.seq)).toEqual([0, 3]);
    expect(brushed(trials, { "opt.name": [0, 0] }, null).map((t) => t.seq)).toEqual([1, 2, 4]);
  });

  it("finds hyperband's brackets as the server does, and sums up each one's decisions", () => {
    expect(hyperbandBrackets({ type: "hyperband", min_iter: 2, eta: 2, s: 2 })).toEqual([2, 4]);
    expect(hyperbandBrackets({ type: "hyperband", min_iter: 3 })).toEqual([3, 9, 27]);
    expect(hyperbandBrackets({ type: "hyperband", max_iter: 27, eta: 3 })).toEqual([1, 3, 9]);
    expect(hyperbandBrackets({ type: "hyperband", max_iter: 27, eta: 3, s: 2 })).toEqual([3, 9]);
    expect(hyperbandBrackets(undefined)).toEqual([]);
    const d = (run_id: string, bracket: number, stopped: boolean, reached: number): BracketDecision => ({ run_id, bracket, value: 1, threshold: 0.5 + reached, rank: 1, reached, kept: 1, stopped });
    const views = bracketViews([2, 4, 8], [d("a", 2, false, 1), d("b", 2, true, 2), d("a", 4, false, 1), d("c", 2, false, 3)]);
    expect(views.map((v) => [v.bracket, v.judged, v.kept, v.stopped.map((s) => s.run_id), v.reached, v.threshold])).toEqual([
      [2, 3, 2, ["b"], 3, 3.5],
      [4, 1, 1, [], 1, 1.5],
      [8, 0, 0, [], 0, null],
    ]);
  });
});
