// Accounts in headless Chromium, as a team sets them up: the first-start link makes the admin,
// who creates a key (used by the Python client) and revokes another, makes a team and adds a
// viewer; the viewer signs in and finds no Delete, Stop or Move; signing out ends the session;
// and a page on another origin cannot make the signed-in browser write.
import { spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bin, launch, py, screenshot } from "./helpers";
import { freePort, startCairn, stopCairn } from "./server";

let browser: Browser;
let server: ChildProcess;
let url = "";
let output: () => string;
let dataDir = "";
let attacker: Server;
let attackerUrl = "";

beforeAll(async () => {
  browser = await launch();
  dataDir = mkdtempSync(join(tmpdir(), "cairn-accounts-"));
  const started = await startCairn(bin, ["--data-dir", dataDir, "--auth", "on"]);
  ({ child: server, url, output } = started);
  // Another origin (same site: 127.0.0.1 on another port, so SameSite=Lax cookies go along):
  // its page tries to write to cairn with the browser's session.
  const port = await freePort();
  attackerUrl = `http://127.0.0.1:${port}`;
  attacker = createServer((_, response) => {
    response.setHeader("Content-Type", "text/html");
    response.end(`<!doctype html><body>
<form id="f" method="POST" action="${url}/api/v1/runs/move" enctype="text/plain">
  <input name='{"runs":["lab/accounts/live"],"entity":"ana","project":"stolen","x":"' value='"}'>
</form>
<script>
  fetch("${url}/api/v1/runs/lab/accounts/live", { method: "PATCH", credentials: "include", mode: "no-cors",
    headers: { "Content-Type": "text/plain" }, body: JSON.stringify({ notes: "written by another site" }) })
    .finally(() => { document.title = "sent"; document.getElementById("f").submit(); });
</script></body>`);
  });
  await new Promise<void>((ok) => attacker.listen(port, "127.0.0.1", () => ok()));
});

