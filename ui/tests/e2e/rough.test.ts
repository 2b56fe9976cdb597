// The rough edges of the issue "Fix what users already have", one case per numbered item, each
// used as a user would in Chromium, with a screenshot to look at.
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectNoErrors, getJson, launch, open, openTable, py, screenshot, tableNames } from "./helpers";

const PROJECT = "rough-e2e";
const LONG = "a-very-long-run-name-for-the-truncation-tests-seed-42";
let browser: Browser;
let resumedId = "";

beforeAll(async () => {
  // 11 runs: lr and optimizer in config, val_loss in the summary, notes on some; one long name.
  py(`
import cairn
for i in range(11):
    run = cairn.init(project="${PROJECT}", name="${LONG}" if i == 10 else f"run-{i:02d}",
                     notes="tuned" if i % 3 == 0 else "", group=["g-a", "g-b"][i % 2],
                     config={"lr": [0.1, 0.01][i % 2], "optimizer": ["adam", "sgd"][i % 2]})
    for step in range(20):
        run.log({"val_loss": 1 / (i + 1 + step), "train/acc": step / 20})
    run.finish()
`);
  // A run that finished, paused 2 s, and resumed: its Runtime counts the pause, its Duration not.
  const out = py(`
import time, cairn
run = cairn.init(project="${PROJECT}-resume", name="resumed")
run.log({"x": 1})
run.finish()
time.sleep(2.5)
run = cairn.init(project="${PROJECT}-resume", id=run.id, resume="allow")
run.log({"x": 2})
run.finish()
print("ID", run.id)
`);
  resumedId = /ID (\S+)/.exec(out)![1];
  // System metrics in one project, none in another.
  py(
    `
import time, cairn
run = cairn.init(project="${PROJECT}-sys", name="with-system")
for i in range(15):
    run.log({"loss": 1 / (i + 1)})
    time.sleep(0.1)
run.finish()
`,
    { CAIRN_STATS_INTERVAL: "0.2" },
  );
  py(`
import cairn
run = cairn.init(project="${PROJECT}-nosys", name="no-system")
run.log({"loss": 1.0})
run.finish()
`, { CAIRN_STATS_INTERVAL: "0" });
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

const tablePage = (query = "") => openTable(browser, PROJECT, query);

async function applyExpression(page: Page, text: string) {
  if (!(await page.locator('[data-testid="filter-panel"]').count())) await page.click('[data-testid="filter-button"]');
  const input = page.locator('[data-testid="filter-panel"] [data-testid="filter-expression"]');
  await input.fill(text);
  await input.press("Escape");
  await page.click('[data-testid="filter-panel"] [data-testid="apply-expression"]');
}

describe("3: the seed's run URL", () => {
  it("opens /<entity>/<project>/<run-id> as the run page", async () => {
    const id = (await getJson(`/api/v1/projects/e2e/${PROJECT}/runs?limit=1`)).runs[0].run_id;
    const page = await open(browser, `/e2e/${PROJECT}/${id}`);
    await expect.poll(() => page.textContent('[data-testid="run-name"]')).toBe(LONG);
    await screenshot(page, "rough-3-seed-url");
    await expectNoErrors(page);
  });
});

describe("4: Duration and Runtime", () => {
  it("leaves the pause before a resume out of Duration", async () => {
    const run = await getJson(`/api/v1/runs/e2e/${PROJECT}-resume/${resumedId}`);
    expect(run.runtime_secs).toBeGreaterThan(2.4);
    expect(run.duration_secs).toBeLessThan(run.runtime_secs - 2);
    const page = await open(browser, `/e2e/${PROJECT}-resume/${resumedId}`);
    await page.waitForSelector('[data-testid="duration"]');
    expect(await page.textContent('[data-testid="duration"]')).not.toBe(await page.textContent('[data-testid="runtime"]'));
    await screenshot(page, "rough-4-duration");
    const table = await open(browser, `/e2e/${PROJECT}-resume/table`);
    await table.waitForSelector('.row[data-run] [data-col="duration"]');
    expect(await table.textContent('.row[data-run] [data-col="duration"]')).not.toBe(await table.textContent('.row[data-run] [data-col="runtime"]'));
    await expectNoErrors(page);
  });
});

describe("5: telling runs apart", () => {
  it("has a legend that folds, distinct neighbour colors, state icons and a group legend", async () => {
    const page = await open(browser, `/e2e/${PROJECT}?panels=val_loss`);
    const chart = page.locator('figure.chart[data-metric="val_loss"]');
    await expect.poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 15_000 }).toBe(200);
    // 10 runs shown: folded at first, since that is many; it opens on a click.
    const legend = chart.locator('[data-testid="legend"]');
    expect(await legend.locator(".entry").count()).toBe(0);
    await legend.locator("button").click();
    expect(await legend.locator(".entry").count()).toBe(10);
    expect(await legend.textContent()).toContain("run-05");
    // Neighbours in the run list never share a color.
    const colors = await page.$$eval(".runlist .swatch", (s) => s.map((e) => getComputedStyle(e).backgroundColor));
    for (let i = 1; i < colors.length; i++) expect(colors[i]).not.toBe(colors[i - 1]);
    // State as an icon with its name as the title: finished is not failed.
    const icon = page.locator(".runlist .state-icon").first();
    expect(await icon.getAttribute("title")).toBe("finished");
    await screenshot(page, "rough-5-legend");
    // Grouped lines: the legend names the groups.
    await page.selectOption('[data-testid="line-group"]', "group");
    await expect.poll(() => chart.getAttribute("data-lines")).toContain("group=g-a");
    expect(await legend.textContent()).toContain("2 groups");
    expect(await legend.locator(".entry").allTextContents()).toEqual(["group=g-a (5 runs)", "group=g-b (5 runs)"]);
    await screenshot(page, "rough-5-group-legend");
    await expectNoErrors(page);
  });

  it("draws runs that share a name, each in the legend", async () => {
    py(`
import cairn
for seed in range(2):
    run = cairn.init(project="${PROJECT}-twins", name="baseline", config={"seed": seed})
    run.log({"loss": 1.0 + seed})
    run.finish()
`);
    const page = await open(browser, `/e2e/${PROJECT}-twins`);
    const legend = page.locator('figure.chart[data-metric="loss"] [data-testid="legend"]');
    await expect.poll(() => legend.locator(".entry").count(), { timeout: 15_000 }).toBe(2);
    expect(await legend.locator(".entry").allTextContents()).toEqual(["baseline", "baseline"]);
    await expectNoErrors(page);
  });
});

