// A run logged by the official wandb client, unchanged, looks in cairn's UI as one logged with
// cairn: its charts, its images, its table (a file the client uploads), and the artifact it logged.
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseUrl, expectNoErrors, launch, open, py, screenshot, workDir } from "./helpers";

const PROJECT = "wandb-e2e";
let browser: Browser;
let runId = "";

beforeAll(async () => {
  const out = py(
    `
import numpy as np, os, wandb
run = wandb.init(entity="e2e", project="${PROJECT}", name="from-wandb", config={"lr": 0.01})
for step in range(30):
    run.log({"loss": 1 / (step + 1), "acc": step / 30})
pixels = np.zeros((32, 32, 3), dtype=np.uint8)
pixels[:, :16, 0] = 255
table = wandb.Table(columns=["id", "label", "score"], data=[[i, f"class {i % 3}", round(1 - i / 20, 2)] for i in range(12)])
run.log({"samples": wandb.Image(pixels, caption="half red"), "predictions": table})
folder = os.path.join(os.environ["WANDB_DIR"], "wb-art")
os.makedirs(folder, exist_ok=True)
open(os.path.join(folder, "weights.txt"), "w").write("w" * 100)
art = wandb.Artifact("weights", type="model")
art.add_dir(folder)
run.log_artifact(art)
run.finish()
print("RUN", run.id)
`,
    {
      WANDB_BASE_URL: baseUrl,
      WANDB_API_KEY: "local-" + "k".repeat(40),
      WANDB_SILENT: "true",
      WANDB_DIR: workDir,
      WANDB_CONFIG_DIR: `${workDir}/wandb-config`,
      WANDB_DISABLE_GIT: "true",
      HOME: workDir,
    },
  );
  runId = out.split("RUN ")[1].trim();
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

describe("a run from the official wandb client", () => {
  it("shows its charts, its image and its table on the run's workspace", async () => {
    const page = await open(browser, `/e2e/${PROJECT}/runs/${runId}?tab=workspace`);
    const table = page.getByTestId("tables").locator('[data-testid="table-panel"][data-metric="predictions"]');
    await expect.poll(() => table.getAttribute("data-rows"), { timeout: 15_000 }).toBe("12");
    await expect.poll(() => table.locator("th").allTextContents()).toEqual(expect.arrayContaining([expect.stringContaining("label")]));
    expect(await table.locator("td").allTextContents()).toContain("class 2");
    await expect.poll(() => page.locator('[data-testid="media-panel"] img').count()).toBeGreaterThan(0);
    await expect.poll(() => page.locator("canvas").count()).toBeGreaterThan(1);
    // The table is one value: its column and row counts are not charts of their own.
    expect(await page.getByText("predictions.ncols").count()).toBe(0);
    await screenshot(page, "wandb-run-workspace");
    expectNoErrors(page);
    await page.close();
  });

  it("lists the artifact it logged, with its file", async () => {
    const page = await open(browser, `/e2e/${PROJECT}/artifacts`);
    await expect.poll(() => page.getByText("weights").count(), { timeout: 15_000 }).toBeGreaterThan(0);
    await screenshot(page, "wandb-artifacts");
    expectNoErrors(page);
    await page.close();
  });
});
