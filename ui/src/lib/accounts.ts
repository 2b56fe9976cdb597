// Accounts as the UI sees them: what the viewer may do to an entity's runs, and the small rules
// of the settings pages. The server decides every request; these only keep the UI from offering
// what it would refuse.

import type { ApiKey, TeamRole, Viewer } from "./api";

export type Access = "admin" | "write" | "read";

/**
 * The viewer's access to an entity's projects: everything with auth off or for a server admin,
 * their own entity, their teams by role, and reading anything else (projects are public to
 * signed-in users). An unknown viewer (not loaded yet) only reads.
 */
export function accessTo(viewer: Viewer | null, entity: string): Access {
  if (!viewer) return "read";
  if (!viewer.auth || viewer.admin) return "admin";
  if (viewer.user !== null && entity === viewer.user) return "admin";
  const team = viewer.teams.find((t) => t.name === entity);
  if (!team) return "read";
  return team.role === "admin" ? "admin" : team.role === "member" ? "write" : "read";
}

/** Whether the viewer may change runs of the entity: stop, delete, move, edit notes and tags. */
export const canWrite = (viewer: Viewer | null, entity: string) => accessTo(viewer, entity) !== "read";

export const ROLES: readonly TeamRole[] = ["admin", "member", "viewer"];

/** A key that still opens the API: not revoked and not past its expiry. */
export function keyActive(key: ApiKey, now = Date.now()): boolean {
  if (key.revoked_at !== null) return false;
  return key.expires_at === null || new Date(key.expires_at).getTime() > now;
}

/**
 * The "Expires in days" field: empty for a key that never expires, else a whole number of days
 * from 1 on. Returns the days (or null), or the message to show.
 */
export function parseExpiryDays(text: string): { days: number | null } | { error: string } {
  const t = text.trim();
  if (t === "") return { days: null };
  const n = Number(t);
  if (!Number.isInteger(n) || n < 1) return { error: "Expires in days: a whole number of days, 1 or more (empty: never)." };
  return { days: n };
}
