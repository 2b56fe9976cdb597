// The view state lives in the URL, so that a copied link opens the same view: the filter, sort,
// grouping, columns, the runs shown in the workspace, chart settings, the selected run and tab,
// the artifact version an artifact is compared with. Which artifact and version are shown is in
// the path (/<entity>/<project>/artifacts/<name>/<version>), as pages of their own.

export interface ViewState {
  /** The filter builder's Mongo-style JSON, or null. */
  filter: unknown;
  /** A name regex typed in the search box. */
  search: string;
  /** Sort keys, `-` in front for descending. */
  sort: string[];
  /** Column to group by, or "". */
  group: string;
  /** Hidden columns, pinned columns, and the order of columns that were dragged. */
  hidden: string[];
  pinned: string[];
  order: string[];
  /** How long names are cut. */
  truncate: "end" | "middle" | "start";
  /** Runs hidden in the workspace (eye icons), and runs picked when there are many. */
  hiddenRuns: string[];
  /** Workspace chart settings. */
  x: string;
  smoothing: number;
  logScale: boolean;
  line: "mean" | "last";
  /** Workspace: one line per value of this column (mean line, min–max band), or "" for one per run. */
  lineGroup: string;
  panelSearch: string;
  /** Run page tab. */
  tab: string;
  /** Artifacts view: the version (vN or alias) the shown one is compared with, or "". */
  compare: string;
}

export const DEFAULT_VIEW: ViewState = {
  filter: null,
  search: "",
  sort: [],
  group: "",
  hidden: [],
  pinned: [],
  order: [],
  truncate: "middle",
  hiddenRuns: [],
  x: "_step",
  smoothing: 0,
  logScale: false,
  line: "mean",
  lineGroup: "",
  panelSearch: "",
  tab: "overview",
  compare: "",
};

function list(value: string | null): string[] {
  return value ? value.split(",").filter((x) => x !== "") : [];
}

/** Reads the view from a query string; anything malformed falls back to the default. */
export function decodeView(search: string): ViewState {
  const p = new URLSearchParams(search);
  let filter: unknown = null;
  const rawFilter = p.get("filter");
  if (rawFilter) {
    try {
      filter = JSON.parse(rawFilter);
    } catch {
      filter = null;
    }
  }
  const truncate = p.get("trunc");
  const line = p.get("line");
  const smoothing = Number(p.get("smooth") ?? "0");
  return {
    filter,
    search: p.get("q") ?? "",
    sort: list(p.get("sort")),
    group: p.get("group") ?? "",
    hidden: list(p.get("hide")),
    pinned: list(p.get("pin")),
    order: list(p.get("order")),
    truncate: truncate === "end" || truncate === "start" ? truncate : "middle",
    hiddenRuns: list(p.get("off")),
    x: p.get("x") || "_step",
    smoothing: Number.isFinite(smoothing) ? Math.min(Math.max(smoothing, 0), 0.99) : 0,
    logScale: p.get("log") === "1",
    line: line === "last" ? "last" : "mean",
    lineGroup: p.get("lgroup") ?? "",
    panelSearch: p.get("panels") ?? "",
    tab: p.get("tab") || "overview",
    compare: p.get("compare") ?? "",
  };
}

/** Writes the view as a query string, leaving out what is at its default. */
export function encodeView(view: ViewState): string {
  const p = new URLSearchParams();
  if (view.filter !== null && view.filter !== undefined) p.set("filter", JSON.stringify(view.filter));
  if (view.search) p.set("q", view.search);
  if (view.sort.length) p.set("sort", view.sort.join(","));
  if (view.group) p.set("group", view.group);
  if (view.hidden.length) p.set("hide", view.hidden.join(","));
  if (view.pinned.length) p.set("pin", view.pinned.join(","));
  if (view.order.length) p.set("order", view.order.join(","));
  if (view.truncate !== "middle") p.set("trunc", view.truncate);
  if (view.hiddenRuns.length) p.set("off", view.hiddenRuns.join(","));
  if (view.x !== "_step") p.set("x", view.x);
  if (view.smoothing > 0) p.set("smooth", String(view.smoothing));
  if (view.logScale) p.set("log", "1");
  if (view.line !== "mean") p.set("line", view.line);
  if (view.lineGroup) p.set("lgroup", view.lineGroup);
  if (view.panelSearch) p.set("panels", view.panelSearch);
  if (view.tab !== "overview") p.set("tab", view.tab);
  if (view.compare) p.set("compare", view.compare);
  const s = p.toString();
  return s ? `?${s}` : "";
}

/** The app's routes. */
export type Route =
  | { page: "home" }
  /** `artifact`, `version`: the artifacts view's collection and its version (vN or an alias);
   * absent when none is chosen (no version: the newest). */
  | { page: "project"; entity: string; project: string; view: "workspace" | "table" | "artifacts" | "sweeps"; artifact?: string; version?: string; sweep?: string }
  | { page: "run"; entity: string; project: string; runId: string }
  /** `next`: the path and query to return to once signed in ("" for home). */
  | { page: "signin"; next: string }
  /** `token`: the one-time token the server printed with the setup link. */
  | { page: "setup"; token: string }
  | { page: "settings" }
  | { page: "team"; team: string }
  | { page: "audit" }
  | { page: "missing"; path: string };

/** Pages of one segment: an entity has no page of its own, so these names take nothing from runs. */
const ACCOUNT_PAGES = ["signin", "setup", "settings", "audit"] as const;

