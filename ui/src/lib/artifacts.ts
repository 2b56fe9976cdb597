// The artifacts view's logic, without markup: collections by type, which version a path names,
// a manifest as a folder tree, and what changed between two versions.

import type { ArtifactInfo, CollectionInfo, ManifestEntry } from "./api";

/** Collections under a heading per type: types and names in order (`compare`). */
export function groupByType(collections: CollectionInfo[]): { type: string; collections: CollectionInfo[] }[] {
  const byType = new Map<string, CollectionInfo[]>();
  for (const c of collections) {
    const list = byType.get(c.type);
    if (list) list.push(c);
    else byType.set(c.type, [c]);
  }
  return [...byType.entries()]
    .sort(([a], [b]) => compare(a, b))
    .map(([type, list]) => ({ type, collections: [...list].sort((a, b) => compare(a.name, b.name)) }));
}

/** The version a path or a "Compare with" names: `vN`, or an alias (`latest`, `best`); "" is the
 * newest (the list is newest first). Undefined when there is no such version. */
export function resolveVersion(versions: ArtifactInfo[], wanted: string | undefined): ArtifactInfo | undefined {
  if (!wanted) return versions[0];
  return versions.find((v) => v.version === wanted) ?? versions.find((v) => v.aliases.includes(wanted));
}

/** `entity/project/run_id` as its parts; null for anything else. */
export function parseRunPath(path: string): { entity: string; project: string; runId: string } | null {
  const parts = path.split("/");
  if (parts.length !== 3 || parts.some((p) => p === "")) return null;
  return { entity: parts[0], project: parts[1], runId: parts[2] };
}

export interface ManifestDiff {
  /** In the new version only. */
  added: ManifestEntry[];
  /** In the old version only. */
  removed: ManifestEntry[];
  /** At the same path in both, with other content: digest, size or the URI referenced. */
  changed: { path: string; before: ManifestEntry; after: ManifestEntry }[];
  /** How many paths are the same in both. */
  unchanged: number;
}

/** What changed from `before` (the version compared with) to `after` (the version shown), each
 * list by path. A file's content is its digest: a file rewritten with the same bytes is unchanged. */
export function diffManifests(before: ManifestEntry[], after: ManifestEntry[]): ManifestDiff {
  const old = new Map(before.map((e) => [e.path, e]));
  const now = new Map(after.map((e) => [e.path, e]));
  const diff: ManifestDiff = { added: [], removed: [], changed: [], unchanged: 0 };
  for (const [path, entry] of now) {
    const was = old.get(path);
    if (!was) diff.added.push(entry);
    else if (was.digest !== entry.digest || was.size !== entry.size || (was.ref ?? "") !== (entry.ref ?? "")) {
      diff.changed.push({ path, before: was, after: entry });
    } else diff.unchanged += 1;
  }
  for (const [path, entry] of old) if (!now.has(path)) diff.removed.push(entry);
  const byPath = (a: { path: string }, b: { path: string }) => compare(a.path, b.path);
  diff.added.sort(byPath);
  diff.removed.sort(byPath);
  diff.changed.sort(byPath);
  return diff;
}

/** A row of the file browser: a folder (with what is under it) or a file, indented by `depth`. */
export type FileRow =
  | { kind: "dir"; path: string; name: string; depth: number; size: number; files: number; open: boolean }
  | { kind: "file"; path: string; name: string; depth: number; entry: ManifestEntry };

interface Dir {
  dirs: Map<string, Dir>;
  files: ManifestEntry[];
  size: number;
  count: number;
}

/** The manifest as a folder tree, flattened to the rows to draw: at each level folders first,
 * then files, by name; what is under a closed folder (`isOpen` says, by its path) is left out. */
export function fileRows(entries: ManifestEntry[], isOpen: (dir: string) => boolean): FileRow[] {
  const root: Dir = { dirs: new Map(), files: [], size: 0, count: 0 };
  for (const entry of entries) {
    const parts = entry.path.split("/");
    let dir = root;
    for (const part of parts.slice(0, -1)) {
      dir.size += entry.size;
      dir.count += 1;
      let sub = dir.dirs.get(part);
      if (!sub) dir.dirs.set(part, (sub = { dirs: new Map(), files: [], size: 0, count: 0 }));
      dir = sub;
    }
    dir.size += entry.size;
    dir.count += 1;
    dir.files.push(entry);
  }
  const rows: FileRow[] = [];
  const walk = (dir: Dir, prefix: string, depth: number) => {
    for (const [name, sub] of [...dir.dirs.entries()].sort(([a], [b]) => compare(a, b))) {
      const path = prefix + name;
      const open = isOpen(path);
      rows.push({ kind: "dir", path, name, depth, size: sub.size, files: sub.count, open });
      if (open) walk(sub, `${path}/`, depth + 1);
    }
    for (const entry of [...dir.files].sort((a, b) => compare(a.path, b.path))) {
      rows.push({ kind: "file", path: entry.path, name: entry.path.slice(prefix.length), depth, entry });
    }
  };
  walk(root, "", 0);
  return rows;
}

/** Names as people sort them: digits by value (part-2 before part-10), letters before case.
 * A fixed locale, so that every browser lists them the same. */
const collator = new Intl.Collator("en", { numeric: true });
function compare(a: string, b: string): number {
  return collator.compare(a, b);
}
