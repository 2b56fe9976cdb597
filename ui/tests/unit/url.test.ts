import { describe, expect, it } from "vitest";
import { DEFAULT_VIEW, decodeView, encodeView, parseRoute, routePath, routeUrl, safeNext, type ViewState } from "../../src/lib/url";

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
      compare: "v0",
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

  it("gives the artifacts view its collection and version in the path", () => {
    const routes = [
      { page: "project", entity: "nico", project: "p", view: "artifacts" },
      { page: "project", entity: "nico", project: "p", view: "artifacts", artifact: "mnist" },
      { page: "project", entity: "nico", project: "p", view: "artifacts", artifact: "mnist", version: "v3" },
      { page: "project", entity: "nico", project: "p", view: "artifacts", artifact: "mnist", version: "best" },
      { page: "project", entity: "teams", project: "p", view: "artifacts", artifact: "a.b-c_d", version: "v0" },
    ] as const;
    for (const route of routes) expect(parseRoute(routePath(route))).toStrictEqual(route);
    expect(routePath(routes[2])).toBe("/nico/p/artifacts/mnist/v3");
    // A version without a collection is nothing to show.
    expect(routePath({ page: "project", entity: "e", project: "p", view: "artifacts", version: "v1" })).toBe("/e/p/artifacts");
    // Aliases are free text: they are escaped.
    const odd = { page: "project", entity: "e", project: "p", view: "artifacts", artifact: "m", version: "a/b c" } as const;
    expect(routePath(odd)).toBe("/e/p/artifacts/m/a%2Fb%20c");
    expect(parseRoute(routePath(odd))).toEqual(odd);
    expect(parseRoute("/e/p/artifacts/m/v1/x")).toEqual({ page: "missing", path: "/e/p/artifacts/m/v1/x" });
  });

  it("keeps the other views and the runs where they were", () => {
    expect(parseRoute("/e/p")).toStrictEqual({ page: "project", entity: "e", project: "p", view: "workspace" });
    expect(parseRoute("/e/p/workspace")).toStrictEqual({ page: "project", entity: "e", project: "p", view: "workspace" });
    expect(parseRoute("/e/p/runs/artifacts")).toEqual({ page: "run", entity: "e", project: "p", runId: "artifacts" });
    expect(parseRoute("/e/p/abc123")).toEqual({ page: "run", entity: "e", project: "p", runId: "abc123" });
  });

  it("writes the version compared with on the artifacts view's URLs only", () => {
    const view = { ...DEFAULT_VIEW, compare: "v0" };
    const version = { page: "project", entity: "e", project: "p", view: "artifacts", artifact: "m", version: "v1" } as const;
    expect(routeUrl(version, view)).toBe("/e/p/artifacts/m/v1?compare=v0");
    expect(routeUrl({ ...version, version: undefined }, view)).toBe("/e/p/artifacts/m?compare=v0");
    expect(routeUrl({ page: "project", entity: "e", project: "p", view: "artifacts" }, view)).toBe("/e/p/artifacts");
    expect(routeUrl({ page: "project", entity: "e", project: "p", view: "table" }, view)).toBe("/e/p/table");
    expect(routeUrl({ page: "run", entity: "e", project: "p", runId: "r" }, { ...view, tab: "artifacts" })).toBe("/e/p/runs/r?tab=artifacts");
    expect(decodeView("?compare=latest").compare).toBe("latest");
  });

  it("reports an unknown path, including malformed escapes", () => {
    expect(parseRoute("/a/b/c/d/e")).toEqual({ page: "missing", path: "/a/b/c/d/e" });
    expect(parseRoute("/%E0%A4%A/x")).toEqual({ page: "missing", path: "/%E0%A4%A/x" });
  });
});

describe("account pages", () => {
  it("parses and writes each page", () => {
    const routes = [
      { page: "signin", next: "" },
      { page: "signin", next: "/nico/awesome-project/table?sort=-name&q=a%26b" },
      { page: "setup", token: "" },
      { page: "setup", token: "t0k+en/=" },
      { page: "settings" },
      { page: "team", team: "vision" },
      { page: "team", team: "a b/c" },
      { page: "audit" },
    ] as const;
    for (const route of routes) {
      const url = new URL(routePath(route), "http://host");
      expect(parseRoute(url.pathname, url.search)).toEqual(route);
    }
  });

  it("reads the setup token and the way back from the query", () => {
    expect(parseRoute("/setup", "?token=abc123")).toEqual({ page: "setup", token: "abc123" });
    expect(parseRoute("/signin", "?next=%2Fnico%2Fp%3Ftab%3Dlogs")).toEqual({ page: "signin", next: "/nico/p?tab=logs" });
    expect(parseRoute("/signin")).toEqual({ page: "signin", next: "" });
    expect(routePath({ page: "signin", next: "/a/b?x=1&y=2" })).toBe("/signin?next=%2Fa%2Fb%3Fx%3D1%26y%3D2");
  });

  it("keeps the view state out of account pages' URLs", () => {
    const view = { ...DEFAULT_VIEW, search: "resnet", tab: "logs" };
    expect(routeUrl({ page: "settings" }, view)).toBe("/settings");
    expect(routeUrl({ page: "setup", token: "abc" }, view)).toBe("/setup?token=abc");
    expect(routeUrl({ page: "project", entity: "e", project: "p", view: "table" }, view)).toBe("/e/p/table?q=resnet&tab=logs");
  });

  it("leaves a project of an entity named teams reachable", () => {
    const route = { page: "project", entity: "teams", project: "p", view: "workspace" } as const;
    expect(routePath(route)).toBe("/teams/p/workspace");
    expect(parseRoute(routePath(route))).toEqual(route);
    expect(parseRoute("/teams/p/table")).toEqual({ ...route, view: "table" });
    expect(parseRoute("/teams/p/runs/r1")).toEqual({ page: "run", entity: "teams", project: "p", runId: "r1" });
    expect(parseRoute("/teams/p")).toEqual({ page: "team", team: "p" });
  });

  it("takes account page names as pages, not as entities", () => {
    expect(parseRoute("/settings")).toEqual({ page: "settings" });
    expect(parseRoute("/settings/p")).toEqual({ page: "project", entity: "settings", project: "p", view: "workspace" });
    expect(parseRoute("/nobody")).toEqual({ page: "missing", path: "/nobody" });
  });
});

describe("where to go after signing in", () => {
  it("keeps paths on this site, with their query", () => {
    expect(safeNext("/nico/p/table?sort=-name")).toBe("/nico/p/table?sort=-name");
    expect(safeNext("/")).toBe("/");
  });

  it("goes home for other sites, nothing, or the sign-in pages", () => {
    for (const next of [null, undefined, "", "https://evil.example/", "//evil.example/x", "/\\evil.example", "/\t/evil.example", "javascript:alert(1)", "/signin?next=/x", "/setup?token=a"]) {
      expect(safeNext(next), String(next)).toBe("");
    }
  });

  it("does so when the page is parsed", () => {
    expect(parseRoute("/signin", "?next=%2F%2Fevil.example")).toEqual({ page: "signin", next: "" });
  });
});
