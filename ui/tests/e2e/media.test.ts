// Rich values on the run page: histograms logged by the Python client over 100 steps are drawn
// as a heatmap of their distribution over the steps, merged by the server in buckets.
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectNoErrors, launch, open, py, screenshot } from "./helpers";

const PROJECT = "media-e2e";
let browser: Browser;

beforeAll(async () => {
  py(`
import random, cairn
rng = random.Random(3)
run = cairn.init(project="${PROJECT}", id="hist", name="histograms")
for step in range(100):
    weights = [rng.gauss(step / 20, 1 + step / 100) for _ in range(500)]
    run.log({"weights": cairn.Histogram(weights, num_bins=32), "grads": cairn.Histogram([w * 0.01 for w in weights], num_bins=16), "loss": 1 / (step + 1)})
table = cairn.Table(columns=["id", "digit", "confidence"])
for i in range(25):
    table.add_data(i, str(i % 10), round(1 - i / 50, 3))
run.log({"predictions": table})
t = cairn.Table(columns=["epoch", "acc", "model"], data=[[e, e / 10 + (0.05 if e % 2 else 0), "a" if e < 5 else "b"] for e in range(10)])
y_true = [i % 3 for i in range(90)]
probas = [[0.7 if c == t else 0.15 for c in range(3)] if i % 4 else [1 / 3] * 3 for i, t in enumerate(y_true)]
run.log({
    "acc_line": cairn.plot.line(t, "epoch", "acc", stroke="model", title="Accuracy by model"),
    "acc_points": cairn.plot.scatter(t, "epoch", "acc"),
    "acc_bars": cairn.plot.bar(t, "model", "acc", title="Accuracy per row"),
    "acc_hist": cairn.plot.histogram(t, "acc"),
    "series": cairn.plot.line_series(xs=[0, 1, 2, 3], ys=[[1, 2, 3, 4], [4, 3, 2, 1]], keys=["up", "down"]),
    "cm": cairn.plot.confusion_matrix(preds=[t if i % 5 else (t + 1) % 3 for i, t in enumerate(y_true)], y_true=y_true, class_names=["cat", "dog", "fish"]),
    "pr": cairn.plot.pr_curve(y_true, probas, labels=["cat", "dog", "fish"]),
    "roc": cairn.plot.roc_curve(y_true, probas, labels=["cat", "dog", "fish"]),
})
run.log({"report": cairn.Html("<h1 id='t'>Report</h1><p>all good</p><script>document.body.innerHTML = 'script ran'; parent.document.title = 'hacked'</script>")})
run.finish()
`);
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

describe("histograms", () => {
  it("draw as a heatmap over the steps on the run's workspace", async () => {
    const page = await open(browser, `/e2e/${PROJECT}/runs/hist?tab=workspace`);
    const panels = page.getByTestId("histograms").getByTestId("histogram-panel");
    await expect.poll(() => panels.count()).toBe(2);
    const weights = page.locator('[data-testid="histogram-panel"][data-metric="weights"]');
    await expect.poll(() => weights.getAttribute("data-buckets")).toBe("60");
    const [lo, hi] = (await weights.locator("canvas").getAttribute("data-range"))!.split(",").map(Number);
    expect(lo).toBeLessThan(-1);
    expect(hi).toBeGreaterThan(6);
    // Something is drawn, and more of it at the top right (the distribution moves up).
    const painted = await weights.locator("canvas").evaluate((c: HTMLCanvasElement) => {
      const ctx = c.getContext("2d")!;
      const alpha = (x0: number, y0: number) => {
        const d = ctx.getImageData(x0, y0, c.width / 4, c.height / 4).data;
        let sum = 0;
        for (let i = 3; i < d.length; i += 4) sum += d[i];
        return sum;
      };
      return { topRight: alpha((3 * c.width) / 4, 0), topLeft: alpha(0, 0), bottomLeft: alpha(0, (3 * c.height) / 4) };
    });
    expect(painted.topRight).toBeGreaterThan(painted.topLeft);
    expect(painted.bottomLeft).toBeGreaterThan(0);
    // Hovering names the steps under the cursor.
    const box = (await weights.locator("canvas").boundingBox())!;
    await page.mouse.move(box.x + box.width - 3, box.y + box.height / 2);
    await expect.poll(() => weights.getByTestId("histogram-hover").textContent()).toMatch(/^steps? (9\d–)?99: .* values$/);
    // The summary shows the last one as one value, not as keys of its own.
    await weights.scrollIntoViewIfNeeded();
    await screenshot(page, "media-histograms");
    await page.goto(page.url().replace("tab=workspace", "tab=overview"));
    await expect.poll(() => page.locator("body").textContent()).toContain("histogram (32 bins, 500 values)");
    expect(await page.locator("body").textContent()).not.toContain("weights._type");
    await expectNoErrors(page);
  });
});

describe("tables", () => {
  it("sort, filter and page on the run's workspace", async () => {
    const page = await open(browser, `/e2e/${PROJECT}/runs/hist?tab=workspace`);
    const panel = page.getByTestId("tables").locator('[data-testid="table-panel"][data-metric="predictions"]');
    await panel.waitFor();
    const column = (i: number) => panel.locator("tbody tr").evaluateAll((rows, i) => rows.map((r) => r.children[i].textContent), i);
    expect(await column(0)).toEqual(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    expect(await panel.getByTestId("table-page").textContent()).toBe("1 / 3");
    // Sorted by confidence, then the other way.
    await panel.locator('[data-column="confidence"]').click();
    expect((await column(2))[0]).toBe("0.52");
    await panel.locator('[data-column="confidence"]').click();
    expect((await column(2))[0]).toBe("1");
    // Paged.
    await panel.getByTestId("table-next").click();
    await panel.getByTestId("table-next").click();
    expect(await panel.getByTestId("table-page").textContent()).toBe("3 / 3");
    expect(await column(0)).toEqual(["20", "21", "22", "23", "24"]);
    // Filtered over every cell: the digit 7 is in rows 7 and 17 (and 7 in no confidence).
    await panel.getByTestId("table-filter").fill("7");
    await expect.poll(() => panel.getByTestId("table-count").textContent()).toMatch(/^\d+ of 25 rows$/);
    const ids = (await column(0)).map(Number);
    expect(ids).toContain(7);
    expect(ids).toContain(17);
    expect(await panel.getByTestId("table-page").textContent()).toBe("1 / 1");
    await panel.scrollIntoViewIfNeeded();
    await screenshot(page, "media-table");
    await expectNoErrors(page);
  });
});

describe("HTML", () => {
  it("shows in a frame where its scripts do not run", async () => {
    const page = await open(browser, `/e2e/${PROJECT}/runs/hist?tab=workspace`);
    const panel = page.getByTestId("htmls").locator('[data-testid="html-panel"][data-metric="report"]');
    await panel.waitFor();
    const frame = panel.frameLocator("iframe");
    await expect.poll(() => frame.locator("h1").textContent()).toBe("Report");
    expect(await frame.locator("body").innerText()).not.toContain("script ran");
    expect(await frame.locator("p").textContent()).toBe("all good");
    expect(await page.title()).not.toBe("hacked");
    expect(await panel.locator("iframe").getAttribute("sandbox")).toBe("");
    await panel.scrollIntoViewIfNeeded();
    await page.waitForTimeout(300);
    await screenshot(page, "media-html");
    await expectNoErrors(page);
  });
});

describe("cairn.plot charts", () => {
  it("draw each kind from its table", async () => {
    const page = await open(browser, `/e2e/${PROJECT}/runs/hist?tab=workspace`);
    const panels = page.getByTestId("plots").getByTestId("plot-panel");
    await expect.poll(() => panels.count()).toBe(8);
    const panel = (metric: string) => page.locator(`[data-testid="plot-panel"][data-metric="${metric}"]`);
    expect(await panel("acc_line").getAttribute("data-series")).toBe("2");
    expect(await panel("acc_line").locator("polyline").count()).toBe(2);
    expect(await panel("acc_points").locator("circle").count()).toBe(10);
    expect(await panel("acc_bars").locator("rect").count()).toBe(10);
    expect(await panel("acc_hist").locator("rect").count()).toBe(20);
    expect(await panel("series").locator("polyline").count()).toBe(2);
    expect(await panel("pr").getAttribute("data-series")).toBe("3");
    expect(await panel("roc").getAttribute("data-series")).toBe("3");
    // The confusion matrix: 3 × 3 cells, the diagonal holding most.
    const cells = panel("cm").locator("rect");
    expect(await cells.count()).toBe(9);
    expect(await panel("cm").locator("text").allTextContents()).toContain("24");
    expect(await panel("acc_line").locator(".title").textContent()).toBe("Accuracy by model");
    await panel("acc_line").scrollIntoViewIfNeeded();
    await screenshot(page, "media-plots");
    await expectNoErrors(page);
  });
});
