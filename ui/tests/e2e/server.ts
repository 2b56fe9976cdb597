// Starting and stopping the real `cairn server` binary, for the global setup and for tests that
// need servers of their own (several on one PostgreSQL database).
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "../../..");

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => ok(port));
    });
  });
}

/** `cairn server` with `args` on a free port, once it answers. */
export async function startCairn(
  bin: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(bin, ["server", "--port", String(port), ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`cairn server exited with ${child.exitCode}:\n${output}`);
    try {
      // Open to anyone, with auth on or off.
      const response = await fetch(`${url}/api/v1/info`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`cairn server did not answer within 30 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, url, output: () => output };
}

/** Stops a server as Ctrl-C does; kills it if it takes more than 10 s. */
export async function stopCairn(child: ChildProcess) {
  if (child.exitCode !== null) return;
  child.kill("SIGINT");
  await new Promise((r) => {
    const timer = setTimeout(() => (child.kill("SIGKILL"), r(null)), 10_000);
    child.on("exit", () => (clearTimeout(timer), r(null)));
  });
}
