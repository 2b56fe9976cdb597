import { describe, expect, it } from "vitest";
import type { ArtifactInfo } from "../../src/lib/api";
import { LAYOUT, artifactNodeId, buildLineage, layoutLineage, runsToExpand, type LineageInput } from "../../src/lib/lineage";

const artifact = (name: string, index: number, where = "e/p", type = "dataset"): ArtifactInfo => {
  const [entity, project] = where.split("/");
  return {
    entity,
    project,
    name,
    type,
    version: `v${index}`,
    version_index: index,
    digest: `${name}${index}`,
    size: 0,
    file_count: 0,
    aliases: [],
    description: null,
    metadata: {},
    created_at: "2024-01-01T00:00:00Z",
    logged_by: null,
  };
};

const input = (over: Partial<LineageInput>): LineageInput => ({
  entity: "e",
  project: "p",
  center: artifact("data", 1),
  loggedBy: null,
  usedBy: [],
  runArtifacts: new Map(),
  runNames: new Map(),
  ...over,
});

describe("the lineage graph", () => {
  it("goes from what the logging run used, through it and the version, to the users and what they logged", () => {
    const { nodes, edges } = buildLineage(
      input({
        loggedBy: "e/p/maker",
        usedBy: ["e/p/train", "e/p/eval"],
        runArtifacts: new Map([
          ["e/p/maker", { inputs: [artifact("raw", 0), artifact("vocab", 3, "other/q")], outputs: [artifact("data", 1)] }],
          ["e/p/train", { inputs: [artifact("data", 1)], outputs: [artifact("model", 0, "e/p", "model")] }],
        ]),
        runNames: new Map([["e/p/maker", "prepare-data"]]),
      }),
    );
    expect(nodes.map((n) => [n.id, n.hop, n.label])).toEqual([
      ["artifact:data:v1", 0, "data:v1"],
      ["run:e/p/maker", -1, "prepare-data"],
      ["artifact:raw:v0", -2, "raw:v0"],
      ["artifact:other/q/vocab:v3", -2, "other/q/vocab:v3"],
      ["run:e/p/train", 1, "train"],
      ["artifact:model:v0", 2, "model:v0"],
      ["run:e/p/eval", 1, "eval"],
    ]);
    expect(edges).toEqual([
      { from: "run:e/p/maker", to: "artifact:data:v1" },
      { from: "artifact:raw:v0", to: "run:e/p/maker" },
      { from: "artifact:other/q/vocab:v3", to: "run:e/p/maker" },
      { from: "artifact:data:v1", to: "run:e/p/train" },
      { from: "run:e/p/train", to: "artifact:model:v0" },
      { from: "artifact:data:v1", to: "run:e/p/eval" },
    ]);
    expect(nodes.find((n) => n.id === "artifact:data:v1")).toMatchObject({ kind: "artifact", center: true });
    expect(nodes.find((n) => n.id === "run:e/p/eval")).toMatchObject({ kind: "run", entity: "e", project: "p", runId: "eval", detail: "run eval" });
    expect(nodes.find((n) => n.id === "artifact:model:v0")).toMatchObject({ detail: "model", name: "model", version: "v0", center: false });
  });

  it("is the version alone when no run logged or used it", () => {
    const { nodes, edges } = buildLineage(input({}));
    expect(nodes.map((n) => n.id)).toEqual(["artifact:data:v1"]);
    expect(edges).toEqual([]);
  });

  it("draws a run that logged and used the version once, with both edges", () => {
    const { nodes, edges } = buildLineage(input({ loggedBy: "e/p/r", usedBy: ["e/p/r", "x/y/other"] }));
    expect(nodes.map((n) => [n.id, n.hop, n.label])).toEqual([
      ["artifact:data:v1", 0, "data:v1"],
      ["run:e/p/r", -1, "r"],
      ["run:x/y/other", 1, "other"],
    ]);
    expect(nodes[2]).toMatchObject({ detail: "run x/y/other" });
    expect(edges).toContainEqual({ from: "artifact:data:v1", to: "run:e/p/r" });
    expect(edges).toHaveLength(3);
  });

  it("folds what does not fit in a column into a +N more node, keeping its edges", () => {
    const usedBy = Array.from({ length: 7 }, (_, i) => `e/p/u${i}`);
    const { nodes, edges } = buildLineage(input({ usedBy }), 4);
    const column = nodes.filter((n) => n.hop === 1);
    expect(column.map((n) => n.id)).toEqual(["run:e/p/u0", "run:e/p/u1", "run:e/p/u2", "more:1"]);
    expect(column[3]).toMatchObject({ kind: "more", label: "+4 more", detail: "runs" });
    expect(edges.filter((e) => e.to === "more:1")).toEqual([{ from: "artifact:data:v1", to: "more:1" }]);
    expect(edges).toHaveLength(4);
    // The runs expanded are the ones drawn.
    expect(runsToExpand("e/p/m", usedBy, 4)).toEqual(["e/p/m", "e/p/u0", "e/p/u1", "e/p/u2"]);
    expect(runsToExpand(null, usedBy.slice(0, 4), 4)).toEqual(usedBy.slice(0, 4));
    expect(runsToExpand("e/p/u0", ["e/p/u0", "e/p/u1"], 4)).toEqual(["e/p/u0", "e/p/u1"]);
  });

  it("names artifacts of other projects with their project", () => {
    expect(artifactNodeId({ entity: "e", project: "p", name: "d", version: "v0" }, "e", "p")).toBe("artifact:d:v0");
    expect(artifactNodeId({ entity: "e", project: "q", name: "d", version: "v0" }, "e", "p")).toBe("artifact:e/q/d:v0");
  });
});

