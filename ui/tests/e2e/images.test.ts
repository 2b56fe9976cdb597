// Media on the workspaces: images logged by the Python client (encoded and uploaded by its
// background thread) shown per run with a step slider, enlarged on a click, in table cells, and
// audio and video as players; on the project's workspace, one row per run.
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectNoErrors, launch, open, py, screenshot } from "./helpers";

const PROJECT = "images-e2e";
let browser: Browser;

beforeAll(async () => {
  py(`
import numpy, cairn, tempfile, os
def digit(i, size=28):
    a = numpy.zeros((size, size, 3), dtype=numpy.uint8)
    a[:, :, 0] = min(255, 40 * i)
    a[4:size - 4, size // 2 - 2:size // 2 + 2, 1] = 255
    return a
video = os.path.join(tempfile.mkdtemp(), "clip.webm")
open(video, "wb").write(b"\\x1aE\\xdf\\xa3" + bytes(200))
for r in range(3):
    run = cairn.init(project="${PROJECT}", id=f"img{r}", name=f"images-{r}")
    for step in range(6):
        run.log({
            "samples": cairn.Image(digit(step + r), caption=f"run {r} step {step}"),
            "big": cairn.Image(numpy.full((600, 900, 3), 30 * step, dtype=numpy.uint8)),
            "weights": cairn.Histogram(numpy.random.default_rng(step).normal(step, 1, 300)),
            "loss": 1 / (step + 1),
        })
    table = cairn.Table(columns=["image", "guess"])
    for i in range(4):
        table.add_data(cairn.Image(digit(i)), i)
    run.log({
        "predictions": table,
        "sound": cairn.Audio(numpy.sin(numpy.linspace(0, 600, 8000)).astype("float32") * 0.3, sample_rate=8000, caption="tone"),
        "clip": cairn.Video(video, caption="a clip"),
    })
    run.finish()
`);
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

/** The red channel of an image's center, as the browser decoded it (0 when not loaded). */
async function centerRed(page: Page, selector: string): Promise<number> {
  return page.locator(selector).first().evaluate((img: HTMLImageElement) => {
    if (!img.complete || img.naturalWidth === 0) return -1;
    const c = document.createElement("canvas");
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const ctx = c.getContext("2d")!;
    ctx.drawImage(img, 0, 0);
    return ctx.getImageData(1, 1, 1, 1).data[0];
  });
}

describe("images", () => {
  it("show on the run's workspace with a step slider, and enlarge on a click", async () => {
    const page = await open(browser, `/e2e/${PROJECT}/runs/img1?tab=workspace`);
    const panel = page.locator('[data-testid="media-panel"][data-metric="samples"]');
    await expect.poll(() => panel.getAttribute("data-step")).toBe("5");
    const img = '[data-testid="media-panel"][data-metric="samples"] img';
    // The last step's image: red 40 × (5 + 1).
    await expect.poll(() => centerRed(page, img)).toBe(240);
    await expect.poll(() => panel.locator("figcaption").first().textContent()).toBe("run 1 step 5");
    // The slider goes back in steps.
    await panel.getByTestId("media-step").fill("2");
    await expect.poll(() => panel.getAttribute("data-step")).toBe("2");
    await expect.poll(() => centerRed(page, img)).toBe(120);
    // A large image shows as its thumbnail, and whole once enlarged.
    const big = page.locator('[data-testid="media-panel"][data-metric="big"]');
    await expect.poll(() => big.locator("img").first().getAttribute("src")).toMatch(/\.thumb\.png$/);
    await big.locator("button.thumb").first().click();
    const enlarged = page.getByTestId("media-enlarged").locator("img");
    await expect.poll(() => enlarged.evaluate((i: HTMLImageElement) => i.naturalWidth)).toBe(900);
    await screenshot(page, "media-image-enlarged");
    await page.keyboard.press("Escape");
    await expect.poll(() => page.getByTestId("media-enlarged").count()).toBe(0);
    await panel.scrollIntoViewIfNeeded();
    await screenshot(page, "media-images");
    await expectNoErrors(page);
  });

  it("fill table cells, and audio and video play in players", async () => {
    const page = await open(browser, `/e2e/${PROJECT}/runs/img0?tab=workspace`);
    const table = page.locator('[data-testid="table-panel"][data-metric="predictions"]');
    await expect.poll(() => table.locator("img").count()).toBe(4);
    await expect.poll(() => centerRed(page, '[data-testid="table-panel"] tr[data-row]:nth-child(3) img')).toBe(80);
    const audio = page.locator('[data-testid="media-panel"][data-metric="sound"] audio');
    await expect.poll(() => audio.count()).toBe(1);
    // The player loads the WAV the client encoded.
    const duration = await audio.evaluate(async (a: HTMLAudioElement) => {
      a.preload = "auto";
      a.load();
      await new Promise((resolve) => a.addEventListener("loadedmetadata", resolve, { once: true }));
      return a.duration;
    });
    expect(duration).toBeCloseTo(1, 1);
    const video = page.locator('[data-testid="media-panel"][data-metric="clip"] video');
    expect(await video.getAttribute("src")).toMatch(/media\/videos\/clip\/[0-9a-f]{20}\.webm$/);
    await table.scrollIntoViewIfNeeded();
    await screenshot(page, "media-table-audio-video");
    // The file the video names is served whole.
    const response = await page.request.get(new URL(await video.getAttribute("src") ?? "", page.url()).toString());
    expect(response.status()).toBe(200);
    expect((await response.body()).length).toBe(204);
    await expectNoErrors(page);
  });

  it("show one row per run on the project's workspace, histograms beside them", async () => {
    const page = await open(browser, `/e2e/${PROJECT}`);
    const panel = page.locator('[data-section="Media"]').locator('[data-testid="media-panel"][data-metric="samples"]');
    await expect.poll(() => panel.locator(".row").count()).toBe(3);
    await expect.poll(() => panel.locator("img").count()).toBe(3);
    // Each run's own image at the last step: red 40 × (5 + r), at most 255.
    for (const [r, red] of [[0, 200], [1, 240], [2, 255]]) {
      await expect.poll(() => centerRed(page, `[data-section="Media"] [data-metric="samples"] .row[data-run="img${r}"] img`)).toBe(red);
    }
    const hist = page.locator('[data-section="Histograms"]').locator('[data-testid="histogram-runs"][data-metric="weights"]');
    await hist.scrollIntoViewIfNeeded();
    await expect.poll(() => hist.locator('[data-testid="histogram-panel"][data-buckets="6"]').count()).toBe(3);
    await panel.scrollIntoViewIfNeeded();
    await screenshot(page, "media-project-workspace");
    await expectNoErrors(page);
  });
});
