// What every e2e test needs: headless Chromium, the server's URL, and a Python that logs runs
// through the real client.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Locator, type Page } from "playwright-core";
import { expect, inject } from "vitest";

export const baseUrl = inject("baseUrl");
const python = inject("python");
export const workDir = inject("workDir");
const outputDir = inject("outputDir");
export const bin = inject("bin");

export async function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

/** A page that fails the test on any uncaught error or console error; `path` is on the test
 * server, or a whole URL. */
export async function open(browser: Browser, path: string, viewport = { width: 1400, height: 900 }): Promise<Page & { errors: string[] }> {
  const page = (await browser.newPage({ viewport })) as Page & { errors: string[] };
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(String(e)));
  page.on("console", (m) => {
    // The sandbox of logged HTML stopping its scripts, as it should: not cairn's error.
    if (m.type() === "error" && m.text().startsWith("Blocked script execution in 'about:srcdoc'")) return;
    if (m.type() === "error") page.errors.push(m.text());
  });
  await page.goto(path.startsWith("http") ? path : baseUrl + path);
  return page;
}

/** A project's runs table, once its first rows are drawn. */
export async function openTable(browser: Browser, project: string, query = ""): Promise<Page & { errors: string[] }> {
  const page = await open(browser, `/e2e/${project}/table${query}`);
  await page.waitForSelector('[data-testid="runs-table"] .body .row[data-run]');
  return page;
}

export async function screenshot(page: Page, name: string) {
  mkdirSync(outputDir, { recursive: true });
  await page.screenshot({ path: join(outputDir, `${name}.png`), fullPage: false });
}

function pythonEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { ...process.env, CAIRN_BASE_URL: baseUrl, CAIRN_SILENT: "true", CAIRN_DIR: workDir, CAIRN_ENTITY: "e2e", ...extra };
}

/** Runs Python code to the end; fails with its stderr. */
export function py(code: string, env: Record<string, string> = {}): string {
  const result = spawnSync(python, ["-c", code], { env: pythonEnv(env), encoding: "utf8", timeout: 300_000 });
  if (result.status !== 0) throw new Error(`python failed (${result.status ?? result.signal}):\n${result.stderr}`);
  return result.stdout;
}

/** Starts Python code in the background; its output is kept in `output`. */
export function pyBackground(code: string, env: Record<string, string> = {}): ChildProcess & { output: string } {
  const child = spawn(python, ["-u", "-c", code], { env: pythonEnv(env), stdio: ["ignore", "pipe", "pipe"] }) as ChildProcess & { output: string };
  child.output = "";
  child.stdout!.on("data", (d) => (child.output += d));
  child.stderr!.on("data", (d) => (child.output += d));
  return child;
}

export async function getJson<T = any>(path: string): Promise<T> {
  const response = await fetch(baseUrl + path);
  if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

/** The names in the runs table, top to bottom (rendered rows only). */
export async function tableNames(page: Page): Promise<string[]> {
  return page.$$eval('[data-testid="runs-table"] .body .row[data-run] [data-col="name"] a', (links) =>
    links
      .map((a) => ({ top: (a.closest(".row") as HTMLElement).offsetTop, name: a.getAttribute("title") ?? "" }))
      .sort((x, y) => x.top - y.top)
      .map((x) => x.name),
  );
}

export async function expectNoErrors(page: Page & { errors: string[] }) {
  expect(page.errors).toEqual([]);
}

export interface DrawnLine {
  name: string;
  line: (number | null)[];
  min: (number | null)[];
  max: (number | null)[];
}

/** What a chart drew: its x-axis and each line with its band (the chart exposes it for tests). */
export async function drawnData(page: Page, metric: string): Promise<{ x: number[]; lines: DrawnLine[] }> {
  return page
    .locator(`figure.chart[data-metric="${metric}"]`)
    .evaluate((f) => JSON.parse(JSON.stringify((f as HTMLElement & { cairnDrawn: unknown }).cairnDrawn)));
}

/** The point counts a chart showed while `live` ran, until it exited with 0. */
export async function pointCountsUntilExit(chart: Locator, live: ChildProcess & { output: string }): Promise<Set<number>> {
  const seen = new Set<number>();
  await expect
    .poll(
      async () => {
        seen.add(Number(await chart.getAttribute("data-points")));
        return live.exitCode;
      },
      { timeout: 60_000, interval: 200, message: `the live run did not finish:\n${live.output}` },
    )
    .toBe(0);
  return seen;
}
