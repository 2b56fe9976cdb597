// The project's Artifacts page, as a W&B user goes through it: the collections by type, a
// collection's versions, a version's files (downloaded through their links), what changed since
// the version before, and its lineage, whose nodes lead to the runs and versions around it.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectNoErrors, launch, open, py, screenshot } from "./helpers";

const PROJECT = "artifacts-page-e2e";
const run = (id: string) => `run:e2e/${PROJECT}/${id}`;
let browser: Browser;
/** Where Python wrote the files of v1. */
let v1Dir = "";
/** The checkpoint's file as its second version has it. */
let ckptPath = "";

beforeAll(async () => {
  // raw-data:v0 (from "ingest") → prepare → mnist v0, then v1: train.csv changed, notes.txt
  // removed, extra/README.md added; labels.json and images/ the same. train-model uses v1 and
  // logs model-weights:v0.
  const out = py(`
import os, tempfile, cairn
d = tempfile.mkdtemp()
def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)

ingest = cairn.init(project="${PROJECT}", id="ingest", name="ingest")
raw = cairn.Artifact("raw-data", type="dataset")
with raw.new_file("dump.jsonl") as f:
    f.write('{"x": 1}\\n' * 50)
ingest.log_artifact(raw)
ingest.finish()

v0, v1 = os.path.join(d, "v0"), os.path.join(d, "v1")
for root in (v0, v1):
    write(os.path.join(root, "labels.json"), '{"classes": 10}')
    for i in range(3):
        write(os.path.join(root, "images", f"img{i}.png"), "png" * (i + 1) * 40)
write(os.path.join(v0, "train.csv"), "x,y\\n" + "1,2\\n" * 100)
write(os.path.join(v0, "notes.txt"), "draft")
write(os.path.join(v1, "train.csv"), "x,y\\n" + "1,2\\n" * 100 + "3,4\\n" * 20)
write(os.path.join(d, "big.bin"), "b" * 5000)

producer = cairn.init(project="${PROJECT}", id="prepare", name="prepare-data")
producer.use_artifact("raw-data:latest")
first = cairn.Artifact("mnist", type="dataset", description="First cut", metadata={"rows": 100})
first.add_dir(v0)
producer.log_artifact(first, aliases=["first"])
second = cairn.Artifact("mnist", type="dataset", description="Cleaned, with 20 more rows", metadata={"rows": 120, "source": {"url": "https://example.com/mnist", "split": "train"}})
second.add_dir(v1)
with second.new_file("extra/README.md") as f:
    f.write("# extra\\n")
second.add_reference("file://" + os.path.join(d, "big.bin"), name="external/big.bin")
producer.log_artifact(second, aliases=["best"])
producer.finish()

consumer = cairn.init(project="${PROJECT}", id="train", name="train-model")
consumer.use_artifact("mnist:best")
model = cairn.Artifact("model-weights", type="model")
with model.new_file("weights.bin", mode="wb") as f:
    f.write(bytes(range(256)) * 8)
consumer.log_artifact(model, aliases=["prod"])
consumer.finish()

# A checkpoint of 12 MiB, then its next version changed in 16 places: sent in chunks, of which
# the server keeps only the new ones, and served back whole.
import random
rng = random.Random(7)
ckpt = bytearray(rng.randbytes(12 << 20))
path = os.path.join(d, "ckpt.bin")
saver = cairn.init(project="${PROJECT}-ckpt", id="saver", name="saver")
for version in range(2):
    with open(path, "wb") as f:
        f.write(ckpt)
    art = cairn.Artifact("checkpoint", type="model")
    art.add_file(path)
    saver.log_artifact(art)
    for i in range(16):
        at = (i * len(ckpt)) // 16 + 5000
        ckpt[at:at + 1000] = rng.randbytes(1000)
saver.finish()
print("DIR", v1)
print("CKPT", path)
`);
  v1Dir = /DIR (\S+)/.exec(out)![1];
  ckptPath = /CKPT (\S+)/.exec(out)![1];
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
});

const rows = (page: Page, testid: string, attr: string) =>
  page.$$eval(`[data-testid="${testid}"] [${attr}]`, (els, a) => els.map((e) => e.getAttribute(a)), attr);

