// Live updates, the Stop button, notes and tags, and an XSS attempt, on the run page and the
// project pages, against runs that Python processes are logging right now.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectNoErrors, getJson, launch, open, openTable, py, pyBackground, screenshot } from "./helpers";

const PROJECT = "live-e2e";
let browser: Browser;

beforeAll(async () => {
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

/** A Python run that logs a step every 50 ms until it is stopped; prints its id first. */
function liveRun(name: string) {
  const child = pyBackground(
    `
import time, cairn
run = cairn.init(project="${PROJECT}", name="${name}", config={"kind": "live"})
print("ID", run.id, flush=True)
i = 0
try:
    while i < 6000:
        run.log({"live": float(i), "other/value": i * 0.5})
        i += 1
        time.sleep(0.05)
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    raise
`,
    { CAIRN_HEARTBEAT_SECS: "0.5" },
  );
  const id = new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no run id:\n${child.output}`)), 30_000);
    child.stdout!.on("data", () => {
      const m = /ID (\S+)/.exec(child.output);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
  });
  return { child, id };
}

describe("live runs", () => {
  it("updates charts and table cells while a run logs, and Stop ends it as killed", async () => {
    const { child, id: idPromise } = liveRun("streaming");
    const id = await idPromise;
    try {
      // Workspace: the chart's point count grows without a reload.
      const page = await open(browser, `/e2e/${PROJECT}?panels=%5Elive%24`);
      const chart = page.locator('figure.chart[data-metric="live"]');
      await expect.poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 15_000 }).toBeGreaterThan(0);
      const first = Number(await chart.getAttribute("data-points"));
      await expect.poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 5_000 }).toBeGreaterThan(first + 10);
      await screenshot(page, "workspace-live");

      // Runs table: the summary cell follows.
      await page.goto(page.url().replace(/\?.*$/, "").replace(/\/?$/, "/table"));
      const cell = page.locator(`.row[data-run="${id}"] [data-col="summary.live"]`);
      await expect.poll(async () => Number(await cell.textContent()), { timeout: 15_000 }).toBeGreaterThan(0);
      const before = Number(await cell.textContent());
      await expect.poll(async () => Number(await cell.textContent()), { timeout: 5_000 }).toBeGreaterThan(before);

      // Run page: Stop → the client hears it at its next heartbeat → killed.
      await page.goto(page.url().replace(/\/table.*$/, `/runs/${id}`));
      await expect.poll(() => page.textContent('[data-testid="run-state"]')).toBe("running");
      await screenshot(page, "run-overview-running");
      await page.click('[data-testid="stop-button"]');
      // Stop asks first.
      await page.waitForSelector('[role="dialog"]');
      await screenshot(page, "stop-confirmation");
      await page.click('[data-testid="confirm-stop"]');
      await expect.poll(() => page.textContent('[data-testid="run-state"]'), { timeout: 20_000 }).toBe("killed");
      // Python ends an uncaught KeyboardInterrupt by killing itself with SIGINT, as shells expect.
      const ended = () => child.exitCode ?? child.signalCode;
      await expect.poll(ended, { timeout: 20_000, message: `the logging process did not end:\n${child.output}` }).toBe("SIGINT");
      expect(child.output).toContain("INTERRUPTED");
      const run = await getJson(`/api/v1/runs/e2e/${PROJECT}/${id}`);
      expect(run.state).toBe("killed");
      expect(await page.locator('[data-testid="stop-button"]').count()).toBe(0);
      await expectNoErrors(page);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("run page", () => {
  it("edits notes and tags, and shows the overview fields", async () => {
    const out = py(`
import cairn
run = cairn.init(project="${PROJECT}", name="editable", notes="first notes", tags=["baseline"], group="g1", job_type="train",
                 config={"lr": 0.01, "model": {"depth": 50}})
run.log({"loss": 0.5})
run.finish()
print(run.id)
`);
    const id = out.trim();
    const page = await open(browser, `/e2e/${PROJECT}/runs/${id}`);
    await expect.poll(() => page.textContent('[data-testid="run-name"]')).toBe("editable");
    const overview = await page.textContent(".overview dl");
    for (const field of ["Author", "Command", "Description", "Duration", "Git repository", "Host name", "Name", "OS", "Executable", "version", "Run path", "Runtime", "Start time", "State", "System hardware", "Tags", "Client version"]) {
      expect(overview).toContain(field);
    }
    expect(overview).toContain(`e2e/${PROJECT}/${id}`);
    expect(await page.textContent('[data-testid="config"]')).toContain("model.depth");

    await page.click('[data-testid="notes-edit"]');
    await page.fill('[data-testid="notes-input"]', "lr sweep, second try");
    await page.click('[data-testid="notes-save"]');
    await expect.poll(() => page.textContent('[data-testid="notes"]')).toBe("lr sweep, second try");

    await page.fill('[data-testid="tag-input"]', "promising");
    await page.press('[data-testid="tag-input"]', "Enter");
    await expect.poll(() => page.textContent('[data-testid="tags"]')).toContain("promising");
    await page.getByLabel("remove tag baseline").click();
    await expect.poll(() => page.textContent('[data-testid="tags"]')).not.toContain("baseline");
    await page.click('[data-testid="group-edit"]');
    await page.fill('[data-testid="group-input"]', "sweep-7");
    await page.fill('[data-testid="job-type-input"]', "eval");
    await page.click('[data-testid="group-save"]');
    await expect.poll(() => page.textContent('[data-testid="group"]')).toBe("sweep-7 / eval");
    await screenshot(page, "run-overview");

    const run = await getJson(`/api/v1/runs/e2e/${PROJECT}/${id}`);
    expect(run.notes).toBe("lr sweep, second try");
    expect(run.tags).toEqual(["promising"]);
    expect([run.group, run.job_type]).toEqual(["sweep-7", "eval"]);

    // The URL holds the tab: a reload opens the same one.
    await page.click('[data-tab="workspace"]');
    await page.waitForSelector('figure.chart[data-metric="loss"]');
    expect(page.url()).toContain("tab=workspace");
    await page.reload();
    await page.waitForSelector('figure.chart[data-metric="loss"]');
    for (const tab of ["system", "logs", "files", "artifacts"]) {
      await page.click(`[data-tab="${tab}"]`);
      await screenshot(page, `run-${tab}`);
    }
    await expectNoErrors(page);
  });

  it("shows HTML in names, notes, tags and config as text", async () => {
    const evil = `<img src=x onerror="window.__xss=1">`;
    const id = py(`
import cairn
evil = ${JSON.stringify(evil)}
run = cairn.init(project="${PROJECT}-xss", name=evil, notes=evil, tags=["<b>bold</b>"], config={"html": "<script>window.__xss=2</script>"})
run.log({"loss": 1.0})
run.finish()
print(run.id)
`).trim();
    for (const path of [`/e2e/${PROJECT}-xss/table`, `/e2e/${PROJECT}-xss`, `/e2e/${PROJECT}-xss/runs/${id}`, "/"]) {
      const page = await open(browser, path);
      await page.waitForLoadState("networkidle");
      expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
      expect(await page.locator("img[src=x]").count()).toBe(0);
      expect(await page.locator("b", { hasText: "bold" }).count()).toBe(0);
      if (path.endsWith(id)) {
        expect(await page.textContent('[data-testid="run-name"]')).toBe(evil);
        expect(await page.textContent('[data-testid="notes"]')).toBe(evil);
        expect(await page.textContent('[data-testid="config"]')).toContain("<script>window.__xss=2</script>");
        await screenshot(page, "xss-as-text");
      }
      await page.close();
    }
  });
});

describe("fork and rewind", () => {
  it("links a fork to its source, the source to its forks, and a rewound run to its archive", async () => {
    const forkId = py(`
import cairn
trunk = cairn.init(project="${PROJECT}-lineage", id="trunk", name="trunk")
for i in range(100):
    trunk.log({"loss": i * 0.5})
trunk.finish()
fork = cairn.init(project="${PROJECT}-lineage", fork_from="trunk?_step=50", name="the-fork")
fork.log({"loss": -1.0})
fork.finish()
cairn.init(project="${PROJECT}-lineage", id="trunk", resume_from="trunk?_step=80").finish()
print(fork.id)
`).trim();
    const page = await open(browser, `/e2e/${PROJECT}-lineage/runs/${forkId}`);
    await expect.poll(() => page.textContent('[data-testid="forked-from"]')).toContain("trunk at step 50");
    await page.click('[data-testid="forked-from"] a');
    await expect.poll(() => page.textContent('[data-testid="run-name"]')).toBe("trunk");
    expect(await page.textContent('[data-testid="forks"]')).toContain(forkId);
    expect(await page.textContent('[data-testid="rewinds"]')).toContain("to step 80");
    await screenshot(page, "lineage");
    await page.click('[data-testid="rewinds"] a');
    await expect.poll(() => page.textContent('[data-testid="archive-of"]')).toContain("after step 80");
    await expectNoErrors(page);
  });
});

describe("alerts", () => {
  it("lists a run's alerts on its overview, as text", async () => {
    const id = py(`
import cairn
run = cairn.init(project="${PROJECT}-alerts")
run.alert("Loss spiked", "step 40: loss 9.1 <i>(was 0.3)</i>", level="ERROR")
run.alert("Checkpoint saved", "epoch 2", level="INFO")
run.finish()
print(run.id)
`).trim();
    const page = await open(browser, `/e2e/${PROJECT}-alerts/runs/${id}`);
    // The test server has no targets: the alerts are stored, once the delivery loop has looked.
    await expect.poll(async () => (await page.reload(), await page.textContent('[data-testid="alerts"]')), { timeout: 15_000 }).toContain("stored");
    const items = await page.$$eval('[data-testid="alerts"] li', (li) => li.map((x) => x.textContent!.replace(/\s+/g, " ").trim()));
    expect(items[0]).toContain("ERROR");
    expect(items[0]).toContain("Loss spiked");
    expect(items[0]).toContain("step 40: loss 9.1 <i>(was 0.3)</i>");
    expect(items[1]).toContain("Checkpoint saved");
    expect(await page.locator('[data-testid="alerts"] i').count()).toBe(0);
    await screenshot(page, "alerts");
    await expectNoErrors(page);
  });
});

describe("preempting", () => {
  it("shows a run that said it may be preempted as preempting, in the table and on its page", async () => {
    const child = pyBackground(`
import time, cairn
run = cairn.init(project="${PROJECT}-preempt", name="spot-job")
run.log({"loss": 1.0})
run.mark_preempting()
run._core.wait_uploaded(10)
print("id", run.id, flush=True)
time.sleep(120)
`);
    try {
      await expect.poll(() => child.output, { timeout: 30_000 }).toMatch(/id \S+/);
      const id = /id (\S+)/.exec(child.output)![1];
      const table = await openTable(browser, `${PROJECT}-preempt`);
      await expect.poll(() => table.textContent(`.row[data-run="${id}"] .state`), { timeout: 15_000 }).toBe("preempting");
      await screenshot(table, "preempting-table");
      const page = await open(browser, `/e2e/${PROJECT}-preempt/runs/${id}`);
      await expect.poll(() => page.textContent('[data-testid="run-state"]')).toBe("preempting");
      expect(await page.textContent('[data-testid="preempting"]')).toContain("may be preempted");
      await screenshot(page, "preempting-run");
      await expectNoErrors(table);
      await expectNoErrors(page);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("notebook iframe", () => {
  it("shows the run page inside a page of another local origin, as run.display() puts it in a notebook", async () => {
    const out = py(`
import cairn
run = cairn.init(project="${PROJECT}-nb", name="in-a-notebook")
run.log({"loss": 0.5})
run.finish()
print(run.to_html(height=500))
`).trim();
    expect(out).toMatch(/^<iframe src="http/);
    // A notebook server's page: another port, so another origin, on loopback.
    const notebook = createServer((_, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(`<!doctype html><title>notebook</title><p>cell output:</p>${out}`);
    });
    await new Promise<void>((done) => notebook.listen(0, "127.0.0.1", done));
    try {
      const port = (notebook.address() as AddressInfo).port;
      const page = await open(browser, "/");
      await page.goto(`http://127.0.0.1:${port}/`);
      const frame = page.frameLocator("iframe");
      await expect.poll(() => frame.locator('[data-testid="run-name"]').textContent(), { timeout: 15_000 }).toBe("in-a-notebook");
      await screenshot(page, "notebook-iframe");
      await expectNoErrors(page);
    } finally {
      notebook.close();
    }
  });
});

describe("home", () => {
  it("lists entities and projects with run counts", async () => {
    const page = await open(browser, "/");
    await page.waitForSelector("table");
    const text = await page.textContent("main");
    expect(text).toContain("e2e");
    expect(text).toContain(PROJECT);
    await screenshot(page, "home");
    // An unknown path inside the app falls back to the page, which says so.
    const missing = await open(browser, "/a/b/c/d/e");
    await expect.poll(() => missing.textContent("main")).toContain("No page at");
  });
});
