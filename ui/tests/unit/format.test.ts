import { describe, expect, it } from "vitest";
import { ema, flattenObject, richValues, formatBytes, formatDuration, formatNumber, formatValue, paletteColor, runColor, sectionOf, shownState, stateSymbol, toNumber, truncate } from "../../src/lib/format";

describe("truncate", () => {
  const name = "resnet50-imagenet-lr0.1-bs256";
  it("cuts at the end, in the middle or at the start", () => {
    expect(truncate(name, 10, "end")).toBe("resnet50-…");
    expect(truncate(name, 10, "start")).toBe("…0.1-bs256");
    expect(truncate(name, 10, "middle")).toBe("resne…s256");
    for (const where of ["end", "middle", "start"] as const) expect(Array.from(truncate(name, 10, where))).toHaveLength(10);
  });
  it("leaves short names alone and counts characters, not UTF-16 units", () => {
    expect(truncate("short", 10, "middle")).toBe("short");
    expect(truncate("🚀🚀🚀🚀🚀", 3, "end")).toBe("🚀🚀…");
  });
});

describe("ema", () => {
  it("is the identity at weight 0", () => {
    expect(ema([1, 2, 3], 0)).toEqual([1, 2, 3]);
  });
  it("is debiased, so it starts at the first value", () => {
    const out = ema([10, 10, 10], 0.9) as number[];
    for (const v of out) expect(v).toBeCloseTo(10);
  });
  it("smooths a step and skips gaps", () => {
    const out = ema([0, null, 10, 10], 0.5);
    expect(out[0]).toBe(0);
    expect(out[1]).toBeNull();
    expect(out[2]).toBeCloseTo(10 * 0.5 / 0.75);
    expect(out[3]! > out[2]!).toBe(true);
  });
});

describe("values", () => {
  it("formats numbers readably", () => {
    expect(formatNumber(0)).toBe("0");
    expect(formatNumber(0.123456)).toBe("0.12346");
    expect(formatNumber(1234567)).toBe("1.235e+6");
    expect(formatNumber(Number.NaN)).toBe("NaN");
    expect(formatNumber(-Infinity)).toBe("-∞");
  });
  it("reads the server's non-finite strings", () => {
    expect(toNumber("NaN")).toBeNaN();
    expect(toNumber("Infinity")).toBe(Infinity);
    expect(toNumber("-Infinity")).toBe(-Infinity);
    expect(toNumber("1")).toBeNull();
    expect(formatValue("Infinity")).toBe("∞");
    expect(formatValue({ a: [1] })).toBe('{"a":[1]}');
    expect(formatValue("<b>x</b>")).toBe("<b>x</b>");
    expect(formatValue({ _type: "histogram", bins: [0, 1, 2], values: [3, 4.5] })).toBe("histogram (2 bins, 7.5 values)");
    expect(formatValue({ _type: "table", columns: ["a", "b"], data: [[1, 2]] })).toBe("table (1 rows × 2 columns)");
  });
  it("formats durations", () => {
    expect(formatDuration(5.25)).toBe("5.3s");
    expect(formatDuration(125)).toBe("2m 5s");
    expect(formatDuration(3 * 3600 + 60)).toBe("3h 1m");
    expect(formatDuration(50 * 3600)).toBe("2d 2h");
  });
  it("gives each run a stable color", () => {
    expect(runColor({ seq: 3 })).toBe(runColor({ seq: 3 }));
    // Neighbours never share a color, in light or dark mode; dark mode is lighter.
    for (let i = 0; i < 30; i++) {
      expect(paletteColor(i, false)).not.toBe(paletteColor(i + 1, false));
      expect(paletteColor(i, true)).not.toBe(paletteColor(i + 1, true));
      expect(paletteColor(i, true)).not.toBe(paletteColor(i, false));
    }
    const hue = (c: string) => Number(/hsl\((\d+)/.exec(c)![1]);
    for (let i = 0; i < 12; i++) {
      const d = Math.abs(hue(paletteColor(i, false)) - hue(paletteColor(i + 1, false)));
      expect(Math.min(d, 360 - d)).toBeGreaterThan(30);
    }
  });
  it("puts charts in sections by prefix", () => {
    expect(sectionOf("train/loss", "history")).toBe("train");
    expect(sectionOf("loss", "history")).toBe("Charts");
    expect(sectionOf("system.cpu", "system")).toBe("System");
  });
});

describe("panelTitle", () => {
  it("names system panels with their units", async () => {
    const { panelTitle } = await import("../../src/lib/format");
    expect(panelTitle("system.cpu").title).toBe("Process CPU Utilization (%)");
    expect(panelTitle("system.proc.memory.rssMB").title).toBe("Process Memory In Use (MB)");
    expect(panelTitle("system.network.sent")).toEqual({ title: "Network Traffic Sent (MB)", scale: 1e-6 });
    expect(panelTitle("system.gpu.1.temp").title).toBe("GPU 1 Temperature (°C)");
    expect(panelTitle("system.disk./.usagePercent").title).toBe("Disk Utilization / (%)");
    expect(panelTitle("train/loss")).toEqual({ title: "train/loss", scale: 1 });
  });
});

describe("fitText", () => {
  it("cuts once, at the place asked, to the longest text that fits", async () => {
    const { fitText } = await import("../../src/lib/fit");
    const fits = (n: number) => (s: string) => Array.from(s).length <= n;
    expect(fitText("short", "middle", fits(10))).toBe("short");
    const name = "a-very-long-run-name-with-a-seed-1234";
    for (const where of ["end", "middle", "start"] as const) {
      const cut = fitText(name, where, fits(12));
      expect(Array.from(cut).length).toBe(12);
      expect(cut.split("…").length).toBe(2);
    }
    expect(fitText(name, "end", fits(12)).startsWith("a-very-long")).toBe(true);
    expect(fitText(name, "start", fits(12)).endsWith("seed-1234")).toBe(true);
  });
});

describe("formatBytes", () => {
  it("uses binary units with one decimal below ten", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(20 * 1024 * 1024)).toBe("20 MiB");
    expect(formatBytes(3.2 * 1024 ** 3)).toBe("3.2 GiB");
  });
});

