// Two cairn servers on one PostgreSQL database and one S3 bucket, as behind a load balancer: a
// run logged through the first is live in a browser on the second, drawn as a reload draws it,
// and a file saved through the first downloads from the second.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bin, drawnData, expectNoErrors, launch, open, pointCountsUntilExit, py, pyBackground, screenshot } from "./helpers";
import { startCairn, stopCairn } from "./server";

const PROJECT = "servers-e2e";
const store = process.env.CAIRN_TEST_POSTGRES_UI;
const s3 = process.env.CAIRN_TEST_S3_ENDPOINT;
if (process.env.CI && (!store || !s3)) throw new Error("CI must run the two-server case: run the suite with scripts/test.sh");

let browser: Browser;
const servers: ChildProcess[] = [];
let one = "";
let two = "";
let dataDir = "";

beforeAll(async () => {
  if (!store || !s3) return;
  browser = await launch();
  dataDir = mkdtempSync(join(tmpdir(), "cairn-servers-"));
  const env = { AWS_ENDPOINT_URL: s3, AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test", AWS_REGION: "us-east-1" };
  const blobs = `s3://${process.env.CAIRN_TEST_S3_BUCKET ?? "cairn-test"}/ui-${process.pid}-${Date.now()}`;
  for (const name of ["one", "two"]) {
    const started = await startCairn(bin, ["--data-dir", join(dataDir, name), "--default-entity", "e2e", "--store", store, "--blobs", blobs], env);
    servers.push(started.child);
    if (name === "one") one = started.url;
    else two = started.url;
  }
});

afterAll(async () => {
  await browser?.close();
  for (const server of servers) await stopCairn(server);
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe.skipIf(!store || !s3)("two servers on PostgreSQL and S3", () => {
  it("shows a run logged through one server live in a browser on the other", async () => {
    py(
      `
import math, cairn
for r in range(3):
    run = cairn.init(project="${PROJECT}", name=f"done-{r}")
    for i in range(1000):
        run.log({"loss": math.exp(-i / 300) + 0.05 * r})
    run.finish()
`,
      { CAIRN_BASE_URL: one },
    );
    const page = await open(browser, `${two}/e2e/${PROJECT}?panels=%5Eloss%24`);
    const chart = page.locator('figure.chart[data-metric="loss"]');
    await expect.poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 20_000 }).toBe(3000);

    const live = pyBackground(
      `
import math, time, cairn
run = cairn.init(project="${PROJECT}", name="live")
for i in range(400):
    run.log({"loss": math.exp(-i / 300) + 0.3})
    if i % 20 == 19:
        time.sleep(0.25)
run.finish()
`,
      { CAIRN_BASE_URL: one },
    );
    // Server two's page follows the run through several updates, with no reload.
    const seen = await pointCountsUntilExit(chart, live);
    expect([...seen].filter((n) => n > 3000 && n < 3400).length).toBeGreaterThan(2);
    await expect.poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 20_000 }).toBe(3400);
    await screenshot(page, "servers-live-on-two");
    const liveDrawn = await drawnData(page, "loss");
    await page.reload();
    await expect.poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 20_000 }).toBe(3400);
    expect(await drawnData(page, "loss")).toEqual(liveDrawn);
    await expectNoErrors(page);
  });

  it("downloads from one server a file saved through the other", async () => {
    const out = py(
      `
import os, cairn, tempfile
d = tempfile.mkdtemp()
with open(os.path.join(d, "weights.bin"), "wb") as f:
    f.write(os.urandom(3_000_000))
run = cairn.init(project="${PROJECT}", name="with-a-file")
run.save(os.path.join(d, "weights.bin"), base_path=d, policy="now")
run.finish()
print("ID", run.id, d)
`,
      { CAIRN_BASE_URL: one },
    );
    const [, id, dir] = /ID (\S+) (\S+)/.exec(out)!;
    const page = await open(browser, `${two}/e2e/${PROJECT}/${id}?tab=files`);
    const link = page.locator('table.files a:text-is("weights.bin")');
    await link.waitFor();
    const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
    expect(await download.failure()).toBeNull();
    expect(readFileSync((await download.path())!).equals(readFileSync(join(dir, "weights.bin")))).toBe(true);
    await screenshot(page, "servers-download-on-two");
    await expectNoErrors(page);
  });
});