describe("the Artifacts page", () => {
  it("shows collections, versions, files, the diff and the lineage of a version", async () => {
    // From the project's views.
    const page = await open(browser, `/e2e/${PROJECT}`);
    await page.locator(".head nav a", { hasText: "Artifacts" }).click();
    await page.waitForURL(/\/artifacts$/);
    const collections = page.getByTestId("artifact-collections");
    await collections.locator('[data-collection="mnist"]').waitFor();
    expect(await collections.locator("h3").allTextContents()).toEqual(["dataset", "model"]);
    expect(await rows(page, "artifact-collections", "data-collection")).toEqual(["mnist", "raw-data", "model-weights"]);
    expect(await collections.locator('[data-collection="mnist"]').textContent()).toContain("2");
    // With none chosen, the page lists them all.
    expect(await rows(page, "artifact-overview", "data-collection")).toEqual(["mnist", "raw-data", "model-weights"]);
    await screenshot(page, "artifacts-page-collections");

    // A collection: its versions, newest first.
    await collections.locator('[data-collection="mnist"] a').click();
    await page.waitForURL(/\/artifacts\/mnist$/);
    const versions = page.getByTestId("artifact-versions");
    await versions.locator('[data-version="v0"]').waitFor();
    expect(await rows(page, "artifact-versions", "data-version")).toEqual(["v1", "v0"]);
    const v1Row = versions.locator('[data-version="v1"]');
    const v1Text = (await v1Row.textContent())!;
    expect(v1Text).toContain("best");
    expect(v1Text).toContain("latest");
    // labels.json, 3 images, train.csv, extra/README.md, and the reference.
    expect(await v1Row.locator("td").nth(4).textContent()).toBe("7");
    expect(await versions.locator('[data-version="v0"]').textContent()).toContain("first");
    expect(await v1Row.getByTestId("creator").textContent()).toContain("prepare");

    // A version: description, metadata, files.
    await v1Row.getByRole("link", { name: "v1", exact: true }).click();
    await page.waitForURL(/\/artifacts\/mnist\/v1$/);
    await expect.poll(() => page.getByTestId("artifact-description").textContent()).toBe("Cleaned, with 20 more rows");
    const metadata = await page.getByTestId("artifact-metadata").locator("tr").allTextContents();
    // The server keeps metadata keys sorted.
    expect(metadata).toEqual(["rows120", "source.splittrain", "source.urlhttps://example.com/mnist"]);
    const files = page.getByTestId("artifact-files");
    await files.locator('[data-path="train.csv"]').waitFor();
    expect(await rows(page, "artifact-files", "data-path")).toEqual([
      "external",
      "external/big.bin",
      "extra",
      "extra/README.md",
      "images",
      "images/img0.png",
      "images/img1.png",
      "images/img2.png",
      "labels.json",
      "train.csv",
    ]);
    // A reference shows where it is, and is no link.
    const ref = files.locator('[data-path="external/big.bin"]');
    expect(await ref.textContent()).toContain(`file://`);
    expect(await ref.locator("a").count()).toBe(0);
    // Folders close and open.
    await files.locator('[data-path="images"] button').click();
    await expect.poll(() => files.locator('[data-path="images/img0.png"]').count()).toBe(0);
    await files.locator('[data-path="images"] button').click();
    await files.locator('[data-path="images/img0.png"]').waitFor();
    await screenshot(page, "artifacts-page-version");

    // A file downloads through its link, with the bytes Python wrote.
    const link = files.locator('[data-path="train.csv"] a');
    const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
    expect(await download.failure()).toBeNull();
    expect(download.suggestedFilename()).toBe("train.csv");
    expect(readFileSync((await download.path())!).equals(readFileSync(join(v1Dir, "train.csv")))).toBe(true);

    // What changed since v0.
    await page.getByTestId("compare-with").selectOption("v0");
    await page.waitForURL(/\/artifacts\/mnist\/v1\?compare=v0$/);
    const diff = page.getByTestId("artifact-diff");
    await diff.waitFor();
    const changes = async () =>
      page.$$eval('[data-testid="artifact-diff"] [data-change]', (els) => els.map((e) => `${e.getAttribute("data-change")} ${e.getAttribute("data-path")}`));
    expect(await changes()).toEqual(["added external/big.bin", "added extra/README.md", "removed notes.txt", "changed train.csv"]);
    expect(await page.getByTestId("diff-summary").textContent()).toContain("4 the same");
    await diff.scrollIntoViewIfNeeded();
    await screenshot(page, "artifacts-page-diff");

    // The lineage: raw-data → prepare → mnist:v1 → train-model → model-weights.
    const lineage = page.getByTestId("lineage");
    await lineage.waitFor();
    await expect.poll(() => rows(page, "lineage", "data-node").then((n) => n.sort())).toEqual(
      ["artifact:mnist:v1", "artifact:model-weights:v0", "artifact:raw-data:v0", run("prepare"), run("train")].sort(),
    );
    const box = async (id: string) => (await lineage.locator(`[data-node="${id}"]`).boundingBox())!;
    const [input, producer, version, consumer, output] = await Promise.all(
      ["artifact:raw-data:v0", run("prepare"), "artifact:mnist:v1", run("train"), "artifact:model-weights:v0"].map(box),
    );
    // Columns by hop, left to right.
    expect(input.x < producer.x && producer.x < version.x && version.x < consumer.x && consumer.x < output.x).toBe(true);
    expect(await lineage.locator(`[data-node="${run("train")}"]`).textContent()).toContain("train-model");
    expect(await lineage.locator('[data-edge]').count()).toBe(4);
    await lineage.scrollIntoViewIfNeeded();
    await screenshot(page, "artifacts-page-lineage");

    // A reload shows the same version and diff.
    await page.reload();
    await page.getByTestId("artifact-diff").waitFor();
    expect(await changes()).toHaveLength(4);
    expect(await page.getByTestId("compare-with").inputValue()).toBe("v0");

    // The nodes lead to the run that used it, and to what that run logged.
    await lineage.locator(`[data-node="${run("train")}"] a`).click();
    await page.waitForURL(/\/runs\/train\?tab=artifacts$/);
    await expect.poll(() => page.getByTestId("run-name").textContent()).toBe("train-model");
    await page.locator('[data-testid="artifacts-inputs"] [data-artifact="mnist:v1"]').waitFor();
    await page.goBack();
    await page.waitForURL(/\/artifacts\/mnist\/v1\?compare=v0$/);
    await lineage.locator('[data-node="artifact:model-weights:v0"] a').click();
    await page.waitForURL(/\/artifacts\/model-weights\/v0$/);
    await expect.poll(() => rows(page, "artifact-versions", "data-version")).toEqual(["v0"]);
    await page.getByTestId("artifact-files").locator('[data-path="weights.bin"]').waitFor();
    expect(await page.getByTestId("artifact-collections").locator('[data-collection="model-weights"] a').getAttribute("aria-current")).toBe("page");
    await expectNoErrors(page);
  });

  it("opens a version by alias, and says so for one that does not exist", async () => {
    const page = await open(browser, `/e2e/${PROJECT}/artifacts/mnist/first`);
    await page.getByTestId("artifact-files").locator('[data-path="notes.txt"]').waitFor();
    expect(await page.getByTestId("artifact-version").getAttribute("data-version")).toBe("v0");
    expect(await page.locator('[data-testid="artifact-versions"] tr.selected').getAttribute("data-version")).toBe("v0");
    await page.goto(`${page.url().replace(/\/first$/, "/v7")}`);
    await expect.poll(() => page.getByTestId("no-version").textContent()).toContain("v7");
    await expectNoErrors(page);
  });

  it("downloads the next version of a checkpoint, stored in chunks, byte for byte", async () => {
    const page = await open(browser, `/e2e/${PROJECT}-ckpt/artifacts/checkpoint/v1`);
    const link = page.getByTestId("artifact-files").locator('[data-path="ckpt.bin"] a');
    await link.waitFor();
    const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
    expect(await download.failure()).toBeNull();
    expect(download.suggestedFilename()).toBe("ckpt.bin");
    expect(readFileSync((await download.path())!).equals(readFileSync(ckptPath))).toBe(true);
    await screenshot(page, "artifacts-page-checkpoint");
    await expectNoErrors(page);
  });
});
