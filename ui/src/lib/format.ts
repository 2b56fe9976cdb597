// Formatting of values, times and names for display (always as text: nothing here builds HTML).

export function formatNumber(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "-∞";
  if (v === 0) return "0";
  const abs = Math.abs(v);
  if (abs >= 1e5 || abs < 1e-4) return v.toExponential(3).replace(/\.?0+e/, "e");
  return Number(v.toPrecision(5)).toString();
}

/** A cell's text for any JSON value. */
export function formatValue(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return formatNumber(v);
  if (v === "NaN" || v === "Infinity" || v === "-Infinity") return v === "NaN" ? "NaN" : v === "Infinity" ? "∞" : "-∞";
  if (typeof v === "string") return v;
  if (typeof v === "boolean") return v ? "true" : "false";
  const typed = typedValue(v);
  if (typed?._type === "histogram") {
    const counts = Array.isArray(typed.values) ? (typed.values as unknown[]) : [];
    const total = counts.reduce<number>((sum, c) => sum + (typeof c === "number" ? c : 0), 0);
    return `histogram (${counts.length} bins, ${formatNumber(total)} values)`;
  }
  if (typed?._type === "plot") return `${typeof typed.kind === "string" ? typed.kind.replace("_", " ") : "chart"} chart${typeof typed.title === "string" && typed.title ? `: ${typed.title}` : ""}`;
  if (typed?._type === "html") return `HTML (${typeof typed.html === "string" ? typed.html.length : 0} characters)`;
  if (typed?._type === "table") {
    const rows = Array.isArray(typed.data) ? typed.data.length : 0;
    const columns = Array.isArray(typed.columns) ? typed.columns.length : 0;
    return `table (${rows} rows × ${columns} columns)`;
  }
  return JSON.stringify(v);
}

/** A rich value the server sends as an object with a `_type` (a histogram), or null. */
export function typedValue(v: unknown): (Record<string, unknown> & { _type: string }) | null {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return null;
  const t = (v as Record<string, unknown>)._type;
  return typeof t === "string" ? (v as Record<string, unknown> & { _type: string }) : null;
}

/** A number from a JSON value (the server writes non-finite floats as strings). */
export function toNumber(v: unknown): number | null {
  if (typeof v === "number") return v;
  if (v === "NaN") return Number.NaN;
  if (v === "Infinity") return Number.POSITIVE_INFINITY;
  if (v === "-Infinity") return Number.NEGATIVE_INFINITY;
  return null;
}

/** The rich values of a summary (nested keys dotted), grouped by their `_type`, in the summary's order. */
export function richValues(summary: Record<string, unknown>): Record<string, [string, Record<string, unknown>][]> {
  const out: Record<string, [string, Record<string, unknown>][]> = {};
  for (const [key, v] of flattenObject(summary)) {
    const typed = typedValue(v);
    if (typed) (out[typed._type] ??= []).push([key, typed]);
  }
  return out;
}

const MEDIA_TYPES = new Set(["image-file", "audio-file", "video-file"]);

/** The keys whose last value (in any of these summaries) is media, or a list that starts with media; sorted. */
export function mediaKeysOf(summaries: Record<string, unknown>[]): string[] {
  const out = new Set<string>();
  for (const summary of summaries) {
    for (const [key, v] of flattenObject(summary)) {
      const first = Array.isArray(v) ? v[0] : v;
      const typed = typedValue(first);
      if (typed && MEDIA_TYPES.has(typed._type)) out.add(key);
    }
  }
  return [...out].sort();
}

/** Nested objects as dotted keys (`optimizer.lr`), in order; an empty object, an array or a rich value is one value. */
export function flattenObject(obj: Record<string, unknown>, prefix = ""): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    // A rich value (with a `_type`) is one value, not keys of its own.
    if (v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0 && !typedValue(v)) out.push(...flattenObject(v as Record<string, unknown>, key));
    else out.push([key, v]);
  }
  return out;
}

/** Bytes in binary units: `512 B`, `1.5 KiB`, `3.2 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const m = Math.floor(seconds / 60);
  const s = Math.floor(seconds % 60);
  if (m < 60) return `${m}m ${s}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function timeAgo(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "never";
  const seconds = (now - new Date(iso).getTime()) / 1000;
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

/** Cuts a long name at the end, in the middle, or at the start, keeping `max` characters. */
export function truncate(name: string, max: number, where: "end" | "middle" | "start"): string {
  const chars = Array.from(name);
  if (chars.length <= max) return name;
  if (max <= 1) return "…";
  if (where === "end") return chars.slice(0, max - 1).join("") + "…";
  if (where === "start") return "…" + chars.slice(chars.length - (max - 1)).join("");
  const head = Math.ceil((max - 1) / 2);
  const tail = max - 1 - head;
  return chars.slice(0, head).join("") + "…" + chars.slice(chars.length - tail).join("");
}

/** Exponential moving average, W&B style: values stay NaN/null where the input is. */
export function ema(values: (number | null)[], weight: number): (number | null)[] {
  if (weight <= 0) return values;
  const out: (number | null)[] = new Array(values.length);
  let last: number | null = null;
  let debias = 0;
  let acc = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || !Number.isFinite(v)) {
      out[i] = v;
      continue;
    }
    acc = acc * weight + (1 - weight) * v;
    debias = debias * weight + (1 - weight);
    last = acc / debias;
    out[i] = last;
  }
  return out;
}