describe("the lineage layout", () => {
  const { nodeWidth: w, nodeHeight: h, gapX, gapY, pad } = LAYOUT;
  const node = (id: string, hop: number) => ({ id, hop });

  it("puts a column per hop present, left to right, rows centered on the tallest", () => {
    const nodes = [node("c", 0), node("p", -1), node("u1", 1), node("u2", 1), node("u3", 1)];
    const edges = [
      { from: "p", to: "c" },
      { from: "c", to: "u1" },
      { from: "c", to: "u2" },
      { from: "c", to: "u3" },
    ];
    const layout = layoutLineage(nodes, edges);
    const at = Object.fromEntries(layout.nodes.map((p) => [p.node.id, [p.x, p.y]]));
    const row = (i: number) => pad + i * (h + gapY);
    expect(at.p).toEqual([pad, row(1)]);
    expect(at.c).toEqual([pad + w + gapX, row(1)]);
    expect([at.u1, at.u2, at.u3]).toEqual([0, 1, 2].map((i) => [pad + 2 * (w + gapX), row(i)]));
    expect(layout.width).toBe(3 * w + 2 * gapX + 2 * pad);
    expect(layout.height).toBe(3 * h + 2 * gapY + 2 * pad);
    expect(layout.edges).toHaveLength(4);
    // An edge leaves its node's right side and enters the other's left side.
    expect(layout.edges[0].d.startsWith(`M${pad + w},${row(1) + h / 2} `)).toBe(true);
    expect(layout.edges[0].d.endsWith(` ${pad + w + gapX},${row(1) + h / 2}`)).toBe(true);
  });

  it("skips missing hops, so a version nobody logged starts the graph", () => {
    const layout = layoutLineage([node("c", 0), node("u", 1), node("o", 2)], [{ from: "c", to: "u" }, { from: "u", to: "o" }]);
    expect(layout.nodes.map((p) => p.x)).toEqual([pad, pad + w + gapX, pad + 2 * (w + gapX)]);
    const single = layoutLineage([node("c", 0)], []);
    expect([single.width, single.height]).toEqual([w + 2 * pad, h + 2 * pad]);
    expect(layoutLineage([], [])).toMatchObject({ nodes: [], edges: [], width: 0, height: 0 });
  });

  it("orders an outer column by its neighbors' rows, so edges do not cross", () => {
    // u1 over u2; u2's output listed first would cross u1's.
    const nodes = [node("c", 0), node("u1", 1), node("u2", 1), node("o2", 2), node("o1", 2), node("lonely", 2)];
    const edges = [
      { from: "c", to: "u1" },
      { from: "c", to: "u2" },
      { from: "u2", to: "o2" },
      { from: "u1", to: "o1" },
    ];
    const layout = layoutLineage(nodes, edges);
    const column = layout.nodes.filter((p) => p.node.hop === 2).sort((a, b) => a.y - b.y);
    expect(column.map((p) => p.node.id)).toEqual(["o1", "o2", "lonely"]);
    // Inputs left of the logging run, the same way.
    const left = layoutLineage(
      [node("c", 0), node("p", -1), node("q", -1), node("iq", -2), node("ip", -2)],
      [{ from: "p", to: "c" }, { from: "q", to: "c" }, { from: "iq", to: "q" }, { from: "ip", to: "p" }],
    );
    expect(left.nodes.filter((p) => p.node.hop === -2).sort((a, b) => a.y - b.y).map((p) => p.node.id)).toEqual(["ip", "iq"]);
  });

  it("draws an edge back to an earlier column from left to right side, below the forward one", () => {
    const layout = layoutLineage([node("r", -1), node("c", 0)], [{ from: "r", to: "c" }, { from: "c", to: "r" }]);
    const [forward, back] = layout.edges;
    expect(forward.d.startsWith(`M${pad + w},`)).toBe(true);
    expect(back.d.startsWith(`M${pad + w + gapX},${pad + (h * 3) / 4} `)).toBe(true);
    expect(back.d.endsWith(` ${pad + w},${pad + (h * 3) / 4}`)).toBe(true);
  });

  it("keeps the nodes it is given, with their data", () => {
    const layout = layoutLineage([{ id: "c", hop: 0, label: "x" }], []);
    expect(layout.nodes[0].node).toEqual({ id: "c", hop: 0, label: "x" });
  });
});
