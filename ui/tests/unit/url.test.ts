import { describe, expect, it } from "vitest";
import { DEFAULT_VIEW, decodeView, encodeView, parseRoute, routePath, type ViewState } from "../../src/lib/url";

describe("view state in the URL", () => {
  it("writes nothing for the default view", () => {
    expect(encodeView(DEFAULT_VIEW)).toBe("");
    expect(decodeView("")).toEqual(DEFAULT_VIEW);
  });

  it("round-trips every field", () => {
    const view: ViewState = {
      filter: { $and: [{ "config.lr": { $gt: 0.001 } }, { state: { $in: ["finished", "failed"] } }] },
      search: "^resnet-(a|b)",
      sort: ["-summary.acc", "name"],
      group: "config.optimizer",
      hidden: ["notes", "job_type"],
      pinned: ["summary.acc"],
      order: ["state", "summary.acc", "created_at"],
      truncate: "start",
      hiddenRuns: ["abc123", "def456"],
      x: "epoch",
      smoothing: 0.6,
      logScale: true,
      line: "last",
      lineGroup: "config.optimizer",
      panelSearch: "loss",
      tab: "logs",
    };
    const query = encodeView(view);
    expect(query.startsWith("?")).toBe(true);
    expect(decodeView(query)).toEqual(view);
  });

  it("keeps characters that need escaping", () => {
    const view = { ...DEFAULT_VIEW, search: "a&b=c?#%", filter: { name: { $regex: "x&y" } } };
    expect(decodeView(encodeView(view))).toEqual(view);
  });

  it("falls back to defaults for malformed values", () => {
    const v = decodeView("?filter=%7Bnot-json&trunc=sideways&smooth=abc&line=median&x=");
    expect(v.filter).toBeNull();
    expect(v.truncate).toBe("middle");
    expect(v.smoothing).toBe(0);
    expect(v.line).toBe("mean");
    expect(v.x).toBe("_step");
    expect(decodeView("?smooth=7").smoothing).toBe(0.99);
  });
});

describe("routes", () => {
  it("parses and writes each page", () => {
    const routes = [
      { page: "home" },
      { page: "project", entity: "nico", project: "awesome-project", view: "workspace" },
      { page: "project", entity: "nico", project: "awesome-project", view: "table" },
      { page: "run", entity: "nico", project: "awesome-project", runId: "1jx1ud12" },
    ] as const;
    for (const route of routes) expect(parseRoute(routePath(route))).toEqual(route);
  });

  it("escapes names with slashes and spaces", () => {
    const route = { page: "run", entity: "a b", project: "p/q", runId: "r%1" } as const;
    expect(routePath(route)).toBe("/a%20b/p%2Fq/runs/r%251");
    expect(parseRoute(routePath(route))).toEqual(route);
  });

  it("opens a run at the seed's URL, /<entity>/<project>/<run-id>", () => {
    expect(parseRoute("/nico/awesome-project/1jx1ud12")).toEqual({ page: "run", entity: "nico", project: "awesome-project", runId: "1jx1ud12" });
    expect(parseRoute("/nico/awesome-project/runs/1jx1ud12")).toEqual({ page: "run", entity: "nico", project: "awesome-project", runId: "1jx1ud12" });
    expect(parseRoute("/nico/awesome-project/table")).toEqual({ page: "project", entity: "nico", project: "awesome-project", view: "table" });
    expect(parseRoute("/nico/awesome-project/runs")).toEqual({ page: "project", entity: "nico", project: "awesome-project", view: "table" });
  });

  it("reports an unknown path, including malformed escapes", () => {
    expect(parseRoute("/a/b/c/d/e")).toEqual({ page: "missing", path: "/a/b/c/d/e" });
    expect(parseRoute("/%E0%A4%A/x")).toEqual({ page: "missing", path: "/%E0%A4%A/x" });
  });
});
