// The runs table: filter, sort, group, column operations, URL state, delete, name search and
// truncation, checked against the rows that the runs should give.
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectNoErrors, getJson, launch, open, openTable, py, screenshot, tableNames } from "./helpers";

const PROJECT = "table-e2e";
const names = (ids: number[]) => ids.map((i) => `run-${String(i).padStart(2, "0")}`);

let browser: Browser;

beforeAll(async () => {
  // 12 runs: lr cycles 0.1/0.01/0.001, optimizer alternates adam/sgd, epochs = i, acc = i/20.
  py(`
import cairn
for i in range(12):
    run = cairn.init(project="${PROJECT}", name=f"run-{i:02d}", tags=["even" if i % 2 == 0 else "odd"],
                     config={"lr": [0.1, 0.01, 0.001][i % 3], "optimizer": ["adam", "sgd"][i % 2], "epochs": i})
    for step in range(5):
        run.log({"acc": i / 20 * (step + 1) / 5, "loss": 1 / (i + 1 + step)})
    run.finish(exit_code=1 if i == 5 else 0)
`);
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

const tablePage = (query = "") => openTable(browser, PROJECT, query);

async function waitForNames(page: Page, expected: string[]) {
  await expect.poll(() => tableNames(page), { timeout: 10_000 }).toEqual(expected);
}

async function columnMenu(page: Page, column: string, item: string) {
  const head = page.locator(`.header [data-col="${column}"]`);
  await head.hover();
  await head.locator("button.kebab").click();
  await page.locator(`.header [data-col="${column}"] .menu button`, { hasText: item }).click();
}

async function headerOrder(page: Page): Promise<string[]> {
  return page.$$eval(".header .cell.head", (cells) => cells.map((c) => c.getAttribute("data-col") ?? ""));
}

describe("runs table", () => {
  it("lists every run with its columns, and saves a screenshot", async () => {
    const page = await tablePage();
    await waitForNames(page, names([11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]));
    await expect.poll(() => page.textContent('[data-testid="run-count"]')).toBe("12 runs");
    const cols = await headerOrder(page);
    for (const c of ["name", "state", "created_at", "runtime", "tags", "group", "job_type", "notes", "config.lr", "config.optimizer", "config.epochs", "summary.acc", "summary.loss"]) {
      expect(cols).toContain(c);
    }
    const failed = page.locator('.row[data-run]', { hasText: "run-05" }).locator('[data-col="state"]');
    await expect.poll(() => failed.textContent()).toBe("failed");
    await screenshot(page, "runs-table");
    await expectNoErrors(page);
  });

  it("filters with the builder: and, or and parentheses, run by the server", async () => {
    const page = await tablePage();
    await page.click('[data-testid="filter-button"]');
    const panel = page.locator('[data-testid="filter-panel"]');
    // config.optimizer = sgd AND (config.epochs < 3 OR config.epochs > 9)
    await panel.getByRole("button", { name: "+ condition" }).first().click();
    const first = panel.locator(".condition").nth(0);
    await first.getByLabel("column").fill("config.optimizer");
    await first.getByLabel("value", { exact: true }).fill("sgd");
    await panel.getByRole("button", { name: "+ ( group )" }).first().click();
    const inner = panel.locator('.group[data-depth="1"]');
    await inner.locator(".condition").nth(0).getByLabel("column").fill("config.epochs");
    await inner.locator(".condition").nth(0).getByLabel("operator").selectOption("<");
    await inner.locator(".condition").nth(0).getByLabel("value", { exact: true }).fill("3");
    await inner.getByRole("button", { name: "+ condition" }).click();
    await inner.locator(".condition").nth(1).getByLabel("column").fill("config.epochs");
    await inner.locator(".condition").nth(1).getByLabel("operator").selectOption(">");
    await inner.locator(".condition").nth(1).getByLabel("value", { exact: true }).fill("9");
    await expect.poll(() => inner.locator("button.join").textContent()).toBe("or");
    await page.click('[data-testid="apply-filter"]');
    await waitForNames(page, names([11, 1]));
    await screenshot(page, "runs-table-filter");

    // The filter is in the URL: a reload shows the same rows.
    const url = page.url();
    expect(decodeURIComponent(url)).toContain('"$or"');
    await page.reload();
    await waitForNames(page, names([11, 1]));

    // IN, NOT IN, ≥ and regex.
    await page.goto(url.split("?")[0] + "?filter=" + encodeURIComponent(JSON.stringify({
      $and: [{ "config.lr": { $in: [0.1, 0.001] } }, { "summary.acc": { $gte: 0.3 } }, { state: { $nin: ["failed"] } }, { name: { $regex: "^run-(0|1)" } }],
    })));
    await waitForNames(page, names([11, 9, 8, 6]));
    await expectNoErrors(page);
  });

  it("names a bad value in the builder instead of sending it", async () => {
    const page = await tablePage();
    await page.click('[data-testid="filter-button"]');
    const panel = page.locator('[data-testid="filter-panel"]');
    await panel.getByRole("button", { name: "+ condition" }).first().click();
    await panel.getByLabel("column").fill("config.epochs");
    await panel.getByLabel("value", { exact: true }).fill("many");
    await panel.getByLabel("value type").selectOption("integer");
    await page.click('[data-testid="apply-filter"]');
    await expect.poll(() => panel.locator(".error").textContent()).toContain('config.epochs: "many" is not an integer');
    expect(page.url()).not.toContain("filter=");
  });

  it("sorts from the column menu, ascending and descending", async () => {
    const page = await tablePage();
    await columnMenu(page, "summary.loss", "Sort Asc");
    await waitForNames(page, names([11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]));
    await columnMenu(page, "config.lr", "Sort Desc");
    // lr 0.1 first (i % 3 == 0), then 0.01, then 0.001 (once the sorted page has arrived).
    await expect.poll(async () => (await tableNames(page)).slice(0, 4).sort()).toEqual(names([0, 3, 6, 9]));
    const rows = await tableNames(page);
    expect(rows.slice(8).sort()).toEqual(names([2, 5, 8, 11]));
    await columnMenu(page, "name", "Sort Asc");
    await waitForNames(page, names([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]));
    expect(await page.locator('.header [data-col="name"] .sort').getAttribute("data-sort")).toBe("asc");
    expect(page.url()).toContain("sort=name");
  });

  it("hides, shows, pins and reorders columns, and keeps it in the URL", async () => {
    const page = await tablePage();
    await columnMenu(page, "notes", "Hide column");
    expect(await headerOrder(page)).not.toContain("notes");
    await columnMenu(page, "summary.acc", "Pin column");
    let order = await headerOrder(page);
    expect(order.slice(0, 2)).toEqual(["name", "summary.acc"]);
    // A pinned column stays on the left while the table scrolls sideways.
    await page.locator('[data-testid="runs-table"]').evaluate((el) => (el.scrollLeft = 600));
    for (const where of [".header", `.body .row[data-run]`]) {
      const name = (await page.locator(`${where} [data-col="name"]`).first().boundingBox())!;
      const pinned = (await page.locator(`${where} [data-col="summary.acc"]`).first().boundingBox())!;
      const table = (await page.locator('[data-testid="runs-table"]').boundingBox())!;
      // Name stays after the checkbox column, and the pinned column right after Name.
      expect(Math.abs(name.x - (table.x + 1 + 34)), where).toBeLessThan(2);
      expect(Math.abs(pinned.x - (name.x + name.width)), where).toBeLessThan(2);
    }
    await page.locator('[data-testid="runs-table"]').evaluate((el) => (el.scrollLeft = 0));

    // Drag "job_type" in front of "state".
    await page.locator('.header [data-col="job_type"]').dragTo(page.locator('.header [data-col="state"]'));
    order = await headerOrder(page);
    expect(order.indexOf("job_type")).toBe(order.indexOf("state") - 1);

    await page.reload();
    await page.waitForSelector('.header [data-col="name"]');
    order = await headerOrder(page);
    expect(order).not.toContain("notes");
    expect(order.slice(0, 2)).toEqual(["name", "summary.acc"]);
    expect(order.indexOf("job_type")).toBe(order.indexOf("state") - 1);

    // Show it again from the Columns panel.
    await page.getByRole("button", { name: "Columns" }).click();
    await page.locator(".column-choice", { hasText: "Notes" }).getByRole("checkbox").check();
    expect(await headerOrder(page)).toContain("notes");
    // Unpinned, it keeps its place but scrolls with the others again.
    await columnMenu(page, "summary.acc", "Unpin column");
    expect(await page.locator('.header [data-col="summary.acc"]').getAttribute("class")).not.toContain("sticky");
    expect(page.url()).not.toContain("pin=");
    await expectNoErrors(page);
  });

  it("groups by a column, with counts and distributions, and expands groups", async () => {
    const page = await tablePage();
    await page.getByLabel("group by").selectOption("config.optimizer");
    await page.waitForSelector(".group-row");
    const groups = page.locator(".group-row");
    await expect.poll(() => groups.count()).toBe(2);
    const adam = page.locator('.group-row[data-group="\\"adam\\""]');
    expect(await adam.textContent()).toContain("6 runs");
    // summary.acc per group: a histogram and the mean (adam: i = 0,2,..,10 → mean acc 0.25).
    const accCell = adam.locator(".cell").nth(await headerIndex(page, "summary.acc") + 1);
    expect(await accCell.locator("svg.hist rect").count()).toBeGreaterThan(0);
    expect(await accCell.textContent()).toContain("0.25");
    await adam.locator("button.expander").click();
    await expect.poll(() => page.locator(".groups .row[data-run]").count()).toBe(6);
    const shown = await page.$$eval(".groups .row[data-run] [data-col=name] a", (a) => a.map((x) => x.getAttribute("title")).sort());
    expect(shown).toEqual(names([0, 2, 4, 6, 8, 10]));
    await screenshot(page, "runs-table-grouped");
    expect(page.url()).toContain("group=config.optimizer");
    await expectNoErrors(page);
  });

  it("searches names by regex and cuts long names where asked", async () => {
    const page = await tablePage();
    await page.getByLabel("search names").fill("^run-0[0-3]$");
    await waitForNames(page, names([3, 2, 1, 0]));
    await page.getByLabel("truncate names").selectOption("start");
    expect(page.url()).toContain("trunc=start");
  });

  it("deletes selected runs after a confirmation", async () => {
    py(`
import cairn
for name in ["doomed-a", "doomed-b", "kept-c"]:
    cairn.init(project="${PROJECT}-delete", name=name).finish()
`);
    const page = await open(browser, `/e2e/${PROJECT}-delete/table`);
    await waitForNames(page, ["kept-c", "doomed-b", "doomed-a"]);
    const ids: Record<string, string> = {};
    for (const row of await page.$$(".body .row[data-run]")) {
      ids[(await row.$eval("[data-col=name] a", (a) => a.getAttribute("title")))!] = (await row.getAttribute("data-run"))!;
    }
    for (const name of ["doomed-a", "doomed-b"]) await page.getByLabel(`select ${name}`).check();
    await page.click('[data-testid="delete-button"]');
    const dialog = page.getByRole("dialog");
    expect(await dialog.textContent()).toContain("Delete 2 runs?");
    // Cancel keeps them.
    await dialog.getByRole("button", { name: "Cancel" }).click();
    expect(await tableNames(page)).toHaveLength(3);
    await page.click('[data-testid="delete-button"]');
    await screenshot(page, "delete-confirmation");
    await page.click('[data-testid="confirm-delete"]');
    await waitForNames(page, ["kept-c"]);
    const response = await fetch(`${(await import("./helpers")).baseUrl}/api/v1/runs/e2e/${PROJECT}-delete/${ids["doomed-a"]}`);
    expect(response.status).toBe(404);
    const kept = await getJson(`/api/v1/runs/e2e/${PROJECT}-delete/${ids["kept-c"]}`);
    expect(kept.name).toBe("kept-c");
    await expectNoErrors(page);
  });

  it("moves selected runs to another project, and names a clash without moving anything", async () => {
    py(`
import cairn
for project, run_id in [("${PROJECT}-from", "mv-a"), ("${PROJECT}-from", "mv-b"), ("${PROJECT}-to", "mv-b")]:
    cairn.init(project=project, id=run_id, name=run_id).finish()
`);
    const page = await open(browser, `/e2e/${PROJECT}-from/table`);
    await waitForNames(page, ["mv-b", "mv-a"]);
    for (const name of ["mv-a", "mv-b"]) await page.getByLabel(`select ${name}`).check();
    await page.click('[data-testid="move-button"]');
    await page.fill('[data-testid="move-target"]', `e2e/${PROJECT}-to`);
    await page.click('[data-testid="confirm-move"]');
    // mv-b exists there: the error names it, and both runs stay.
    await expect.poll(() => page.textContent('[data-testid="move-error"]')).toContain('"mv-b"');
    await screenshot(page, "move-clash");
    expect((await tableNames(page)).sort()).toEqual(["mv-a", "mv-b"]);
    // Chromium logs the refused request (409) as a console error: that one was asked for.
    expect(page.errors.filter((e) => !e.includes("409"))).toEqual([]);
    page.errors.length = 0;
    // Only mv-a, to another entity: it leaves this table and is there.
    await page.getByRole("dialog").getByRole("button", { name: "Cancel" }).click();
    await page.getByLabel("select mv-b").uncheck();
    await page.click('[data-testid="move-button"]');
    await page.fill('[data-testid="move-target"]', `moved-e2e/${PROJECT}-to`);
    await page.click('[data-testid="confirm-move"]');
    await waitForNames(page, ["mv-b"]);
    const moved = await getJson(`/api/v1/runs/moved-e2e/${PROJECT}-to/mv-a`);
    expect(moved.name).toBe("mv-a");
    await expectNoErrors(page);
  });
});

async function headerIndex(page: Page, column: string): Promise<number> {
  return (await headerOrder(page)).indexOf(column);
}
