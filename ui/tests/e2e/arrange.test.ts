// Arranging the project workspace as a user does: adding panels of each kind (a line chart of
// two metrics with its own smoothing and range, a scatter, parallel coordinates and a bar chart
// over runs-table columns), dragging a panel into another section, resizing one, renaming a
// section, removing a panel; reloading finds the same layout; "Reset to automatic" restores the
// generated one. And the Runs tab's filter picks the Workspace's runs.
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectNoErrors, launch, open, py, screenshot } from "./helpers";

const PROJECT = "arrange-e2e";
let browser: Browser;

beforeAll(async () => {
  py(`
import cairn
for i, (lr, opt) in enumerate([(0.1, "adam"), (0.01, "sgd"), (0.001, "adam")]):
    run = cairn.init(project="${PROJECT}", id=f"r{i}", name=f"run-{i}", config={"lr": lr, "opt": opt, "layers": 2 + i})
    for step in range(20):
        run.log({"train/loss": (1 + i) / (step + 1), "train/acc": 1 - 1 / (step + 2 + i), "val/loss": (1.5 + i) / (step + 1)})
    run.finish()
`);
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

const sectionNames = (page: Page) => page.$$eval('[data-testid="section"]', (all) => all.map((s) => s.getAttribute("data-section")!));
const panelsOf = (page: Page, section: string) =>
  page.$$eval(`[data-testid="section"][data-section="${section}"] .cell`, (cells) => cells.map((c) => `${c.getAttribute("data-type")}:${c.querySelector("[data-metric]")?.getAttribute("data-metric") ?? c.querySelector("[data-columns]")?.getAttribute("data-columns") ?? ""}:${c.getAttribute("data-w")}`));
const section = (page: Page, name: string) => page.locator(`[data-testid="section"][data-section="${name}"]`);
const cell = (page: Page, metric: string) => page.locator(".cell", { has: page.locator(`[data-metric="${metric}"]`) }).first();

async function addPanel(page: Page, sectionName: string, fill: () => Promise<void>) {
  await section(page, sectionName).getByTestId("add-panel").click();
  await page.getByTestId("panel-editor").waitFor();
  await fill();
  await page.getByTestId("panel-save").click();
  await expect.poll(() => page.getByTestId("panel-editor").count()).toBe(0);
}

describe("arranging the workspace", () => {
  it("adds, edits, drags, resizes, renames and removes panels, and keeps the layout across reloads", async () => {
    const page = await open(browser, `/e2e/${PROJECT}`);
    await page.waitForSelector('figure.chart[data-metric="train/loss"]');
    expect(await page.getByTestId("layout-state").textContent()).toBe("automatic layout");
    expect((await sectionNames(page)).filter((s) => s !== "System")).toEqual(["train", "val"]);

    // A line chart of two metrics, with its own smoothing and y range.
    await addPanel(page, "train", async () => {
      await page.locator('[data-choice="train/loss"]').check();
      await page.locator('[data-choice="val/loss"]').check();
      await page.getByTestId("panel-title").fill("losses");
      await page.getByTestId("panel-smoothing").fill("0.5");
      await page.getByTestId("panel-ymax").fill("2");
    });
    const losses = page.locator('figure.chart[data-metric="train/loss"]', { hasText: "losses" });
    await expect.poll(() => losses.getAttribute("data-lines")).toBe(
      // Newest run first, as in the runs table.
      ["run-2", "run-1", "run-0"].map((r) => `${r} · train/loss`).concat(["run-2", "run-1", "run-0"].map((r) => `${r} · val/loss`)).join("|"),
    );
    // The y range is the panel's: up to 2, though run-2's val/loss reaches 3.5.
    await expect.poll(async () => Number((await losses.getAttribute("data-yscale"))!.split(",")[1])).toBe(2);
    expect(await losses.getByTestId("legend").textContent()).toContain("run-1 · val/loss");

    // Bad input names what is wrong, and adds nothing.
    await section(page, "val").getByTestId("add-panel").click();
    await page.getByTestId("panel-type").selectOption("scatter");
    await page.getByTestId("panel-save").click();
    expect(await page.getByTestId("panel-error").textContent()).toBe("choose the x and y columns");
    // A scatter of two runs-table columns.
    await page.getByTestId("panel-scatter-x").selectOption("config.lr");
    await page.getByTestId("panel-scatter-y").selectOption("summary.train/loss");
    await page.getByTestId("panel-save").click();
    const scatter = page.locator('[data-testid="runs-panel"][data-kind="scatter"]');
    await expect.poll(() => scatter.getAttribute("data-marks")).toBe("3");
    await scatter.locator('circle[data-run="r1"]').hover();
    expect(await scatter.getByTestId("runs-panel-hover").textContent()).toMatch(/^run-1: config\.lr = 0\.01, summary\.train\/loss = 0\.1/);
    // Parallel coordinates over config, summary and a category column.
    await addPanel(page, "val", async () => {
      await page.getByTestId("panel-type").selectOption("parallel");
      for (const c of ["config.lr", "config.layers", "config.opt", "summary.val/loss"]) await page.locator(`[data-choice="${c}"]`).check();
    });
    const parallel = page.locator('[data-testid="runs-panel"][data-kind="parallel"]');
    await expect.poll(() => parallel.getAttribute("data-marks")).toBe("3");
    expect(await parallel.locator("text.axis").allTextContents()).toEqual(["config.lr", "config.layers", "config.opt", "summary.val/loss"]);
    // A bar per run.
    await addPanel(page, "val", async () => {
      await page.getByTestId("panel-type").selectOption("bar");
      await page.getByTestId("panel-column").selectOption("summary.val/loss");
    });
    await expect.poll(() => page.locator('[data-testid="runs-panel"][data-kind="bar"]').getAttribute("data-marks")).toBe("3");

    // Edit an automatic panel: its x-axis.
    await cell(page, "train/acc").hover();
    await cell(page, "train/acc").getByTestId("edit-panel").click();
    await page.getByTestId("panel-x").selectOption("_runtime");
    await page.getByTestId("panel-save").click();

    // Drag val/loss onto the first panel of train: it takes its place.
    const valLoss = page.locator('[data-section="val"] .cell', { has: page.locator('figure.chart[data-metric="val/loss"]') });
    await valLoss.hover();
    await valLoss.getByTestId("drag-panel").dragTo(section(page, "train").locator(".cell").first());
    await expect.poll(() => panelsOf(page, "train")).toEqual(["line:val/loss:1", "line:train/acc:1", "line:train/loss:1", "line:train/loss:1"]);
    // Resize it to the whole row by its corner.
    const moved = section(page, "train").locator(".cell").first();
    const box = (await moved.boundingBox())!;
    const grid = (await section(page, "train").locator(".grid").boundingBox())!;
    await moved.hover();
    const handle = (await moved.getByTestId("resize-panel").boundingBox())!;
    await page.mouse.move(handle.x + 5, handle.y + 5);
    await page.mouse.down();
    await page.mouse.move(grid.x + grid.width - 10, box.y + box.height - 10, { steps: 5 });
    await page.mouse.up();
    await expect.poll(() => moved.getAttribute("data-w")).toBe("3");
    expect((await moved.boundingBox())!.width).toBeGreaterThan(grid.width * 0.9);

    // Rename a section, remove a panel.
    await section(page, "train").getByTestId("rename-section").click();
    await page.getByTestId("section-name-input").fill("Training");
    await page.getByTestId("section-name-input").press("Enter");
    await cell(page, "train/acc").hover();
    await cell(page, "train/acc").getByTestId("remove-panel").click();
    const arranged = ["line:val/loss:3", "line:train/loss:1", "line:train/loss:1"];
    await expect.poll(() => panelsOf(page, "Training")).toEqual(arranged);
    await expect.poll(() => page.getByTestId("layout-state").textContent()).toBe("layout saved");
    await page.locator('[data-section="Training"]').scrollIntoViewIfNeeded();
    await screenshot(page, "arrange-arranged");

    // A reload finds the same layout: sections, order, sizes, and each panel's settings.
    await page.reload();
    await page.waitForSelector('[data-testid="section"][data-section="Training"]');
    expect((await sectionNames(page)).filter((s) => s !== "System")).toEqual(["Training", "val"]);
    await expect.poll(() => panelsOf(page, "Training")).toEqual(arranged);
    expect(await panelsOf(page, "val")).toEqual(["scatter:config.lr|summary.train/loss:1", "parallel:config.lr|config.layers|config.opt|summary.val/loss:1", "bar:summary.val/loss:1"]);
    await expect.poll(() => page.locator('figure.chart[data-metric="train/loss"]', { hasText: "losses" }).getAttribute("data-lines")).toContain("run-2 · val/loss");
    expect(await page.getByTestId("layout-state").textContent()).toBe("your layout");
    await screenshot(page, "arrange-reloaded");
    await section(page, "val").locator('[data-kind="parallel"]').scrollIntoViewIfNeeded();
    await screenshot(page, "arrange-runs-panels");

    // Reset to automatic: the generated layout, also after a reload.
    await page.getByTestId("reset-layout").click();
    await expect.poll(async () => (await sectionNames(page)).filter((s) => s !== "System")).toEqual(["train", "val"]);
    expect(await panelsOf(page, "train")).toEqual(["line:train/acc:1", "line:train/loss:1"]);
    await page.reload();
    await page.waitForSelector('[data-testid="section"][data-section="train"]');
    expect(await page.getByTestId("layout-state").textContent()).toBe("automatic layout");
    await expectNoErrors(page);
  });

  it("takes the Runs tab's filter into the Workspace's run selector", async () => {
    const page = await open(browser, `/e2e/${PROJECT}`);
    await page.waitForSelector('figure.chart[data-metric="train/loss"]');
    await expect.poll(() => page.locator(".runlist li").count()).toBe(3);
    await page.getByRole("link", { name: "Runs" }).click();
    await page.click('[data-testid="filter-button"]');
    const input = page.locator('[data-testid="filter-panel"] [data-testid="filter-expression"]');
    await input.fill("opt = adam");
    await input.press("Escape");
    await page.click('[data-testid="filter-panel"] [data-testid="apply-expression"]');
    await expect.poll(() => page.getByTestId("run-count").textContent()).toBe("2 runs");
    await page.getByRole("link", { name: "Workspace" }).click();
    await expect.poll(() => page.locator(".runlist li .name").allTextContents()).toEqual(expect.arrayContaining(["run-0", "run-2"]));
    expect(await page.locator(".runlist li").count()).toBe(2);
    expect(await page.getByTestId("workspace-filter-text").textContent()).toBe("opt = adam");
    await expect.poll(() => page.locator('figure.chart[data-metric="train/loss"]').first().getAttribute("data-lines")).toBe("run-2|run-0");
    await screenshot(page, "arrange-filter-carried");
    await expectNoErrors(page);
  });
});
