// Starts the real `cairn server` binary on a free port with a fresh data directory, for every e2e
// test file. The UI it serves is ui/dist, so `npm run build` must have run.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { TestProject } from "vitest/node";

export const ROOT = resolve(import.meta.dirname, "../../..");

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => ok(port));
    });
  });
}

let server: ChildProcess | null = null;
let dataDir = "";

export default async function setup(project: TestProject) {
  const bin = process.env.CAIRN_BIN ?? join(ROOT, "target/debug/cairn");
  if (!existsSync(bin)) throw new Error(`no cairn binary at ${bin}: run \`cargo build -p cairn_cli\` or set CAIRN_BIN`);
  if (!existsSync(join(ROOT, "ui/dist/index.html"))) throw new Error("ui/dist/index.html is missing: run `npm --prefix ui run build`");
  const python = process.env.CAIRN_PYTHON ?? join(ROOT, ".venv/bin/python");
  if (!existsSync(python)) throw new Error(`no Python at ${python} (with the cairn package installed): set CAIRN_PYTHON`);

  const port = await freePort();
  dataDir = mkdtempSync(join(tmpdir(), "cairn-e2e-"));
  const baseUrl = `http://127.0.0.1:${port}`;
  server = spawn(bin, ["server", "--port", String(port), "--data-dir", join(dataDir, "server"), "--default-entity", "e2e"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, CAIRN_MONITOR_INTERVAL_SECS: "1" },
  });
  let output = "";
  server.stdout!.on("data", (d) => (output += d));
  server.stderr!.on("data", (d) => (output += d));

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (server.exitCode !== null) throw new Error(`cairn server exited with ${server.exitCode}:\n${output}`);
    try {
      const response = await fetch(`${baseUrl}/api/v1/entities`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`cairn server did not answer within 30 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  project.provide("baseUrl", baseUrl);
  project.provide("python", python);
  project.provide("workDir", dataDir);
  project.provide("outputDir", join(ROOT, "test-output/ui"));

  return async () => {
    server?.kill("SIGINT");
    await new Promise((r) => {
      const timer = setTimeout(() => (server?.kill("SIGKILL"), r(null)), 10_000);
      server?.on("exit", () => (clearTimeout(timer), r(null)));
    });
    rmSync(dataDir, { recursive: true, force: true });
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
    python: string;
    workDir: string;
    outputDir: string;
  }
}