/** The pages of runs and projects carry the view state in their query; account pages carry their own. */
export function carriesView(route: Route): boolean {
  return route.page === "home" || route.page === "project" || route.page === "run" || route.page === "missing";
}

export function parseRoute(pathname: string, search = ""): Route {
  let parts: string[];
  try {
    parts = pathname
      .split("/")
      .filter((p) => p !== "")
      .map((p) => decodeURIComponent(p));
  } catch {
    return { page: "missing", path: pathname };
  }
  const query = new URLSearchParams(search);
  if (parts.length === 0) return { page: "home" };
  if (parts.length === 1 && (ACCOUNT_PAGES as readonly string[]).includes(parts[0])) {
    switch (parts[0] as (typeof ACCOUNT_PAGES)[number]) {
      case "signin":
        return { page: "signin", next: safeNext(query.get("next")) };
      case "setup":
        return { page: "setup", token: query.get("token") ?? "" };
      case "settings":
        return { page: "settings" };
      case "audit":
        return { page: "audit" };
    }
  }
  // /teams/<team> is the team's page, so a project of an entity named "teams" is reached at
  // /teams/<project>/workspace (routePath writes it so).
  if (parts.length === 2 && parts[0] === "teams") return { page: "team", team: parts[1] };
  if (parts.length === 2) return { page: "project", entity: parts[0], project: parts[1], view: "workspace" };
  if (parts.length === 3 && (parts[2] === "table" || parts[2] === "workspace")) {
    return { page: "project", entity: parts[0], project: parts[1], view: parts[2] };
  }
  if (parts.length === 3 && parts[2] === "runs") return { page: "project", entity: parts[0], project: parts[1], view: "table" };
  if (parts.length === 4 && parts[2] === "runs") return { page: "run", entity: parts[0], project: parts[1], runId: parts[3] };
  // /<entity>/<project>/artifacts[/<name>[/<version>]], as W&B has it (less the type: a name is
  // one collection in a project).
  if (parts.length >= 3 && parts.length <= 5 && parts[2] === "artifacts") {
    const [entity, project, , artifact, version] = parts;
    if (artifact === undefined) return { page: "project", entity, project, view: "artifacts" };
    if (version === undefined) return { page: "project", entity, project, view: "artifacts", artifact };
    return { page: "project", entity, project, view: "artifacts", artifact, version };
  }
  // /<entity>/<project>/sweeps[/<id>]: the project's sweeps, or one sweep's page.
  if ((parts.length === 3 || parts.length === 4) && parts[2] === "sweeps") {
    const [entity, project, , sweep] = parts;
    return sweep === undefined ? { page: "project", entity, project, view: "sweeps" } : { page: "project", entity, project, view: "sweeps", sweep };
  }
  // The seed's run URL, https://HOST/<entity>/<project>/<run-id>: a run id is never "table",
  // "workspace", "runs", "artifacts" or "sweeps" (those stay the project's views; /runs/<id> reaches any run).
  if (parts.length === 3) return { page: "run", entity: parts[0], project: parts[1], runId: parts[2] };
  return { page: "missing", path: pathname };
}

export function routePath(route: Route): string {
  const e = (s: string) => encodeURIComponent(s);
  switch (route.page) {
    case "home":
      return "/";
    case "project": {
      const base = `/${e(route.entity)}/${e(route.project)}`;
      if (route.view === "sweeps") return `${base}/sweeps${route.sweep ? `/${e(route.sweep)}` : ""}`;
      if (route.view === "artifacts") {
        if (!route.artifact) return `${base}/artifacts`;
        return `${base}/artifacts/${e(route.artifact)}${route.version ? `/${e(route.version)}` : ""}`;
      }
      const view = route.view === "table" ? "/table" : route.entity === "teams" ? "/workspace" : "";
      return base + view;
    }
    case "run":
      return `/${e(route.entity)}/${e(route.project)}/runs/${e(route.runId)}`;
    case "signin":
      return route.next ? `/signin?${new URLSearchParams({ next: route.next })}` : "/signin";
    case "setup":
      return route.token ? `/setup?${new URLSearchParams({ token: route.token })}` : "/setup";
    case "settings":
      return "/settings";
    case "team":
      return `/teams/${e(route.team)}`;
    case "audit":
      return "/audit";
    case "missing":
      return route.path;
  }
}

/** A route and view as the URL the address bar shows. The version compared with is the
 * artifacts view's only: other pages' URLs leave it out (it stays in memory for the way back). */
export function routeUrl(route: Route, view: ViewState): string {
  if (!carriesView(route)) return routePath(route);
  const artifacts = route.page === "project" && route.view === "artifacts" && route.artifact;
  return routePath(route) + encodeView(artifacts ? view : { ...view, compare: "" });
}

/**
 * Where to go after signing in: a path on this site only, so that a crafted link cannot send the
 * user elsewhere, and never back to the sign-in or setup page; anything else is "" (home). The
 * URL parser decides, since browsers read `//host`, `/\host` and `/<tab>/host` as other sites.
 */
export function safeNext(next: string | null | undefined): string {
  if (!next || !next.startsWith("/")) return "";
  const base = "http://cairn.invalid";
  let url: URL;
  try {
    url = new URL(next, base);
  } catch {
    return "";
  }
  if (url.origin !== base || url.pathname === "/signin" || url.pathname === "/setup") return "";
  return url.pathname + url.search + url.hash;
}
