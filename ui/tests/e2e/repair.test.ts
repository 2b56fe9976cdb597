// The two defects that every earlier test missed, tested as a user meets them: a file downloaded
// from the Files tab by Chromium has the bytes that were saved, and a chart drawn from live
// updates while a run logs is the same chart that a reload draws.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DrawnLine, drawnData, expectNoErrors, pointCountsUntilExit, getJson, launch, open, py, pyBackground, screenshot } from "./helpers";

const PROJECT = "repair-e2e";
let browser: Browser;

beforeAll(async () => {
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

describe("the repairs", () => {
  it("downloads a saved file through the browser with the same bytes", async () => {
    const out = py(`
import os, cairn, tempfile
d = tempfile.mkdtemp()
# Text that the server gzips for a browser, and binary bytes over several reads.
with open(os.path.join(d, "notes.txt"), "w") as f:
    f.write("".join(f"line {i}: loss {1 / (i + 1)}\\n" for i in range(20000)))
with open(os.path.join(d, "weights.bin"), "wb") as f:
    f.write(os.urandom(300_000))
run = cairn.init(project="${PROJECT}", name="with-files")
run.save(os.path.join(d, "*"), base_path=d, policy="now")
run.finish()
print("ID", run.id, d)
`);
    const [, id, dir] = /ID (\S+) (\S+)/.exec(out)!;
    const page = await open(browser, `/e2e/${PROJECT}/${id}?tab=files`);
    for (const name of ["notes.txt", "weights.bin"]) {
      const link = page.locator(`table.files a:text-is("${name}")`);
      await link.waitFor();
      const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
      expect(await download.failure()).toBeNull();
      expect(download.suggestedFilename()).toBe(name);
      const got = readFileSync((await download.path())!);
      const want = readFileSync(join(dir, name));
      expect(got.length).toBe(want.length);
      expect(got.equals(want)).toBe(true);
    }
    await screenshot(page, "files-download");
    await expectNoErrors(page);
  });

  it("draws a live run on the same grid as a reload does", async () => {
    // Finished runs set the x-range (2,000 steps); the live one logs well inside it.
    py(`
import math, cairn
for r in range(5):
    run = cairn.init(project="${PROJECT}", name=f"done-{r}", config={"seed": r})
    for i in range(2000):
        run.log({"loss": math.exp(-i / 500) + 0.05 * r + 0.02 * math.sin(i / 7)})
    run.finish()
`);
    const page = await open(browser, `/e2e/${PROJECT}?panels=%5Eloss%24`);
    const chart = page.locator('figure.chart[data-metric="loss"]');
    await expect.poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 20_000 }).toBe(10_000);

    const live = pyBackground(`
import math, time, cairn
run = cairn.init(project="${PROJECT}", name="live")
for i in range(600):
    run.log({"loss": math.exp(-i / 500) + 0.3})
    if i % 20 == 19:
        time.sleep(0.25)
run.finish()
print("DONE", flush=True)
`);
    // The chart follows the live run through several partial updates.
    const seen = await pointCountsUntilExit(chart, live);
    expect([...seen].filter((n) => n > 10_000 && n < 10_600).length).toBeGreaterThan(2);
    await expect.poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 20_000 }).toBe(10_600);
    await screenshot(page, "workspace-live-after");
    const liveDrawn = await drawnData(page, "loss");

    // While it logged, the x-axis stayed the finished runs' 0–1,999, and the live line ends at
    // its last step, not stretched over the axis.
    expect(liveDrawn.x[0]).toBeLessThan(5);
    expect(liveDrawn.x[liveDrawn.x.length - 1]).toBeGreaterThan(1990);
    const liveLine = liveDrawn.lines.find((l) => l.name === "live")!;
    const lastDrawn = liveLine.line.reduce((last: number, v, i) => (v === null ? last : i), -1);
    expect(liveDrawn.x[lastDrawn]).toBeGreaterThan(590);
    expect(liveDrawn.x[lastDrawn]).toBeLessThan(610);

    await page.reload();
    await expect.poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 20_000 }).toBe(10_600);
    await screenshot(page, "workspace-live-reloaded");
    const reloaded = await drawnData(page, "loss");
    expect(liveDrawn.x).toEqual(reloaded.x);
    const byName = (d: { lines: DrawnLine[] }) => Object.fromEntries(d.lines.map((l) => [l.name, l]));
    expect(byName(liveDrawn)).toEqual(byName(reloaded));
    const run = (await getJson(`/api/v1/projects/e2e/${PROJECT}/runs?limit=10`)).runs.find((r: { name: string }) => r.name === "live");
    expect(run.state).toBe("finished");
    await expectNoErrors(page);
  });

  it("draws a live run that leads the axis where its points are", async () => {
    // The metric is the step itself, so every drawn bucket's value must sit at its x.
    py(`
import cairn
run = cairn.init(project="${PROJECT}-lead", name="short")
for i in range(300):
    run.log({"lead": float(i)})
run.finish()
`);
    const page = await open(browser, `/e2e/${PROJECT}-lead?panels=%5Elead%24`);
    const chart = page.locator('figure.chart[data-metric="lead"]');
    await expect.poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 20_000 }).toBe(300);
    const live = pyBackground(`
import time, cairn
run = cairn.init(project="${PROJECT}-lead", name="leader")
for i in range(1200):
    run.log({"lead": float(i)})
    if i % 40 == 39:
        time.sleep(0.25)
run.finish()
`);
    const worst: number[] = [];
    const lastX: number[] = [];
    while (live.exitCode === null) {
      const drawn = await drawnData(page, "lead").catch(() => null);
      const leader = drawn?.lines.find((l) => l.name === "leader");
      if (drawn && leader) {
        const width = (drawn.x[drawn.x.length - 1] - drawn.x[0]) / Math.max(drawn.x.length - 1, 1);
        let off = 0;
        leader.line.forEach((v, i) => v !== null && (off = Math.max(off, Math.abs(v - drawn.x[i]) / Math.max(width, 1))));
        worst.push(off);
        lastX.push(drawn.x[leader.line.reduce((last: number, v, i) => (v === null ? last : i), 0)]);
      }
      await page.waitForTimeout(150);
    }
    expect(live.exitCode, live.output).toBe(0);
    await expect.poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 20_000 }).toBe(1500);
    // Sampled through the run: the axis grew with it, and no bucket was drawn more than a
    // bucket's width away from where its points are.
    expect(worst.length).toBeGreaterThan(5);
    expect(Math.max(...worst)).toBeLessThanOrEqual(1.01);
    expect(new Set(lastX).size).toBeGreaterThan(3);
    const final = await drawnData(page, "lead");
    const leader = final.lines.find((l) => l.name === "leader")!;
    expect(final.x[leader.line.reduce((last: number, v, i) => (v === null ? last : i), 0)]).toBeGreaterThan(1190);
    await screenshot(page, "workspace-live-leading");
    await expectNoErrors(page);
  });
});
