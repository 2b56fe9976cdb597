// Names cut once, where the user asked (end, middle or start), to the width there is: the text is
// measured with the element's font, so CSS never cuts it a second time.
import { truncate } from "./format";

let context: CanvasRenderingContext2D | null = null;

function measure(text: string, font: string): number {
  context ??= document.createElement("canvas").getContext("2d");
  if (!context) return text.length * 7;
  context.font = font;
  return context.measureText(text).width;
}

/** The longest cut of `text` (at `where`) that `fits` accepts. */
export function fitText(text: string, where: "end" | "middle" | "start", fits: (s: string) => boolean): string {
  if (fits(text)) return text;
  let lo = 1;
  let hi = Array.from(text).length - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(truncate(text, mid, where))) lo = mid;
    else hi = mid - 1;
  }
  return truncate(text, lo, where);
}

export interface FitParams {
  text: string;
  where: "end" | "middle" | "start";
}

/** A Svelte action: shows `text` cut to the element's width; the whole name is its title. */
export function fit(node: HTMLElement, params: FitParams) {
  let current = params;
  const update = () => {
    const width = node.clientWidth;
    node.title = current.text;
    if (width <= 0) {
      node.textContent = current.text;
      return;
    }
    const font = getComputedStyle(node).font;
    node.textContent = fitText(current.text, current.where, (s) => measure(s, font) <= width);
  };
  const observer = new ResizeObserver(update);
  observer.observe(node);
  update();
  return {
    update(next: FitParams) {
      current = next;
      update();
    },
    destroy() {
      observer.disconnect();
    },
  };
}
