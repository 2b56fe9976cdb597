import { describe, expect, it } from "vitest";
import {
  addPanel,
  addSection,
  arranged,
  autoLayout,
  axisOf,
  columnValue,
  movePanel,
  parseLayout,
  removePanel,
  removeSection,
  renameSection,
  updatePanel,
  withNewKeys,
  type LayoutKeys,
} from "../../src/lib/layout";

const keys: LayoutKeys = {
  metrics: [
    { name: "loss", stream: "history" },
    { name: "train/acc", stream: "history" },
    { name: "train/lr", stream: "history" },
    { name: "system.cpu", stream: "system" },
  ],
  media: ["samples"],
  histograms: ["weights"],
};

const names = (l: ReturnType<typeof autoLayout>) => l.sections.map((s) => `${s.name}:${s.panels.map((p) => p.id.split(":").pop()).join(",")}`);

describe("the automatic layout", () => {
  it("puts charts first, then named sections, media, histograms and system", () => {
    expect(names(autoLayout(keys))).toEqual(["Charts:loss", "train:train/acc,train/lr", "Media:samples", "Histograms:weights", "System:system.cpu"]);
  });

  it("gives keys logged after the user arranged it automatic panels in their sections", () => {
    const mine = arranged(renameSection(removePanel(autoLayout(keys), "auto:line:train/lr"), "auto:section:train", "Training"), keys);
    const later: LayoutKeys = { ...keys, metrics: [...keys.metrics, { name: "train/grad", stream: "history" }, { name: "eval/f1", stream: "history" }] };
    const merged = withNewKeys(mine, later);
    // The removed panel stays removed; the new train key goes to the section the user renamed
    // (found by its id); eval gets a section of its own.
    expect(names(merged)).toEqual(["Charts:loss", "Training:train/acc,train/grad", "Media:samples", "Histograms:weights", "System:system.cpu", "eval:eval/f1"]);
    expect(new Set(merged.sections.map((s) => s.id)).size).toBe(merged.sections.length);
    // The automatic section removed, and one of the user's named like it: the new key goes there.
    const own = arranged(addSection(removeSection(autoLayout(keys), "auto:section:train"), "train"), keys);
    const ownMerged = withNewKeys(own, later);
    const trainSections = ownMerged.sections.filter((s) => s.name === "train");
    expect(trainSections.length).toBe(1);
    expect(trainSections[0].id).not.toBe("auto:section:train");
    expect(trainSections[0].panels.map((p) => p.id)).toEqual(["auto:line:train/grad"]);
    // Nothing is added twice.
    expect(withNewKeys(merged, later)).toEqual(withNewKeys(withNewKeys(merged, later), later));
  });
});

describe("arranging", () => {
  it("moves a panel within a section and into another", () => {
    let l = autoLayout(keys);
    l = addPanel(l, "auto:section:Charts", { id: "mine", type: "scatter", x: "config.lr", y: "summary.loss", w: 2 });
    expect(names(l)[0]).toBe("Charts:loss,mine");
    // Dropped on the first panel: in its place, and the other way.
    expect(names(movePanel(l, "mine", "auto:section:Charts", 0))[0]).toBe("Charts:mine,loss");
    expect(names(movePanel(l, "auto:line:loss", "auto:section:Charts", 1))[0]).toBe("Charts:mine,loss");
    // Dropped after the end of its own section: it stays last.
    expect(names(movePanel(l, "auto:line:loss", "auto:section:Charts", 2))[0]).toBe("Charts:mine,loss");
    const moved = movePanel(l, "auto:line:loss", "auto:section:train", 1);
    expect(names(moved).slice(0, 2)).toEqual(["Charts:mine", "train:train/acc,loss,train/lr"]);
    // Unknown targets change nothing.
    expect(movePanel(l, "nope", "auto:section:train", 0)).toBe(l);
    expect(movePanel(l, "auto:line:loss", "nope", 0)).toBe(l);
  });

  it("resizes, edits, adds and removes sections", () => {
    let l = updatePanel(autoLayout(keys), "auto:line:loss", { w: 3, metrics: ["loss", "train/acc"], smoothing: 0.5 });
    const loss = l.sections[0].panels[0];
    expect(loss).toMatchObject({ w: 3, type: "line", metrics: ["loss", "train/acc"], smoothing: 0.5 });
    l = addSection(l, "  Mine ");
    expect(l.sections.at(-1)!.name).toBe("Mine");
    expect(renameSection(l, l.sections[0].id, "   ")).toBe(l);
    const gone = removeSection(l, "auto:section:Charts");
    expect(names(gone)[0]).toBe("train:train/acc,train/lr,loss");
  });

  it("reads a saved layout back, and names what is malformed", () => {
    const l = autoLayout(keys);
    expect(parseLayout(JSON.parse(JSON.stringify(l)))).toEqual(l);
    expect(() => parseLayout({ version: 2, sections: [] })).toThrow(/version 2/);
    expect(() => parseLayout({ version: 1, sections: [{ id: "s", name: "x", panels: [{ id: "p", type: "pie", w: 1 }] }] })).toThrow(/panel .*pie/);
    expect(() => parseLayout({ version: 1, sections: [{ id: "s", name: "x", panels: [{ id: "p", type: "line", w: 7 }] }] })).toThrow(/width 7/);
    expect(() => parseLayout({ version: 1, sections: [{ id: "s", name: "x", panels: [{ id: "p", type: "line", w: 1 }] }] })).toThrow(/lacks what it draws/);
    expect(() => parseLayout({ version: 1, sections: [{ id: "s", name: "x", panels: [{ id: "p", type: "parallel", columns: ["a", "a"], w: 1 }] }] })).toThrow(/lacks/);
  });
});

describe("runs-table columns on axes", () => {
  const run = { name: "r", state: "finished", tags: ["a", "b"], config: { lr: 0.1, opt: { name: "adam" } }, summary: { "train/loss": 0.5 } };
  it("reads config, summary and run fields", () => {
    expect(columnValue(run, "config.lr")).toBe(0.1);
    expect(columnValue(run, "config.opt.name")).toBe("adam");
    expect(columnValue(run, "summary.train/loss")).toBe(0.5);
    expect(columnValue(run, "state")).toBe("finished");
    expect(columnValue(run, "tags")).toBe("a, b");
    expect(columnValue(run, "config.missing")).toBeUndefined();
  });
  it("places numbers by value and anything else by category", () => {
    const n = axisOf([3, 1, null, 2]);
    expect([n.numeric, n.min, n.max, n.position(2)]).toEqual([true, 1, 3, 2]);
    const c = axisOf(["adam", "sgd", "adam", null]);
    expect([c.numeric, c.categories, c.position("sgd"), c.position(null)]).toEqual([false, ["adam", "sgd"], 1, null]);
  });
});
