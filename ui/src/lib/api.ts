import type { components } from "./api-schema";

type Schemas = components["schemas"];
// The REST API, typed. Errors carry the server's code and message.
import type { BracketDecision, SweepInfo, TrialInfo } from "./sweep";

export type EntityInfo = Schemas["EntityInfo"];

export type ProjectInfo = Schemas["ProjectInfo"];

export type RunState = Schemas["RunState"];

export type RunInfo = Schemas["RunInfo"];

export type RunPage = Schemas["RunPage"];

export type Buckets = Schemas["Buckets"];

export type KeySeries = Schemas["KeySeries"];

export interface ProjectSeries {
  x: string;
  x_min: number | null;
  x_max: number | null;
  buckets: number;
  runs: { run_id: string; series: KeySeries[] }[];
}

export type ProjectKey = Schemas["ProjectKey"];

export type KeyInfo = Schemas["KeyInfo"];

export type ColumnStats = Schemas["ColumnStats"];

export type RunGroup = Schemas["RunGroup"];

export type GroupPage = Schemas["GroupPage"];

export interface ConsoleLine {
  line: number;
  stream: "stdout" | "stderr";
  time: string;
  text: string;
}

export type HistogramSeries = Schemas["HistogramSeries"];

export type AlertInfo = Schemas["AlertInfo"];

export type FileInfo = Schemas["FileInfo"];

export type ArtifactInfo = Schemas["ArtifactInfo"];

export type CollectionInfo = Schemas["CollectionInfo"];

export type ManifestEntry = Schemas["ManifestEntry"];

export type ArtifactLineage = Schemas["ArtifactLineage"];

export type Viewer = Schemas["Viewer"];

export type TeamRole = Schemas["Role"];

export type ApiKey = Schemas["ApiKey"];

export interface Member {
  user: string;
  role: TeamRole;
}

export type AuditEntry = Schemas["AuditEntry"];

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const enc = encodeURIComponent;

/** Called when a request answers 401: the session is gone (or never was), so sign in again. */
let onUnauthorized: (() => void) | null = null;
export function setUnauthorizedHandler(handler: () => void) {
  onUnauthorized = handler;
}

interface Options {
  /** A 401 is the answer itself (wrong password, bad setup token), not a lost session. */
  expect401?: boolean;
}