describe("flattenObject", () => {
  it("groups a summary's rich values by kind", () => {
    const h = { _type: "histogram", bins: [0, 1], values: [2] };
    const t = { _type: "table", columns: [], data: [] };
    expect(richValues({ a: 1, w: h, nested: { t, h } })).toEqual({ histogram: [["w", h], ["nested.h", h]], table: [["nested.t", t]] });
  });
  it("keeps a rich value whole", () => {
    const h = { _type: "histogram", bins: [0, 1], values: [2] };
    expect(flattenObject({ w: h, opt: { lr: 1 } })).toEqual([
      ["w", h],
      ["opt.lr", 1],
    ]);
  });

  it("writes nested keys with dots, keeping arrays, empty objects and nulls as values", () => {
    expect(flattenObject({ a: 1, opt: { lr: 0.1, betas: [0.9, 0.99], sched: { kind: "cos" } }, empty: {}, none: null })).toEqual([
      ["a", 1],
      ["opt.lr", 0.1],
      ["opt.betas", [0.9, 0.99]],
      ["opt.sched.kind", "cos"],
      ["empty", {}],
      ["none", null],
    ]);
  });
});

describe("shownState", () => {
  it("shows a running run that said it may be preempted as preempting, and nothing else", () => {
    expect(shownState({ state: "running", preempting_at: "2026-12-02T05:00:00Z" })).toBe("preempting");
    expect(shownState({ state: "running", preempting_at: null })).toBe("running");
    expect(shownState({ state: "running" })).toBe("running");
    // After its longer wait it crashed: the stored state, not preempting.
    expect(shownState({ state: "crashed", preempting_at: "2026-12-02T05:00:00Z" })).toBe("crashed");
    expect(stateSymbol(shownState({ state: "running", preempting_at: "2026-12-02T05:00:00Z" }))).not.toBe("?");
  });
});
