// UI render benchmark: from navigation to the charts (or the table rows) being drawn, in headless
// Chromium, against a running server that holds the project written by
// `cairn-bench ui-data DIR` (1,000 runs × 20 metrics × 10k steps, and 10,000 light runs).
//
//   node ui/bench/render.mjs http://127.0.0.1:8080 [repetitions]
//
// Prints the median and the worst of the repetitions; each uses a fresh browser context (no cache).
import { chromium } from "playwright-core";

const base = process.argv[2] ?? "http://127.0.0.1:8080";
const reps = Number(process.argv[3] ?? 5);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});

/** Milliseconds from navigation start until `ready()` holds in the page. */
async function measure(path, viewport, ready, arg) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  await page.goto(base + path, { waitUntil: "commit" });
  const handle = await page.waitForFunction(ready, arg, { polling: "raf", timeout: 60_000 });
  const ms = await handle.jsonValue();
  const details = await page.evaluate(() => ({
    charts: document.querySelectorAll("figure.chart canvas").length,
    points: [...document.querySelectorAll("figure.chart")].reduce((n, f) => n + Number(f.dataset.points || 0), 0),
    rows: document.querySelectorAll(".body .row[data-run]").length,
  }));
  await context.close();
  return { ms, ...details };
}

// Every chart on screen has its canvas and its points (10 runs × 10k steps each, in buckets).
const chartsDrawn = (expected) => {
  const figures = [...document.querySelectorAll("figure.chart")];
  if (figures.length < 20) return false;
  const onScreen = figures.filter((f) => f.getBoundingClientRect().top < window.innerHeight);
  const drawn = onScreen.filter((f) => f.querySelector("canvas") && Number(f.dataset.points) >= expected);
  return drawn.length === onScreen.length && drawn.length > 0 ? performance.now() : false;
};
const tableDrawn = (total) => {
  const count = document.querySelector('[data-testid="run-count"]');
  const rows = document.querySelectorAll(".body .row[data-run]").length;
  return count && count.textContent === `${total} runs` && rows >= 20 ? performance.now() : false;
};

function report(label, results) {
  const ms = results.map((r) => r.ms).sort((a, b) => a - b);
  const last = results[results.length - 1];
  const detail = last.charts ? `${last.charts} charts, ${last.points.toLocaleString()} points` : `${last.rows} rows rendered`;
  console.log(`${label}: median ${ms[Math.floor(ms.length / 2)].toFixed(0)} ms, worst ${ms[ms.length - 1].toFixed(0)} ms (${detail}; ${reps} runs)`);
}

const cases = [
  ["Workspace, first screen (1400×900)", "/bench/ui-bench", { width: 1400, height: 900 }, chartsDrawn, 100_000],
  ["Workspace, all 20 charts (1400×6000)", "/bench/ui-bench", { width: 1400, height: 6000 }, chartsDrawn, 100_000],
  ["Runs table, 1,000 runs with 5 config + 20 summary columns", "/bench/ui-bench/table", { width: 1400, height: 900 }, tableDrawn, 1000],
  ["Runs table, 10,000 runs", "/bench/ui-10k/table", { width: 1400, height: 900 }, tableDrawn, 10000],
];
console.log(`UI render benchmark against ${base}`);
for (const [label, path, viewport, ready, arg] of cases) {
  const results = [];
  for (let i = 0; i < reps; i++) results.push(await measure(path, viewport, ready, arg));
  report(label, results);
}

// Scrolling 10,000 runs: frame times while the table scrolls, by wheel-sized steps (120 px per
// frame, 7,200 px/s) through the first 3,000 rows, and by page-sized jumps (900 px per frame)
// from top to bottom. Each frame's time runs from one animation frame to the next.
for (const [label, step, maxRows] of [["wheel steps of 120 px", 120, 3000], ["jumps of 900 px", 900, 10000]]) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  await page.goto(base + "/bench/ui-10k/table");
  await page.waitForFunction(tableDrawn, 10000, { polling: "raf", timeout: 60_000 });
  const result = await page.evaluate(
    async ([step, maxRows]) => {
      const scroller = document.querySelector('[data-testid="runs-table"]');
      const limit = Math.min(scroller.scrollHeight - scroller.clientHeight, maxRows * 30);
      const frames = [];
      let last = performance.now();
      const start = last;
      let placeholders = 0;
      while (scroller.scrollTop < limit - 1) {
        scroller.scrollTop = Math.min(limit, scroller.scrollTop + step);
        await new Promise((r) => requestAnimationFrame(r));
        const now = performance.now();
        frames.push(now - last);
        last = now;
        if (document.querySelector(".row.placeholder")) placeholders += 1;
      }
      frames.sort((a, b) => a - b);
      return {
        frames: frames.length,
        median: frames[Math.floor(frames.length / 2)],
        p95: frames[Math.floor(frames.length * 0.95)],
        total: performance.now() - start,
        placeholders,
        dom: document.querySelectorAll(".body .row").length,
      };
    },
    [step, maxRows],
  );
  console.log(
    `Scrolling 10,000 runs, ${label}: ${result.frames} frames, median ${result.median.toFixed(1)} ms, p95 ${result.p95.toFixed(1)} ms per frame; ` +
      `${result.placeholders} frames showed rows still loading; ${result.dom} row elements in the DOM`,
  );
  await context.close();
}
await browser.close();
