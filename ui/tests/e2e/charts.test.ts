// The workspace's charts: a one-step spike among a million points reaches the drawn band, zoom
// re-buckets, and charts are made per metric in sections.
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectNoErrors, launch, open, py, screenshot } from "./helpers";

const PROJECT = "charts-e2e";
const SPIKE_STEP = 654_321;
const SPIKE = 1000;

let browser: Browser;

beforeAll(async () => {
  py(`
import math, time, cairn
run = cairn.init(project="${PROJECT}", name="million")
for i in range(1_000_000):
    run.log({"spiky": ${SPIKE}.0 if i == ${SPIKE_STEP} else math.sin(i / 5000.0)})
run.finish()
run = cairn.init(project="${PROJECT}", name="sections")
for i in range(200):
    run.log({"train/loss": 1 / (i + 1), "train/acc": i / 200, "val/loss": 2 / (i + 1), "lr": 0.1, "epoch": i // 20})
# Long enough for a system sample (the first comes 1.2 s after init), however loaded the machine.
time.sleep(3)
run.finish()
`);
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

interface Drawn {
  points: number;
  ymax: number;
  /** The highest value that the canvas has colored pixels for, in the spike's column. */
  topValue: number;
  /** Pixels between the topmost colored pixel and where the spike's value is on the y-axis. */
  missedPixels: number;
}

/** Reads what the chart drew: the canvas pixels around the spike's x, mapped back to values. */
async function drawn(page: Page, metric: string, x: number, y: number): Promise<Drawn> {
  return page.locator(`figure.chart[data-metric="${metric}"]`).evaluate((figure, [x, y]) => {
    const f = figure as HTMLElement;
    const [xmin, xmax] = f.dataset.xscale!.split(",").map(Number);
    const [ymin, ymax] = f.dataset.yscale!.split(",").map(Number);
    const [left, top, width, height] = f.dataset.bbox!.split(",").map(Number);
    const canvas = f.querySelector("canvas")!;
    const ctx = canvas.getContext("2d")!;
    const px = Math.round(left + ((x - xmin) / (xmax - xmin)) * width);
    let best = Number.POSITIVE_INFINITY;
    const image = ctx.getImageData(px - 3, top, 7, height).data;
    for (let row = 0; row < height; row++) {
      for (let col = 0; col < 7; col++) {
        const i = (row * 7 + col) * 4;
        const [r, g, b, a] = [image[i], image[i + 1], image[i + 2], image[i + 3]];
        // The run's color is saturated; grid lines and axes are gray.
        if (a > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 25) best = Math.min(best, row);
      }
    }
    const topValue = best === Number.POSITIVE_INFINITY ? Number.NaN : ymax - (best / height) * (ymax - ymin);
    const spikeRow = ((ymax - y) / (ymax - ymin)) * height;
    return { points: Number(f.dataset.points), ymax: Number(f.dataset.ymax), topValue, missedPixels: best - spikeRow };
  }, [x, y]);
}

describe("workspace charts", () => {
  it("draws a one-step spike among 1M points", async () => {
    const page = await open(browser, `/e2e/${PROJECT}?panels=spiky`);
    const chart = page.locator('figure.chart[data-metric="spiky"]');
    await expect.poll(() => chart.getAttribute("data-points"), { timeout: 20_000 }).toBe(String(1_000_000 + 0));
    await screenshot(page, "workspace-spike");
    const d = await drawn(page, "spiky", SPIKE_STEP, SPIKE);
    expect(d.ymax).toBe(SPIKE);
    // The band reaches the spike: in the spike's column, the run's color goes up to the pixel
    // row of the spike's value (anti-aliasing allowed for).
    expect(Math.abs(d.missedPixels), JSON.stringify(d)).toBeLessThanOrEqual(1.5);

    // Drag to zoom around the spike: the server re-buckets the range, and the spike is still there.
    const over = page.locator('figure.chart[data-metric="spiky"] .u-over');
    const box = (await over.boundingBox())!;
    const frac = SPIKE_STEP / 1_000_000;
    await page.mouse.move(box.x + box.width * (frac - 0.05), box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * (frac + 0.05), box.y + box.height / 2, { steps: 5 });
    await page.mouse.up();
    await expect.poll(() => chart.getAttribute("data-zoomed")).toBe("true");
    await expect.poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 10_000 }).toBeLessThan(200_000);
    const zoomed = await drawn(page, "spiky", SPIKE_STEP, SPIKE);
    expect(zoomed.ymax).toBe(SPIKE);
    expect(Math.abs(zoomed.missedPixels), JSON.stringify(zoomed)).toBeLessThanOrEqual(1.5);
    await screenshot(page, "workspace-zoomed");

    // Double-click resets.
    await over.dblclick();
    await expect.poll(() => chart.getAttribute("data-zoomed")).toBe("false");
    await expect.poll(() => chart.getAttribute("data-points")).toBe("1000000");
    await expectNoErrors(page);
  });

  it("makes one chart per metric, in sections by prefix, with a panel search", async () => {
    const page = await open(browser, `/e2e/${PROJECT}`);
    await page.waitForSelector('figure.chart[data-metric="train/loss"]');
    const sections = await page.$$eval('[data-testid="section"]', (all) => all.map((s) => s.getAttribute("data-section")!));
    // The client samples system metrics by itself: they get a section of their own, last.
    expect(sections.map((s) => s.split(" ")[0])).toEqual(["Charts", "train", "val", "System"]);
    const metrics = await page.$$eval("figure.chart", (f) => f.map((x) => x.getAttribute("data-metric")).sort());
    expect(metrics.filter((m) => !m!.startsWith("system."))).toEqual(["epoch", "lr", "spiky", "train/acc", "train/loss", "val/loss"]);
    expect(metrics).toContain("system.cpu");
    expect(metrics).toContain("system.memory_percent");

    await page.getByPlaceholder("Search panels").fill("loss");
    await expect.poll(() => page.$$eval("figure.chart", (f) => f.map((x) => x.getAttribute("data-metric")).sort())).toEqual(["train/loss", "val/loss"]);
    expect(page.url()).toContain("panels=loss");

    // Custom x-axis, log scale and smoothing are view state too.
    await page.getByLabel("x-axis").selectOption("epoch");
    await page.getByLabel("log scale").check();
    await expect.poll(() => page.locator('figure.chart[data-metric="train/loss"]').getAttribute("data-points")).not.toBe("0");
    expect(page.url()).toContain("x=epoch");
    expect(page.url()).toContain("log=1");
    await screenshot(page, "workspace-sections");

    // Hiding a run takes it out of the charts.
    const before = Number(await page.locator('figure.chart[data-metric="train/loss"]').getAttribute("data-points"));
    expect(before).toBe(200);
    await page.locator(".runlist li", { hasText: "sections" }).locator("button.eye").click();
    await expect.poll(() => page.locator('figure.chart[data-metric="train/loss"]').getAttribute("data-points")).toBe("0");
    expect(page.url()).toContain("off=");
    await expectNoErrors(page);
  });

  it("shows a tooltip listing the runs at the cursor", async () => {
    const page = await open(browser, `/e2e/${PROJECT}?panels=%5Etrain%2Floss%24`);
    const chart = page.locator('figure.chart[data-metric="train/loss"]');
    await expect.poll(() => chart.getAttribute("data-points")).toBe("200");
    const box = (await chart.locator(".u-over").boundingBox())!;
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    const tooltip = chart.locator(".tooltip");
    await expect.poll(() => tooltip.isVisible()).toBe(true);
    expect(await tooltip.textContent()).toContain("sections:");
  });

  it("groups lines by a column: a mean line and a min-max band per group", async () => {
    py(`
import cairn
for name, group, level in [("g-a1", "alpha", 1.0), ("g-a2", "alpha", 3.0), ("g-b1", "beta", 10.0)]:
    run = cairn.init(project="${PROJECT}-groups", name=name, group=group)
    for step in range(50):
        run.log({"metric": level})
    run.finish()
`);
    const page = await open(browser, `/e2e/${PROJECT}-groups?lgroup=group`);
    const chart = page.locator('figure.chart[data-metric="metric"]');
    await expect.poll(() => chart.getAttribute("data-lines")).toBe("group=alpha (2 runs)|group=beta (1 runs)");
    // The band spans the runs of each group: from alpha's 1 to beta's 10.
    expect(Number(await chart.getAttribute("data-ymin"))).toBe(1);
    expect(Number(await chart.getAttribute("data-ymax"))).toBe(10);
    await screenshot(page, "workspace-grouped");
    // Back to a line per run, from the toolbar.
    await page.selectOption('[data-testid="line-group"]', "");
    await expect.poll(async () => (await chart.getAttribute("data-lines"))!.split("|").sort()).toEqual(["g-a1", "g-a2", "g-b1"]);
    expect(page.url()).not.toContain("lgroup");
    await expectNoErrors(page);
  });
});
