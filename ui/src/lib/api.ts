// The REST API, typed. Errors carry the server's code and message.
import type { BracketDecision, SweepInfo, TrialInfo } from "./sweep";

export interface EntityInfo {
  name: string;
  created_at: string;
  project_count: number;
  run_count: number;
  last_activity_at: string | null;
}

export interface ProjectInfo {
  entity: string;
  name: string;
  created_at: string;
  run_count: number;
  last_activity_at: string | null;
  /** Private: the entity's members read it; public: any signed-in user. */
  visibility: "private" | "public";
}

export type RunState = "running" | "finished" | "failed" | "crashed" | "killed";

export interface RunInfo {
  entity: string;
  project: string;
  run_id: string;
  name: string;
  seq: number;
  state: RunState;
  config: Record<string, unknown>;
  summary: Record<string, unknown>;
  tags: string[];
  notes: string;
  group: string | null;
  job_type: string | null;
  metadata: Record<string, unknown>;
  created_at: string;
  started_at: string;
  heartbeat_at: string | null;
  finished_at: string | null;
  exit_code: number | null;
  runtime_secs: number;
  duration_secs: number;
  last_step: number | null;
  stop_requested: boolean;
  offsets: Record<string, number>;
  /** The sweep it is a trial of (when read alone). */
  sweep_id?: string | null;
  /** Why its sweep stopped it (hyperband), if it did. */
  stop_reason?: string | null;
  /** When it said it may be preempted (`mark_preempting`); cleared when it resumes. */
  preempting_at?: string | null;
}

export interface RunPage {
  runs: RunInfo[];
  total: number;
  offset: number;
  limit: number;
}

/** A series' buckets; arrays not asked for (`fields`) are absent. */
export interface Buckets {
  index: number[];
  x: number[];
  x_min?: number[];
  x_max?: number[];
  min: (number | string)[];
  max: (number | string)[];
  mean?: (number | string)[];
  last?: (number | string)[];
  count: number[];
}

export interface KeySeries {
  key: string;
  buckets: Buckets;
  /** The lowest and highest x of all the series' data, whatever the grid. */
  extent?: [number, number];
}

export interface ProjectSeries {
  x: string;
  x_min: number | null;
  x_max: number | null;
  buckets: number;
  runs: { run_id: string; series: KeySeries[] }[];
}

export interface ProjectKey {
  name: string;
  stream: string;
  runs: number;
  numeric: boolean;
}

export interface KeyInfo {
  name: string;
  path: string[];
  stream: string;
  count: number;
  numeric_count: number;
  first_step: number;
  last_step: number;
  min: number | null;
  max: number | null;
}

export interface ColumnStats {
  count: number;
  min: number | null;
  max: number | null;
  mean: number | null;
  histogram: number[];
}

export interface RunGroup {
  value: unknown;
  count: number;
  columns: Record<string, ColumnStats>;
}

export interface GroupPage {
  by: string;
  groups: RunGroup[];
  ranges: Record<string, [number, number]>;
}

export interface ConsoleLine {
  line: number;
  stream: "stdout" | "stderr";
  time: string;
  text: string;
}

/** A histogram key's histograms, merged per bucket of steps. */
export interface HistogramSeries {
  key: string;
  buckets: { first_step: number; last_step: number; count: number; bins: number[]; values: number[] }[];
}

export interface AlertInfo {
  id: number;
  title: string;
  text: string;
  level: "INFO" | "WARN" | "ERROR";
  time: string;
  delivery: "pending" | "delivered" | "failed" | "stored";
  attempts: number;
  last_error: string | null;
  delivered_to: string[];
}

export interface FileInfo {
  path: string;
  size: number;
  sha256: string;
  updated_at: string;
}

/** An artifact version: a collection's `vN`, its aliases, and the run that logged it. */
export interface ArtifactInfo {
  entity: string;
  project: string;
  name: string;
  type: string;
  version: string;
  version_index: number;
  digest: string;
  size: number;
  file_count: number;
  aliases: string[];
  description: string | null;
  metadata: Record<string, unknown>;
  created_at: string;
  logged_by: string | null;
}

/** A collection: a name and a type in a project, with its versions. */
export interface CollectionInfo {
  entity: string;
  project: string;
  name: string;
  type: string;
  version_count: number;
  created_at: string;
  updated_at: string;
}

/** One file of a version: stored (`digest` is its SHA-256), or a reference to `ref`, a URI
 * (then `digest` is what identifies it there: a SHA-256, an ETag), whose bytes are not here. */
export interface ManifestEntry {
  path: string;
  digest: string;
  size: number;
  ref?: string;
}

/** The runs around a version, as `entity/project/run_id`. */
export interface ArtifactLineage {
  logged_by: string | null;
  used_by: string[];
}

/** Who is signed in, and what they may do; with auth off, an anonymous admin. */
export interface Viewer {
  auth: boolean;
  user: string | null;
  /** A server admin (always true with auth off). */
  admin: boolean;
  teams: { name: string; role: TeamRole }[];
}

export type TeamRole = "admin" | "member" | "viewer";

export interface ApiKey {
  id: number;
  user: string;
  name: string;
  /** The first characters of the secret, to tell keys apart. */
  prefix: string;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface Member {
  user: string;
  role: TeamRole;
}

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  target: string;
  detail: string;
}

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
