// The media workspace benchmark: from navigation to the project workspace drawn, with 20 runs ×
// 200 steps × 3 image keys and 5 histogram keys (written by bench/media_workspace.py), in headless
// Chromium against a running server.
//
//   node ui/bench/media.mjs http://127.0.0.1:18766 [repetitions]
//
// "Drawn": every media panel on screen has its rows' images decoded (those in its visible rows),
// and every histogram panel on screen its heatmaps. Also counted: the image files fetched, to
// show that only what is on screen is. Each repetition uses a fresh browser context (no cache).
import { chromium } from "playwright-core";

const base = process.argv[2] ?? "http://127.0.0.1:18766";
const reps = Number(process.argv[3] ?? 5);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});

const drawn = () => {
  const onScreen = (el) => {
    const r = el.getBoundingClientRect();
    return r.bottom > 0 && r.top < window.innerHeight && r.width > 0;
  };
  const media = [...document.querySelectorAll('[data-testid="media-panel"]')].filter(onScreen);
  const hist = [...document.querySelectorAll('[data-testid="histogram-runs"]')].filter(onScreen);
  if (media.length === 0) return false;
  for (const panel of media) {
    if (Number(panel.dataset.loaded || 0) < 1) return false;
    const rows = panel.querySelector(".rows");
    const box = rows.getBoundingClientRect();
    for (const img of panel.querySelectorAll("img")) {
      const r = img.getBoundingClientRect();
      const visible = r.bottom > Math.max(0, box.top) && r.top < Math.min(window.innerHeight, box.bottom);
      if (visible && !(img.complete && img.naturalWidth > 0)) return false;
    }
  }
  for (const panel of hist) {
    const heatmaps = [...panel.querySelectorAll('[data-testid="histogram-panel"]')];
    if (heatmaps.length === 0 || heatmaps.some((h) => onScreen(h) && Number(h.dataset.buckets || 0) === 0)) return false;
  }
  return performance.now();
};

async function measure(viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  await page.goto(`${base}/bench/media-bench`, { waitUntil: "commit" });
  const handle = await page.waitForFunction(drawn, null, { polling: "raf", timeout: 60_000 });
  const ms = await handle.jsonValue();
  const detail = await page.evaluate(() => {
    const images = performance.getEntriesByType("resource").filter((e) => e.name.includes("/files/media/"));
    return {
      mediaPanels: document.querySelectorAll('[data-testid="media-panel"]').length,
      histogramPanels: document.querySelectorAll('[data-testid="histogram-runs"]').length,
      imagesFetched: images.length,
      imageBytes: images.reduce((n, e) => n + (e.transferSize || e.encodedBodySize || 0), 0),
    };
  });
  await context.close();
  return { ms, ...detail };
}

console.log(`Media workspace benchmark against ${base} (20 runs x 200 steps x 3 image keys, 5 histogram keys)`);
for (const [label, viewport] of [
  ["first screen (1400x900)", { width: 1400, height: 900 }],
  ["every panel on screen (1400x4000)", { width: 1400, height: 4000 }],
]) {
  const results = [];
  for (let i = 0; i < reps; i++) results.push(await measure(viewport));
  const ms = results.map((r) => r.ms).sort((a, b) => a - b);
  const last = results[results.length - 1];
  console.log(
    `${label}: median ${ms[Math.floor(ms.length / 2)].toFixed(0)} ms, worst ${ms[ms.length - 1].toFixed(0)} ms ` +
      `(${last.mediaPanels} media + ${last.histogramPanels} histogram panels; ${last.imagesFetched} of 12,000 images fetched, ${(last.imageBytes / 1024).toFixed(0)} KiB; ${reps} runs)`,
  );
}
await browser.close();