async function request<T>(method: string, url: string, body?: unknown, options: Options = {}): Promise<T> {
  const init: RequestInit = { method, headers: {}, credentials: "same-origin" };
  // The server refuses writes authenticated by the session cookie unless they are JSON (a form
  // on another site cannot send that content type), so every write sends a JSON body.
  if (body !== undefined || method !== "GET") {
    init.body = JSON.stringify(body ?? {});
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  const response = await fetch(url, init);
  if (!response.ok) {
    let code = "http_error";
    let message = `${method} ${url}: HTTP ${response.status}`;
    try {
      const error = await response.json();
      code = error.code ?? code;
      message = error.message ?? message;
    } catch {
      // not JSON: keep the status line
    }
    if (response.status === 401 && !options.expect401) onUnauthorized?.();
    throw new ApiError(response.status, code, message);
  }
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

const runUrl = (e: string, p: string, id: string) => `/api/v1/runs/${enc(e)}/${enc(p)}/${enc(id)}`;
const artifactUrl = (e: string, p: string, name: string, version?: string) =>
  `/api/v1/artifacts/${enc(e)}/${enc(p)}/${enc(name)}${version === undefined ? "" : `/${enc(version)}`}`;
const projectUrl = (e: string, p: string) => `/api/v1/projects/${enc(e)}/${enc(p)}`;

export const api = {
  entities: () => request<EntityInfo[]>("GET", "/api/v1/entities"),
  projects: (entity: string) => request<ProjectInfo[]>("GET", `/api/v1/entities/${enc(entity)}/projects`),
  project: (entity: string, project: string) => request<ProjectInfo>("GET", projectUrl(entity, project)),
  searchRuns: (entity: string, project: string, body: { filter?: unknown; sort?: string[]; limit?: number; offset?: number }) =>
    request<RunPage>("POST", `${projectUrl(entity, project)}/runs/search`, body),
  groupRuns: (entity: string, project: string, body: { by: string; filter?: unknown; columns: string[]; bins?: number }) =>
    request<GroupPage>("POST", `${projectUrl(entity, project)}/runs/groups`, body),
  columns: (entity: string, project: string) =>
    request<{ config: string[]; summary: string[] }>("GET", `${projectUrl(entity, project)}/columns`),
  /** A project's sweeps, newest first; one sweep, its trials; pausing, resuming, stopping, canceling it. */
  sweeps: (e: string, p: string) => request<SweepInfo[]>("GET", `${projectUrl(e, p)}/sweeps`),
  sweep: (e: string, p: string, id: string) => request<SweepInfo>("GET", `/api/v1/sweeps/${enc(e)}/${enc(p)}/${enc(id)}`),
  sweepTrials: (e: string, p: string, id: string) => request<TrialInfo[]>("GET", `/api/v1/sweeps/${enc(e)}/${enc(p)}/${enc(id)}/trials`),
  sweepDecisions: (e: string, p: string, id: string) => request<BracketDecision[]>("GET", `/api/v1/sweeps/${enc(e)}/${enc(p)}/${enc(id)}/decisions`),
  setSweepState: (e: string, p: string, id: string, state: SweepInfo["state"]) =>
    request<SweepInfo>("PATCH", `/api/v1/sweeps/${enc(e)}/${enc(p)}/${enc(id)}`, { state }),
  /** The caller's layout of a project's workspace (null while automatic); saving and resetting it. */
  workspace: (entity: string, project: string) => request<{ layout: unknown }>("GET", `${projectUrl(entity, project)}/workspace`),
  saveWorkspace: (entity: string, project: string, layout: unknown) =>
    request<{ layout: unknown }>("PUT", `${projectUrl(entity, project)}/workspace`, { layout }),
  resetWorkspace: (entity: string, project: string) => request<{ layout: null }>("DELETE", `${projectUrl(entity, project)}/workspace`),
  projectKeys: (entity: string, project: string) => request<ProjectKey[]>("GET", `${projectUrl(entity, project)}/keys`),
  projectSeries: (
    entity: string,
    project: string,
    body: {
      run_ids: string[];
      keys: string[];
      x?: string;
      buckets?: number;
      x_min?: number;
      x_max?: number;
      fields?: string[];
      float32?: boolean;
    },
  ) => request<ProjectSeries>("POST", `${projectUrl(entity, project)}/series`, body),
  run: (e: string, p: string, id: string) => request<RunInfo>("GET", runUrl(e, p, id)),
  updateRun: (e: string, p: string, id: string, patch: Partial<Pick<RunInfo, "name" | "notes" | "tags" | "group" | "job_type">>) =>
    request<RunInfo>("PATCH", runUrl(e, p, id), patch),
  deleteRun: (e: string, p: string, id: string) => request<void>("DELETE", runUrl(e, p, id), {}),
  /** Moves runs to entity/project, all or none (409 when an id is taken there). */
  moveRuns: (runs: string[], entity: string, project: string) =>
    request<{ runs: string[] }>("POST", "/api/v1/runs/move", { runs, entity, project }),
  stopRun: (e: string, p: string, id: string) => request<RunInfo>("POST", `${runUrl(e, p, id)}/stop`, {}),
  keys: (e: string, p: string, id: string) => request<KeyInfo[]>("GET", `${runUrl(e, p, id)}/keys`),
  console: (e: string, p: string, id: string, fromLine = 0, limit = 5000) =>
    request<{ lines: ConsoleLine[]; next_line: number | null }>(
      "GET",
      `${runUrl(e, p, id)}/console?from_line=${fromLine}&limit=${limit}`,
    ),
  files: (e: string, p: string, id: string) => request<FileInfo[]>("GET", `${runUrl(e, p, id)}/files`),
  alerts: (e: string, p: string, id: string) => request<AlertInfo[]>("GET", `${runUrl(e, p, id)}/alerts`),
  forks: (e: string, p: string, id: string) => request<string[]>("GET", `${runUrl(e, p, id)}/forks`),
  fileUrl: (e: string, p: string, id: string, path: string) =>
    `${runUrl(e, p, id)}/files/${path.split("/").map(enc).join("/")}`,

  /** The artifact versions a run used (inputs) and logged (outputs). */
  /** One key's every value for several runs (a media panel's), in one request. */
  projectValues: (e: string, p: string, runIds: string[], key: string) =>
    request<{ key: string; runs: { run_id: string; steps: number[]; values: unknown[] }[] }>("POST", `${projectUrl(e, p)}/values`, { run_ids: runIds, key }),
  /** A histogram key of several runs, merged per bucket of steps, in one request. */
  projectHistograms: (e: string, p: string, runIds: string[], key: string, buckets = 60, bins?: number) =>
    request<{ key: string; runs: { run_id: string; series: HistogramSeries }[] }>("POST", `${projectUrl(e, p)}/histograms`, {
      run_ids: runIds,
      key,
      buckets,
      ...(bins ? { bins } : {}),
    }),
  histograms: (e: string, p: string, id: string, key: string, buckets = 60) =>
    request<HistogramSeries>("GET", `${runUrl(e, p, id)}/histograms?key=${encodeURIComponent(key)}&buckets=${buckets}`),
  runArtifacts: (e: string, p: string, id: string) => request<{ inputs: ArtifactInfo[]; outputs: ArtifactInfo[] }>("GET", `${runUrl(e, p, id)}/artifacts`),
  /** A project's collections, by type and name. */
  collections: (e: string, p: string) => request<CollectionInfo[]>("GET", `${projectUrl(e, p)}/artifacts`),
  /** A collection's versions, newest first. */
  artifactVersions: (e: string, p: string, name: string) => request<ArtifactInfo[]>("GET", artifactUrl(e, p, name)),
  /** `version`: vN or an alias. */
  manifest: (e: string, p: string, name: string, version: string) => request<ManifestEntry[]>("GET", `${artifactUrl(e, p, name, version)}/manifest`),
  lineage: (e: string, p: string, name: string, version: string) => request<ArtifactLineage>("GET", `${artifactUrl(e, p, name, version)}/lineage`),
  /** A stored file's bytes (as an attachment): a link's href. */
  artifactFileUrl: (e: string, p: string, name: string, version: string, path: string) =>
    `${artifactUrl(e, p, name, version)}/files/${path.split("/").map(enc).join("/")}`,

  // ----- accounts -----
  viewer: () => request<Viewer>("GET", "/api/v1/viewer"),
  setupNeeded: () => request<{ needed: boolean }>("GET", "/api/v1/setup"),
  /** Creates the first admin with the token the server printed, and signs them in. */
  setup: (token: string, username: string, password: string) =>
    request<Viewer>("POST", "/api/v1/setup", { token, username, password }, { expect401: true }),
  signIn: (username: string, password: string) =>
    request<Viewer>("POST", "/api/v1/session", { username, password }, { expect401: true }),
  signOut: () => request<void>("DELETE", "/api/v1/session", {}, { expect401: true }),
  apiKeys: () => request<ApiKey[]>("GET", "/api/v1/keys"),
  /** The secret is in this answer only: the server keeps its hash. */
  createKey: (name: string, expiresDays: number | null) =>
    request<{ key: ApiKey; secret: string }>("POST", "/api/v1/keys", { name, expires_days: expiresDays }),
  revokeKey: (id: number) => request<ApiKey>("DELETE", `/api/v1/keys/${id}`, {}),
  createTeam: (name: string) => request<{ name: string }>("POST", "/api/v1/teams", { name }),
  members: (team: string) => request<Member[]>("GET", `/api/v1/teams/${enc(team)}/members`),
  setMember: (team: string, user: string, role: TeamRole) =>
    request<unknown>("PUT", `/api/v1/teams/${enc(team)}/members/${enc(user)}`, { role }),
  removeMember: (team: string, user: string) => request<void>("DELETE", `/api/v1/teams/${enc(team)}/members/${enc(user)}`, {}),
  setVisibility: (entity: string, project: string, visibility: "private" | "public") =>
    request<ProjectInfo>("PATCH", projectUrl(entity, project), { visibility }),
  audit: (limit: number) => request<AuditEntry[]>("GET", `/api/v1/audit?limit=${limit}`),
};

export interface RunEvent {
  kind: string;
  entity: string;
  project: string;
  run_id: string;
  state: RunState | null;
  history_offset: number | null;
  time: string;
}

/** Subscribes to live changes of a project's runs; returns the function that unsubscribes. */
export function subscribe(
  filter: { entity: string; project: string; run_id?: string },
  onEvent: (event: RunEvent | null) => void,
): () => void {
  const params = new URLSearchParams({ entity: filter.entity, project: filter.project });
  if (filter.run_id) params.set("run_id", filter.run_id);
  const source = new EventSource(`/api/v1/events?${params}`);
  source.addEventListener("run", (e) => onEvent(JSON.parse((e as MessageEvent).data)));
  // Events were missed: the view reloads what it shows.
  source.addEventListener("resync", () => onEvent(null));
  return () => source.close();
}