afterAll(async () => {
  await browser?.close();
  attacker?.close();
  if (server) await stopCairn(server);
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** A page whose uncaught errors fail the test (the 401s of a signed-out page are expected). */
async function page(context: BrowserContext, path: string): Promise<Page & { errors: string[] }> {
  const p = (await context.newPage()) as Page & { errors: string[] };
  p.errors = [];
  p.on("pageerror", (e) => p.errors.push(String(e)));
  p.on("console", (m) => {
    if (m.type() === "error" && !/status of 40[13]/.test(m.text())) p.errors.push(m.text());
  });
  await p.goto(path.startsWith("http") ? path : url + path);
  return p;
}

async function signIn(p: Page, user: string, password: string) {
  await p.getByLabel("Username").fill(user);
  await p.getByLabel("Password", { exact: true }).fill(password);
  await p.getByRole("button", { name: "Sign in" }).click();
}

function cairn(...args: string[]): string {
  const result = spawnSync(bin, [...args, "--data-dir", dataDir], { encoding: "utf8", input: "viewer-password\n" });
  if (result.status !== 0) throw new Error(`cairn ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

async function status(path: string, init: RequestInit = {}): Promise<number> {
  return (await fetch(url + path, init)).status;
}

describe("accounts in the browser", () => {
  let adminKey = "";

  it("sets up the first admin, makes and revokes keys, a team and a viewer", async () => {
    const context = await browser.newContext({ viewport: { width: 1300, height: 850 } });
    const home = await page(context, "/");
    await home.waitForURL(/\/signin/);
    await expect.poll(() => home.getByTestId("setup-needed").isVisible()).toBe(true);

    const link = output().match(/(http:\/\/\S+\/setup\?token=\S+)/)?.[1];
    expect(link, output()).toBeTruthy();
    const setup = await page(context, link!.replace(/^http:\/\/[^/]+/, url));
    await setup.getByLabel("Username").fill("ana");
    await setup.getByLabel("Password", { exact: true }).fill("admin-password");
    await setup.getByLabel("Confirm").fill("admin-password");
    await setup.getByRole("button", { name: "Create admin" }).click();
    await expect.poll(() => setup.getByRole("button", { name: "Sign out" }).isVisible()).toBe(true);
    await screenshot(setup, "accounts-1-admin-home");

    // Keys: one for the Python client, one revoked.
    await setup.getByTestId("user-link").click();
    await setup.waitForURL(/\/settings/);
    for (const name of ["laptop", "to-revoke"]) {
      await setup.getByLabel("Key name").fill(name);
      await setup.getByRole("button", { name: "Create key" }).click();
      const secret = await setup.getByTestId("new-key-secret").inputValue();
      expect(secret).toMatch(/^cairn-[a-z2-7]{40}$/);
      if (name === "laptop") adminKey = secret;
      else {
        await screenshot(setup, "accounts-2-new-key");
        await setup.getByRole("button", { name: "Done" }).click();
        await setup.locator('[data-key]', { hasText: "to-revoke" }).getByRole("button", { name: "Revoke", exact: true }).click();
        await setup.getByTestId("confirm-revoke").click();
        await expect.poll(() => setup.locator('[data-key]', { hasText: "to-revoke" }).textContent()).toMatch(/revoked|20\d\d-/i);
        await new Promise((r) => setTimeout(r, 1100));
        expect(await status("/api/v1/viewer", { headers: { Authorization: `Bearer ${secret}` } })).toBe(401);
      }
      const done = setup.getByRole("button", { name: "Done" });
      if (await done.isVisible()) await done.click();
    }
    expect(await status("/api/v1/viewer", { headers: { Authorization: `Bearer ${adminKey}` } })).toBe(200);

    // A team, a run in it logged with the new key, and a viewer.
    await setup.getByLabel("Team name").fill("lab");
    await setup.getByRole("button", { name: "Create team" }).click();
    await setup.getByRole("link", { name: "lab" }).click();
    await setup.waitForURL(/\/teams\/lab/);
    py(
      `
import cairn
done = cairn.init(entity="lab", project="accounts", id="done")
for i in range(50):
    done.log({"loss": 1 / (i + 1)})
done.finish()
`,
      { CAIRN_BASE_URL: url, CAIRN_API_KEY: adminKey, CAIRN_ENTITY: "lab" },
    );
    // A run left running (its client never finishes), for the Stop button.
    const created = await fetch(`${url}/api/v1/runs`, {
      method: "POST",
      headers: { Authorization: `Bearer ${adminKey}`, "Content-Type": "application/json" },
      body: JSON.stringify({ entity: "lab", project: "accounts", run_id: "live" }),
    });
    expect(created.status).toBe(200);
    cairn("users", "create", "vic", "--password-stdin");
    await setup.getByLabel("Username").fill("vic");
    await setup.getByLabel("Role", { exact: true }).selectOption("viewer");
    await setup.getByRole("button", { name: "Add member" }).click();
    await expect.poll(() => setup.locator('[data-member="vic"]').isVisible()).toBe(true);
    await screenshot(setup, "accounts-3-team");
    expect(cairn("teams", "members", "lab")).toMatch(/vic\s+viewer/);

    // The audit log has what was done, newest first.
    await setup.getByRole("link", { name: "Audit log" }).click();
    await setup.waitForURL(/\/audit/);
    await expect.poll(() => setup.getByTestId("audit").textContent()).toContain("member.role");
    const log = (await setup.getByTestId("audit").textContent())!;
    for (const action of ["key.create", "key.revoke", "team.create", "user.create"]) expect(log).toContain(action);
    await screenshot(setup, "accounts-3b-audit");

    // The admin sees the buttons that the viewer will not.
    await setup.goto(`${url}/lab/accounts/table`);
    await setup.waitForSelector('[data-testid="runs-table"] .body .row[data-run]');
    expect(await setup.getByTestId("delete-button").count()).toBe(1);
    await setup.goto(`${url}/lab/accounts/runs/live`);
    await expect.poll(() => setup.getByTestId("stop-button").count()).toBe(1);
    expect(setup.errors).toEqual([]);
    await context.close();
  });

  it("signs the viewer in without Delete, Stop or Move, and signs out", async () => {
    const context = await browser.newContext({ viewport: { width: 1300, height: 850 } });
    const table = await page(context, "/lab/accounts/table");
    await table.waitForURL(/\/signin\?next=/);
    await signIn(table, "vic", "wrong password");
    await expect.poll(() => table.locator(".error").first().textContent()).toMatch(/wrong/);
    await signIn(table, "vic", "viewer-password");
    await table.waitForURL(/\/lab\/accounts\/table/);
    await table.waitForSelector('[data-testid="runs-table"] .body .row[data-run]');
    expect(await table.getByTestId("delete-button").count()).toBe(0);
    expect(await table.getByTestId("move-button").count()).toBe(0);
    await screenshot(table, "accounts-4-viewer-table");
    await table.goto(`${url}/lab/accounts/runs/live`);
    await expect.poll(() => table.getByText("live").first().isVisible()).toBe(true);
    expect(await table.getByTestId("stop-button").count()).toBe(0);
    // The server refuses the viewer's writes too, whatever the UI shows.
    const refused = await table.evaluate(async () => {
      const r = await fetch("/api/v1/runs/lab/accounts/live/stop", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
      return [r.status, (await r.json()).message];
    });
    expect(refused[0]).toBe(403);
    expect(refused[1]).toContain("member");
    await screenshot(table, "accounts-5-viewer-run");

    await table.getByRole("button", { name: "Sign out" }).click();
    await table.waitForURL(/\/signin/);
    const after = await table.evaluate(async () => (await fetch("/api/v1/viewer")).status);
    expect(after).toBe(401);
    expect(table.errors).toEqual([]);
    await context.close();
  });

  it("does not let a page on another origin write with the browser's session", async () => {
    const context = await browser.newContext();
    const signin = await page(context, "/signin");
    await signIn(signin, "ana", "admin-password");
    await expect.poll(() => signin.getByRole("button", { name: "Sign out" }).isVisible()).toBe(true);
    const evil = await context.newPage();
    await evil.goto(attackerUrl);
    await evil.waitForURL(/api\/v1\/runs\/move/, { timeout: 10_000 });
    const landed = await evil.textContent("body");
    expect(landed).toContain("forbidden");
    const run = await fetch(`${url}/api/v1/runs/lab/accounts/live`, { headers: { Authorization: `Bearer ${adminKey}` } }).then((r) => r.json());
    expect(run.notes).toBe("");
    expect(run.project).toBe("accounts");
    expect(await status("/api/v1/runs/ana/stolen/live", { headers: { Authorization: `Bearer ${adminKey}` } })).toBe(404);
    await context.close();
  });

  it("makes a project public for every signed-in user to read", async () => {
    cairn("users", "create", "eve", "--password-stdin");
    const outsider = await browser.newContext({ viewport: { width: 1300, height: 850 } });
    const before = await page(outsider, "/signin");
    await signIn(before, "eve", "viewer-password");
    await expect.poll(() => before.getByRole("button", { name: "Sign out" }).isVisible()).toBe(true);
    const refused = await before.evaluate(async () => (await fetch("/api/v1/projects/lab/accounts/runs")).status);
    expect(refused).toBe(403);

    // The team's admin makes it public from the project page.
    const admin = await browser.newContext({ viewport: { width: 1300, height: 850 } });
    const project = await page(admin, "/signin?next=%2Flab%2Faccounts%2Ftable");
    await signIn(project, "ana", "admin-password");
    await project.waitForURL(/\/lab\/accounts\/table/);
    await project.getByTestId("visibility").selectOption("public");
    await expect
      .poll(() => fetch(`${url}/api/v1/projects/lab/accounts`, { headers: { Authorization: `Bearer ${adminKey}` } }).then((r) => r.json()).then((p) => p.visibility))
      .toBe("public");
    await screenshot(project, "accounts-6-public");

    // Now the outsider reads it, and may change nothing.
    await new Promise((r) => setTimeout(r, 1100)); // the public list is cached for a second
    await before.goto(`${url}/lab/accounts/table`);
    await before.waitForSelector('[data-testid="runs-table"] .body .row[data-run]');
    expect(await before.getByTestId("delete-button").count()).toBe(0);
    await expect.poll(() => before.getByTestId("visibility").textContent()).toBe("public");
    const write = await before.evaluate(async () => (await fetch("/api/v1/runs/lab/accounts/done", { method: "PATCH", headers: { "Content-Type": "application/json" }, body: '{"notes": "eve"}' })).status);
    expect(write).toBe(403);
    expect(before.errors).toEqual([]);
    expect(project.errors).toEqual([]);
    await outsider.close();
    await admin.close();
  });
});
