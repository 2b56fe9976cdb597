import { describe, expect, it } from "vitest";
import type { ArtifactInfo, CollectionInfo, ManifestEntry } from "../../src/lib/api";
import { diffManifests, fileRows, groupByType, parseRunPath, resolveVersion, type FileRow } from "../../src/lib/artifacts";

const collection = (name: string, type: string): CollectionInfo => ({
  entity: "e",
  project: "p",
  name,
  type,
  version_count: 1,
  created_at: "2024-01-01T00:00:00Z",
  updated_at: "2024-01-01T00:00:00Z",
});

const version = (name: string, index: number, aliases: string[] = []): ArtifactInfo => ({
  entity: "e",
  project: "p",
  name,
  type: "dataset",
  version: `v${index}`,
  version_index: index,
  digest: `d${index}`,
  size: 0,
  file_count: 0,
  aliases,
  description: null,
  metadata: {},
  created_at: "2024-01-01T00:00:00Z",
  logged_by: null,
});

const entry = (path: string, digest = "aa", size = 1, ref?: string): ManifestEntry => (ref ? { path, digest, size, ref } : { path, digest, size });

describe("collections by type", () => {
  it("puts a heading per type, types and names in order", () => {
    const groups = groupByType(
      ["mnist:dataset", "resnet:model", "cifar:dataset", "Zeta:dataset", "part-10:dataset", "part-2:dataset"].map((s) => collection(...(s.split(":") as [string, string]))),
    );
    expect(groups.map((g) => [g.type, g.collections.map((c) => c.name)])).toEqual([
      ["dataset", ["cifar", "mnist", "part-2", "part-10", "Zeta"]],
      ["model", ["resnet"]],
    ]);
    expect(groupByType([])).toEqual([]);
  });
});

describe("which version a path names", () => {
  const versions = [version("d", 2, ["latest"]), version("d", 1, ["best"]), version("d", 0)];
  it("takes vN, an alias, or the newest for none", () => {
    expect(resolveVersion(versions, "v0")?.version).toBe("v0");
    expect(resolveVersion(versions, "best")?.version).toBe("v1");
    expect(resolveVersion(versions, "latest")?.version).toBe("v2");
    expect(resolveVersion(versions, "")?.version).toBe("v2");
    expect(resolveVersion(versions, undefined)?.version).toBe("v2");
  });
  it("finds nothing for an unknown name, or in an empty collection", () => {
    expect(resolveVersion(versions, "v9")).toBeUndefined();
    expect(resolveVersion(versions, "nope")).toBeUndefined();
    expect(resolveVersion([], "")).toBeUndefined();
  });
  it("prefers a version to an alias spelled like one", () => {
    expect(resolveVersion([version("d", 1), version("d", 0, ["v1"])], "v1")?.version).toBe("v1");
  });
});

describe("run paths", () => {
  it("splits entity/project/run_id, and nothing else", () => {
    expect(parseRunPath("e/p/r1")).toEqual({ entity: "e", project: "p", runId: "r1" });
    expect(parseRunPath("e/p")).toBeNull();
    expect(parseRunPath("e//r")).toBeNull();
    expect(parseRunPath("e/p/r/x")).toBeNull();
  });
});

describe("the diff of two manifests", () => {
  it("finds added, removed and changed files, each by path", () => {
    const before = [entry("a.csv", "1"), entry("b.csv", "2"), entry("c.csv", "3"), entry("dir/z.txt", "4", 10), entry("dir/y.txt", "5")];
    const after = [entry("dir/z.txt", "4", 12), entry("a.csv", "1"), entry("d.csv", "6"), entry("c.csv", "9"), entry("b0.csv", "7")];
    const diff = diffManifests(before, after);
    expect(diff.added.map((e) => e.path)).toEqual(["b0.csv", "d.csv"]);
    expect(diffManifests([], [entry("shard-10"), entry("shard-9"), entry("Shard-1")]).added.map((e) => e.path)).toEqual(["Shard-1", "shard-9", "shard-10"]);
    expect(diff.removed.map((e) => e.path)).toEqual(["b.csv", "dir/y.txt"]);
    expect(diff.changed.map((c) => [c.path, c.before.digest, c.after.digest, c.before.size, c.after.size])).toEqual([
      ["c.csv", "3", "9", 1, 1],
      // Same digest, other size: a reference whose ETag did not move, say; still another file.
      ["dir/z.txt", "4", "4", 10, 12],
    ]);
    expect(diff.unchanged).toBe(1);
  });

  it("sees a reference moved to another URI as changed", () => {
    const diff = diffManifests([entry("big.bin", "etag", 5, "s3://a/big.bin")], [entry("big.bin", "etag", 5, "s3://b/big.bin")]);
    expect(diff.changed.map((c) => c.path)).toEqual(["big.bin"]);
  });

  it("is empty between the same files, and all added from nothing", () => {
    const files = [entry("x"), entry("y/z")];
    expect(diffManifests(files, [...files].reverse())).toEqual({ added: [], removed: [], changed: [], unchanged: 2 });
    expect(diffManifests([], files)).toEqual({ added: files, removed: [], changed: [], unchanged: 0 });
    expect(diffManifests(files, [])).toEqual({ added: [], removed: files, changed: [], unchanged: 0 });
  });
});

describe("the file tree", () => {
  const entries = [entry("train/b.csv", "b", 20), entry("README.md", "r", 5), entry("train/a.csv", "a", 10), entry("train/img/1.png", "i", 100), entry("eval/x.csv", "x", 1), entry("s3.bin", "e", 7, "s3://bucket/s3.bin")];
  const show = (rows: FileRow[]) => rows.map((r) => `${"  ".repeat(r.depth)}${r.kind === "dir" ? `${r.name}/ ${r.files} ${r.size}${r.open ? "" : " closed"}` : r.name}`);

  it("lists folders first, then files, each level by name, with what is under each folder", () => {
    expect(show(fileRows(entries, () => true))).toEqual([
      "eval/ 1 1",
      "  x.csv",
      "train/ 3 130",
      "  img/ 1 100",
      "    1.png",
      "  a.csv",
      "  b.csv",
      "README.md",
      "s3.bin",
    ]);
  });

  it("leaves out what is under a closed folder, by the folder's path", () => {
    expect(show(fileRows(entries, (dir) => dir !== "train/img" && dir !== "eval"))).toEqual([
      "eval/ 1 1 closed",
      "train/ 3 130",
      "  img/ 1 100 closed",
      "  a.csv",
      "  b.csv",
      "README.md",
      "s3.bin",
    ]);
    expect(show(fileRows(entries, () => false))).toEqual(["eval/ 1 1 closed", "train/ 3 130 closed", "README.md", "s3.bin"]);
  });

  it("keeps each file's entry and whole path, for its download link", () => {
    const row = fileRows(entries, () => true).find((r) => r.kind === "file" && r.name === "1.png");
    expect(row).toMatchObject({ kind: "file", path: "train/img/1.png", entry: { digest: "i", size: 100 } });
    const ref = fileRows(entries, () => true).find((r) => r.path === "s3.bin");
    expect(ref).toMatchObject({ kind: "file", entry: { ref: "s3://bucket/s3.bin" } });
    expect(fileRows([], () => true)).toEqual([]);
  });
});