describe("6: a readable runs table", () => {
  it("shows keys under Config and Summary, resizes, keeps the sort arrow, searches columns, selects all", async () => {
    const page = await tablePage();
    const head = page.locator('.columns-row [data-col="summary.train/acc"]');
    await head.scrollIntoViewIfNeeded();
    expect(await head.locator(".label").textContent()).toBe("train/acc");
    expect(await page.locator('[data-group-head="Summary"]').textContent()).toBe("Summary");
    expect(await page.locator('[data-group-head="Config"]').textContent()).toBe("Config");
    // Scrolled sideways, the group's name is in sight, not under the sticky Name column.
    const groupBox = (await page.locator('[data-group-head="Summary"]').boundingBox())!;
    const onTop = await page.evaluate(([x, y]) => document.elementFromPoint(x, y)?.getAttribute("data-group-head"), [groupBox.x + 12, groupBox.y + 10]);
    expect(onTop).toBe("Summary");
    // Narrow it, then sort it: the arrow stays in sight.
    const box = (await head.boundingBox())!;
    await page.mouse.move(box.x + box.width - 1, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + 60, box.y + box.height / 2, { steps: 5 });
    await page.mouse.up();
    const narrowed = (await head.boundingBox())!;
    expect(narrowed.width).toBeLessThan(box.width - 40);
    await head.hover();
    await head.locator("button.kebab").click();
    await page.locator('.columns-row [data-col="summary.train/acc"] .menu button', { hasText: "Sort Desc" }).click();
    const arrow = head.locator(".sort");
    await arrow.waitFor();
    const arrowBox = (await arrow.boundingBox())!;
    expect(arrowBox.x + arrowBox.width).toBeLessThanOrEqual(narrowed.x + narrowed.width);
    // The whole creation date and time.
    const created = await page.locator('.row[data-run] [data-col="created_at"] span').first().evaluate((e) => ({ text: e.textContent, fits: e.scrollWidth <= e.clientWidth }));
    expect(created.text).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    expect(created.fits).toBe(true);
    await screenshot(page, "rough-6-table");
    // The Columns panel opens under its button, and searches.
    await page.click('[data-testid="columns-button"]');
    const button = (await page.locator('[data-testid="columns-button"]').boundingBox())!;
    const panel = (await page.locator('[data-testid="columns-panel"]').boundingBox())!;
    expect(Math.abs(panel.x - button.x)).toBeLessThan(5);
    expect(panel.y).toBeGreaterThanOrEqual(button.y + button.height - 1);
    await page.fill('[data-testid="column-search"]', "optim");
    expect(await page.locator("[data-choice]").evaluateAll((e) => e.map((x) => x.getAttribute("data-choice")))).toEqual(["config.optimizer"]);
    await screenshot(page, "rough-6-columns");
    await page.keyboard.press("Escape");
    await page.mouse.click(5, 5);
    // Select all: every run, then none.
    await page.click('[data-testid="select-all"]');
    await expect.poll(() => page.textContent('[data-testid="delete-button"]')).toContain("(11)");
    await page.click('[data-testid="select-all"]');
    await expect.poll(() => page.textContent('[data-testid="delete-button"]')).not.toContain("(");
    await expectNoErrors(page);
  });
});

