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

  it("shows hyperband's decisions per bracket, and a stopped trial's Overview says why", async () => {
    // loss = x + 1/i at iteration i, x = 3, 1, 4, 2, 5 in turn: hyperband (iterations 2 and 4,
    // the top half kept) stops 4 and 5 at iteration 2.
    const id = py(`
import time, cairn
config = {"name": "hyperband", "method": "grid", "metric": {"name": "loss", "goal": "minimize"},
          "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2, "s": 2}, "parameters": {"x": {"values": [3, 1, 4, 2, 5]}}}
sweep_id = cairn.sweep(config, project="${PROJECT}")
def train():
    run = cairn.init()
    for i in range(1, 7):
        run.log({"loss": run.config["x"] + 1 / i})
        time.sleep(0.7)
    run.finish()
cairn.agent(sweep_id, function=train, project="${PROJECT}")
print(sweep_id)
`, { CAIRN_HEARTBEAT_SECS: "0.5" }).trim().split("\n").at(-1)!;
    const page = await open(browser, `/e2e/${PROJECT}/sweeps/${id}`);
    const bracket = page.locator('[data-testid="sweep-brackets"] tr[data-bracket="2"]');
    await expect.poll(() => bracket.getAttribute("data-stopped")).toBe("2");
    expect(await page.locator('[data-testid="sweep-brackets"] tr[data-bracket="4"]').getAttribute("data-stopped")).toBe("0");
    const stopped = page.locator('[data-testid="sweep-trials"] tbody tr', { has: page.getByTestId("stopped-at") });
    expect(await stopped.count()).toBe(2);
    expect(await stopped.first().textContent()).toMatch(/killed\s*· stopped at iteration 2/);
    await page.getByTestId("sweep-brackets").scrollIntoViewIfNeeded();
    await screenshot(page, "sweep-page-hyperband");
    await stopped.first().locator("a").click();
    await page.getByTestId("stop-reason").waitFor();
    expect(await page.getByTestId("stop-reason").textContent()).toMatch(/^stopped by hyperband at iteration 2: loss [\d.]+ ranks \d of the \d trials that reached it, below the top 1\/2/);
    await screenshot(page, "run-stopped-by-hyperband");
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
