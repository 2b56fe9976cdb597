// Starts the real `cairn server` binary on a free port with a fresh data directory, for every e2e
// test file. The UI it serves is ui/dist, so `npm run build` must have run.
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { ROOT, startCairn, stopCairn } from "./server";

let server: ChildProcess | null = null;
let dataDir = "";

export default async function setup(project: TestProject) {
  const bin = process.env.CAIRN_BIN ?? join(ROOT, "target/debug/cairn");
  if (!existsSync(bin)) throw new Error(`no cairn binary at ${bin}: run \`cargo build -p cairn_cli\` or set CAIRN_BIN`);
  if (!existsSync(join(ROOT, "ui/dist/index.html"))) throw new Error("ui/dist/index.html is missing: run `npm --prefix ui run build`");
  const python = process.env.CAIRN_PYTHON ?? join(ROOT, ".venv/bin/python");
  if (!existsSync(python)) throw new Error(`no Python at ${python} (with the cairn package installed): set CAIRN_PYTHON`);

  dataDir = mkdtempSync(join(tmpdir(), "cairn-e2e-"));
  const started = await startCairn(bin, ["--data-dir", join(dataDir, "server"), "--default-entity", "e2e"], { CAIRN_MONITOR_INTERVAL_SECS: "1" });
  server = started.child;
  const baseUrl = started.url;

  project.provide("baseUrl", baseUrl);
  project.provide("python", python);
  project.provide("workDir", dataDir);
  project.provide("outputDir", join(ROOT, "test-output/ui"));
  project.provide("bin", bin);

  return async () => {
    if (server) await stopCairn(server);
    rmSync(dataDir, { recursive: true, force: true });
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
    python: string;
    workDir: string;
    outputDir: string;
    bin: string;
  }
}
