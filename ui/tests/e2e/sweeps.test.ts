// A sweep's page, as a user uses it: the project's sweeps, a sweep with its best trial, the
// metric over trials, parameter importance, a brush on the parallel-coordinates plot that
// filters the trials table, pause and resume, and the link from a trial's Overview.
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectNoErrors, launch, open, py, screenshot } from "./helpers";

const PROJECT = "sweeps-e2e";
let browser: Browser;
let sweepId = "";

beforeAll(async () => {
  sweepId = py(`
import cairn, sys, io
config = {"name": "lr search", "method": "grid", "metric": {"name": "loss", "goal": "minimize"},
          "parameters": {"lr": {"values": [0.3, 0.1, 0.03, 0.01]}, "layers": {"values": [1, 2, 3]}, "opt": {"values": ["adam", "sgd"]}}}
sweep_id = cairn.sweep(config, project="${PROJECT}")
def train():
    run = cairn.init()
    c = run.config
    # The loss follows lr; layers and opt barely matter.
    run.log({"loss": c["lr"] * 10 + 0.01 * c["layers"] + (0.001 if c["opt"] == "sgd" else 0)})
    run.finish()
cairn.agent(sweep_id, function=train, project="${PROJECT}")
print(sweep_id)
`).trim().split("\n").at(-1)!;
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

describe("the sweep page", () => {
  it("shows the best trial, the metric over trials and importance, and a brush filters the trials", async () => {
    const list = await open(browser, `/e2e/${PROJECT}/sweeps`);
    const row = list.locator(`[data-testid="sweep-list"] tr[data-sweep="${sweepId}"]`);
    await expect.poll(() => row.textContent()).toContain("finished");
    expect(await row.textContent()).toContain("24 / 24");
    await row.locator("a").click();
    const page = list;
    await page.getByTestId("sweep-page").waitFor();
    expect(page.url()).toContain(`/sweeps/${sweepId}`);
    expect(await page.getByTestId("sweep-state").textContent()).toBe("finished");
    await expect.poll(() => page.getByTestId("sweep-best").textContent()).toMatch(/loss = 0\.11/);
    expect(await page.getByTestId("sweep-progress").getAttribute("data-points")).toBe("24");
    // lr drives the loss: first in importance, with a small permutation p-value.
    const first = page.locator('[data-testid="sweep-importance"] tbody tr').first();
    expect(await first.getAttribute("data-param")).toBe("lr");
    expect(Number((await first.locator("td").nth(2).textContent())!)).toBeLessThan(0.05);
    const trials = page.locator('[data-testid="sweep-trials"] tbody tr');
    expect(await trials.count()).toBe(24);
    // The best trial tops the table (sorted by the metric); its columns are the parameters.
    const heads = await page.locator('[data-testid="sweep-trials"] thead th').allTextContents();
    const lrAt = heads.indexOf("lr");
    expect(heads).toEqual(expect.arrayContaining(["layers", "lr", "opt", "loss"]));
    expect(await trials.first().locator("td").nth(lrAt).textContent()).toBe("0.01");

    // Brush the lr axis from its top to its middle: only the larger learning rates stay.
    const grab = page.locator('[data-testid="sweep-parallel"] rect.grab[data-axis="lr"]');
    const box = (await grab.boundingBox())!;
    await page.mouse.move(box.x + box.width / 2, box.y + 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height * 0.45, { steps: 6 });
    await page.mouse.up();
    await expect.poll(() => page.getByTestId("sweep-parallel").getAttribute("data-kept")).toBe("6");
    expect(await trials.count()).toBe(6);
    const lrs = await trials.evaluateAll((rows, at) => rows.map((r) => r.querySelectorAll("td")[at].textContent), lrAt);
    expect(new Set(lrs)).toEqual(new Set(["0.3"]));
    await page.getByTestId("sweep-parallel").scrollIntoViewIfNeeded();
    await screenshot(page, "sweep-page-brushed");
    await page.getByTestId("clear-brushes").click();
    await expect.poll(() => trials.count()).toBe(24);

    // A trial's Overview links to its sweep.
    await trials.first().locator("a").click();
    await page.getByTestId("run-sweep").waitFor();
    expect(await page.getByTestId("run-sweep").textContent()).toBe(sweepId);
    await page.getByTestId("run-sweep").click();
    await page.getByTestId("sweep-page").waitFor();
    await expectNoErrors(page);
  });

  it("pauses, resumes and cancels a running sweep", async () => {
    const id = py(`
import cairn
print(cairn.sweep({"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}}}, project="${PROJECT}"))
`).trim().split("\n").at(-1)!;
    const page = await open(browser, `/e2e/${PROJECT}/sweeps/${id}`);
    await page.getByTestId("sweep-pause").click();
    await expect.poll(() => page.getByTestId("sweep-state").textContent()).toBe("paused");
    await page.getByTestId("sweep-resume").click();
    await expect.poll(() => page.getByTestId("sweep-state").textContent()).toBe("running");
    await page.getByTestId("sweep-cancel").click();
    await expect.poll(() => page.getByTestId("sweep-state").textContent()).toBe("canceled");
    expect(await page.getByTestId("sweep-pause").count()).toBe(0);
    await screenshot(page, "sweep-page-canceled");
    await expectNoErrors(page);
  });
});
