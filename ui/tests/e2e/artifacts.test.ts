// Artifacts on the run page, as a user finds them: a dataset logged by one run is an output on
// its Overview and in its Artifacts tab, and an input of the run that used it, whose producer
// links back.
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { expectNoErrors, launch, open, py, screenshot, workDir } from "./helpers";

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

describe("code saved by log_code", () => {
  it("is linked from the Overview and listed, downloadable, in the Files tab", async () => {
    py(`
import os, cairn
src = os.path.join("${workDir}", "code-src")
os.makedirs(os.path.join(src, "pkg"), exist_ok=True)
open(os.path.join(src, "train.py"), "w").write("print('training')\\n")
open(os.path.join(src, "pkg", "model.py"), "w").write("LAYERS = 3\\n")
run = cairn.init(project="${PROJECT}", id="coder")
run.log_code(root=src)
run.finish()
`);
    const page = await open(browser, `/e2e/${PROJECT}/runs/coder`);
    const code = page.getByTestId("code-artifact");
    await expect.poll(() => code.textContent()).toMatch(/source-artifacts-e2e-.*:v0\s*\(2 files; in Files\)/);
    await screenshot(page, "code-overview");
    await page.getByTestId("code-in-files").click();
    await expect.poll(() => page.locator('[data-testid="code-table"] a[download]').allTextContents()).toEqual(["pkg/model.py", "train.py"]);
    await screenshot(page, "code-files");
    const link = page.locator('[data-testid="code-table"] a[download]', { hasText: "train.py" });
    const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
    expect(download.suggestedFilename()).toBe("train.py");
    expect(readFileSync((await download.path())!, "utf8")).toBe("print('training')\n");
    await expectNoErrors(page);
  });
});
