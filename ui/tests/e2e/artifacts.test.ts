// Artifacts on the run page, as a user finds them: a dataset logged by one run is an output on
// its Overview and in its Artifacts tab, and an input of the run that used it, whose producer
// links back.
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectNoErrors, launch, open, py, screenshot } from "./helpers";

const PROJECT = "artifacts-e2e";
let browser: Browser;

beforeAll(async () => {
  py(`
import os, tempfile, cairn
d = tempfile.mkdtemp()
for i in range(3):
    with open(os.path.join(d, f"part{i}.csv"), "w") as f:
        f.write("x,y\\n" * (i + 1) * 100)
maker = cairn.init(project="${PROJECT}", id="maker")
art = cairn.Artifact("dataset", type="dataset")
art.add_dir(d)
maker.log_artifact(art, aliases=["best"])
maker.finish()
user = cairn.init(project="${PROJECT}", id="user")
user.use_artifact("dataset:best").download(os.path.join(d, "out"))
user.finish()
`);
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

describe("artifacts on the run page", () => {
  it("lists a run's outputs and inputs, with links to the run that logged them", async () => {
    const maker = await open(browser, `/e2e/${PROJECT}/runs/maker`);
    await expect.poll(() => maker.getByTestId("artifact-outputs").textContent().then((t) => t?.trim())).toBe("dataset:v0");
    await maker.locator('[data-tab="artifacts"]').click();
    const row = maker.locator('[data-testid="artifacts-outputs"] [data-artifact="dataset:v0"]');
    await expect.poll(() => row.textContent()).toContain("best");
    expect(await row.textContent()).toContain("3");
    expect(await maker.getByText("This run used no artifacts.").count()).toBe(1);
    await screenshot(maker, "artifacts-run-outputs");

    const user = await open(browser, `/e2e/${PROJECT}/runs/user?tab=artifacts`);
    const input = user.locator('[data-testid="artifacts-inputs"] [data-artifact="dataset:v0"]');
    await expect.poll(() => input.textContent()).toContain("dataset");
    await input.getByRole("link", { name: "maker" }).click();
    await user.waitForURL(/\/runs\/maker/);
    // The tab stays: the producer's outputs.
    await expect.poll(() => user.locator('[data-testid="artifacts-outputs"] [data-artifact="dataset:v0"]').count()).toBe(1);
    await expectNoErrors(maker);
    await expectNoErrors(user);
  });
});