describe("7: filters", () => {
  it("takes bare names, empty text, an expression with autocompletion, and says what is wrong", async () => {
    const page = await tablePage();
    // The example, typed as text; bare names resolve to summary and config keys.
    // Run i ends with val_loss 1 / (i + 20); odd runs use sgd, even ones lr 0.1.
    await applyExpression(page, "val_loss <= 0.04 and (optimizer = sgd or lr = 0.5)");
    await expect.poll(() => tableNames(page)).toEqual(["run-09", "run-07", "run-05"]);
    // The badge counts conditions: three, not the and/or nodes.
    expect(await page.textContent('[data-testid="filter-button"]')).toBe("Filter (3)");
    // The builder shows the same filter.
    expect(await page.locator('[data-testid="filter-panel"] input.column').count()).toBe(3);
    await screenshot(page, "rough-7-expression");
    // notes = "" matches the empty notes only.
    await applyExpression(page, 'notes = ""');
    await expect.poll(async () => (await tableNames(page)).length).toBe(7);
    await applyExpression(page, 'notes != ""');
    await expect.poll(async () => (await tableNames(page)).length).toBe(4);
    // An empty result says so.
    await applyExpression(page, "val_loss > 100");
    await page.waitForSelector('[data-testid="no-runs"]');
    expect(await page.textContent('[data-testid="no-runs"]')).toContain("No runs match");
    // A refused filter shows the server's error, and the table stays usable.
    await applyExpression(page, "nosuchkey = 1");
    await page.waitForSelector('[data-testid="table-error"]');
    expect(await page.textContent('[data-testid="table-error"]')).toContain("nosuchkey");
    expect(await page.locator(".row.placeholder").count()).toBe(0);
    await screenshot(page, "rough-7-refused");
    await applyExpression(page, "lr = 0.1");
    await expect.poll(async () => (await tableNames(page)).length).toBe(6);
    // Autocompletion of column names where a column goes.
    const input = page.locator('[data-testid="filter-panel"] [data-testid="filter-expression"]');
    await input.fill("");
    await input.pressSequentially("config.opt");
    await page.waitForSelector('[data-testid="expression-suggestions"]');
    expect(await page.locator('[data-testid="expression-suggestions"] li').allTextContents()).toContain("config.optimizer");
    await screenshot(page, "rough-7-autocomplete");
    await input.press("Tab");
    await expect.poll(() => input.inputValue()).toBe("config.optimizer ");
    // The refused filter's 400 is the one message in the console.
    expect(page.errors.filter((e) => !e.includes("status of 400"))).toEqual([]);
  });

  it("shows the filter in the workspace, and edits it there", async () => {
    const filter = encodeURIComponent(JSON.stringify({ optimizer: "sgd" }));
    const page = await open(browser, `/e2e/${PROJECT}?filter=${filter}`);
    await page.waitForSelector('[data-testid="workspace-filter-text"]');
    expect(await page.textContent('[data-testid="workspace-filter-text"]')).toBe("optimizer = sgd");
    expect(await page.textContent('[data-testid="workspace-filter-button"]')).toContain("Filter (1)");
    await expect.poll(() => page.locator(".runlist li").count()).toBe(5);
    await page.click('[data-testid="workspace-filter-text"]');
    const input = page.locator('[data-testid="workspace-filter"] [data-testid="filter-expression"]');
    await input.fill("optimizer = adam");
    await input.press("Enter");
    await expect.poll(() => page.locator(".runlist li").count()).toBe(6);
    expect(decodeURIComponent(page.url())).toContain('"optimizer":{"$eq":"adam"}');
    await screenshot(page, "rough-7-workspace-filter");
    await expectNoErrors(page);
  });
});