/** A qualitative palette (hue, saturation, lightness on a light background): neighbours differ in
 * hue by far, so runs made one after another never look alike. */
const PALETTE: [number, number, number][] = [
  [212, 72, 45], // blue
  [27, 90, 50], // orange
  [140, 55, 36], // green
  [354, 72, 50], // red
  [268, 48, 54], // purple
  [184, 75, 34], // teal
  [322, 62, 54], // pink
  [45, 88, 40], // ochre
  [232, 55, 62], // periwinkle
  [96, 50, 38], // olive
  [12, 48, 40], // brown
  [296, 40, 40], // plum
];

const dark = () => typeof window !== "undefined" && window.matchMedia?.("(prefers-color-scheme: dark)").matches;

/** The `i`-th color of the palette, lighter on a dark background. */
export function paletteColor(i: number, darkMode = dark()): string {
  const n = PALETTE.length;
  const [h, s, l] = PALETTE[((Math.trunc(i) % n) + n) % n];
  return `hsl(${h} ${s}% ${darkMode ? Math.min(l + 18, 72) : l}%)`;
}

/** A symbol for a run's state, for lists too narrow for the table's badge (with the state as its title). */
export function stateSymbol(state: string): string {
  return ({ running: "▶", preempting: "◔", finished: "✓", failed: "✕", crashed: "⚠", killed: "■" } as Record<string, string>)[state] ?? "?";
}

/** The state a run shows: `preempting` while a running run has said it may be preempted
 * (`mark_preempting`), its stored state otherwise. */
export function shownState(run: { state: string; preempting_at?: string | null }): string {
  return run.state === "running" && run.preempting_at ? "preempting" : run.state;
}

/** A run's color: by its number in the project, so that it is stable and consecutive runs differ. */
export function runColor(run: { seq: number }): string {
  return paletteColor(run.seq - 1);
}

/** The section a chart belongs to: the key's prefix before "/", or "System" for system metrics. */
export function sectionOf(key: string, stream: string): string {
  if (stream === "system" || key.startsWith("system.") || key.startsWith("system/")) return "System";
  const slash = key.indexOf("/");
  return slash > 0 ? key.slice(0, slash) : "Charts";
}

/** A system metric's panel title, with its unit, and the factor from the stored unit to that one
 * (network traffic is stored in bytes and drawn in MB). Other keys keep their name. */
export function panelTitle(key: string): { title: string; scale: number } {
  const plain = (title: string, scale = 1) => ({ title, scale });
  let m: RegExpExecArray | null;
  switch (key) {
    case "system.cpu":
      return plain("Process CPU Utilization (%)");
    case "system.memory_percent":
      return plain("System Memory Utilization (%)");
    case "system.proc.memory.rssMB":
      return plain("Process Memory In Use (MB)");
    case "system.proc.memory.percent":
      return plain("Process Memory In Use (%)");
    case "system.proc.memory.availableMB":
      return plain("Process Memory Available (MB)");
    case "system.disk.in":
      return plain("Disk I/O Read (MB)");
    case "system.disk.out":
      return plain("Disk I/O Written (MB)");
    case "system.network.sent":
      return plain("Network Traffic Sent (MB)", 1e-6);
    case "system.network.recv":
      return plain("Network Traffic Received (MB)", 1e-6);
  }
  if ((m = /^system\.cpu\.(\d+)\.cpu_percent$/.exec(key))) return plain(`CPU Core ${m[1]} Utilization (%)`);
  if ((m = /^system\.disk\.(.+)\.usagePercent$/.exec(key))) return plain(`Disk Utilization ${m[1]} (%)`);
  if ((m = /^system\.disk\.(.+)\.usageGB$/.exec(key))) return plain(`Disk Utilization ${m[1]} (GB)`);
  if ((m = /^system\.gpu\.(\d+)\.(\w+)$/.exec(key))) {
    const gpu = `GPU ${m[1]}`;
    const titles: Record<string, [string, number]> = {
      gpu: [`${gpu} Utilization (%)`, 1],
      memory: [`${gpu} Time Spent Accessing Memory (%)`, 1],
      memoryAllocated: [`${gpu} Memory Allocated (%)`, 1],
      memoryAllocatedBytes: [`${gpu} Memory Allocated (GB)`, 1e-9],
      temp: [`${gpu} Temperature (°C)`, 1],
      powerWatts: [`${gpu} Power Usage (W)`, 1],
      powerPercent: [`${gpu} Power Usage (%)`, 1],
    };
    const t = titles[m[2]];
    if (t) return plain(t[0], t[1]);
  }
  return plain(key);
}

/** A value in nested objects by a dotted path; a key that itself holds dots is found first. */
export function getPath(obj: Record<string, unknown> | undefined, path: string): unknown {
  if (!obj) return undefined;
  if (path in obj) return obj[path];
  let current: unknown = obj;
  for (const part of path.split(".")) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}