describe("8: system panels", () => {
  it("titles panels with names and units, says there is no GPU, and hides System without data", async () => {
    const page = await open(browser, `/e2e/${PROJECT}-sys`);
    const cpu = page.locator('figure.chart[data-metric="system.cpu"]');
    await cpu.waitFor({ timeout: 15_000 });
    expect(await cpu.locator(".title").textContent()).toBe("Process CPU Utilization (%)");
    expect(await page.locator('figure.chart[data-metric="system.proc.memory.rssMB"] .title').textContent()).toBe("Process Memory In Use (MB)");
    expect(await page.locator('figure.chart[data-metric="system.network.sent"] .title').textContent()).toBe("Network Traffic Sent (MB)");
    expect(await page.locator('[data-testid="no-gpu"]').count()).toBe(1);
    await cpu.scrollIntoViewIfNeeded();
    await screenshot(page, "rough-8-system");
    const none = await open(browser, `/e2e/${PROJECT}-nosys`);
    await none.waitForSelector('figure.chart[data-metric="loss"]');
    expect(await none.locator('[data-testid="section"][data-section="System"]').count()).toBe(0);
    await expectNoErrors(page);
    await expectNoErrors(none);
  });
});

describe("9: the run list", () => {
  it("sets name truncation from the … menu, and cuts a name once", async () => {
    const page = await open(browser, `/e2e/${PROJECT}`);
    const name = page.locator(".runlist a.name").first();
    await name.waitFor();
    const cut = async () => (await name.textContent())!;
    await expect.poll(cut).toContain("…");
    expect((await cut()).split("…").length).toBe(2);
    expect(await name.evaluate((e) => e.scrollWidth <= e.clientWidth)).toBe(true);
    await page.click('[data-testid="runlist-actions"]');
    await screenshot(page, "rough-9-menu");
    await page.locator('[data-testid="runlist-menu"] button', { hasText: "at the end" }).click();
    await expect.poll(cut).toMatch(/^a-very-long.*…$/);
    expect(page.url()).toContain("trunc=end");
    await page.click('[data-testid="runlist-actions"]');
    await page.locator('[data-testid="runlist-menu"] button', { hasText: "at the start" }).click();
    await expect.poll(cut).toMatch(/^….*seed-42$/);
    await screenshot(page, "rough-9-start");
    await expectNoErrors(page);
  });
});

describe("10: small things", () => {
  it("deletes with names listed, shows log timestamps and line numbers, and an unknown project once", async () => {
    const page = await tablePage();
    await page.locator('.row[data-run]', { hasText: "run-03" }).locator('input[type="checkbox"]').check();
    expect(await page.locator('[data-testid="delete-button"] [data-icon="trash"]').count()).toBe(1);
    await page.click('[data-testid="delete-button"]');
    const doomed = page.locator('[data-testid="doomed"]');
    await doomed.waitFor();
    expect(await doomed.textContent()).toContain("run-03");
    await screenshot(page, "rough-10-delete");
    await page.keyboard.press("Escape");

    const id = (await getJson(`/api/v1/projects/e2e/${PROJECT}-sys/runs?limit=1`)).runs[0].run_id;
    py(`
import cairn
run = cairn.init(project="${PROJECT}-sys", id="${id}", resume="allow")
print("hello from the console")
run.finish()
`);
    const logs = await open(browser, `/e2e/${PROJECT}-sys/${id}?tab=logs`);
    await expect.poll(() => logs.textContent('[data-testid="logs"]'), { timeout: 15_000 }).toContain("hello from the console");
    await logs.check('[data-testid="log-numbers"]');
    await logs.check('[data-testid="log-times"]');
    expect(await logs.locator(".gutter.num").count()).toBeGreaterThan(0);
    expect(await logs.locator(".gutter.time").first().textContent()).toMatch(/^\d{4}-\d\d-\d\d /);
    const download = (await logs.locator('[data-testid="log-download"]').boundingBox())!;
    const search = (await logs.locator('[data-testid="log-search"]').boundingBox())!;
    expect(download.x).toBeGreaterThan(search.x + 600);
    await screenshot(logs, "rough-10-logs");

    const missing = await open(browser, "/e2e/no-such-project");
    await missing.waitForSelector('[data-testid="project-error"]');
    await missing.waitForTimeout(500);
    expect(await missing.locator(".error").count()).toBe(1);
    await screenshot(missing, "rough-10-unknown-project");
    // The page logs the failed request once in the console; nothing else goes wrong.
    expect(missing.errors.filter((e) => !e.includes("404")).length).toBe(0);
  });
});
