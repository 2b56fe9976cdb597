import { describe, expect, it } from "vitest";
import { expectsColumn, parseExpr, printExpr, wordAt } from "../../src/lib/expr";
import { FilterError, compile } from "../../src/lib/filter";

describe("filter expressions", () => {
  it("reads the issue's example into the server's filter", () => {
    const model = parseExpr("val_loss <= 1 and (optimizer = sgd or lr = 0.01)");
    expect(compile(model)).toEqual({
      $and: [{ val_loss: { $lte: 1 } }, { $or: [{ optimizer: { $eq: "sgd" } }, { lr: { $eq: 0.01 } }] }],
    });
  });

  it("prints what it reads, and reads what it prints", () => {
    for (const text of [
      "val_loss <= 1 and (optimizer = sgd or lr = 0.01)",
      "state in [finished, crashed]",
      'notes = ""',
      'name ~ "^res.*"',
      "config.epochs not in [1, 2]",
      "`summary.a b` > 3 or tags = best",
      'group = "0.5" and summary.x = null',
      "a = 1 or (b = 2 and c = 3)",
    ]) {
      const model = parseExpr(text);
      expect(printExpr(model)).toBe(text);
      expect(compile(parseExpr(printExpr(model)))).toEqual(compile(model));
    }
  });

  it("keeps and before or, and strings quoted", () => {
    expect(compile(parseExpr("a = 1 or b = 2 and c = 3"))).toEqual({ $or: [{ a: { $eq: 1 } }, { $and: [{ b: { $eq: 2 } }, { c: { $eq: 3 } }] }] });
    expect(compile(parseExpr('x = "1"'))).toEqual({ x: { $eq: "1" } });
    expect(compile(parseExpr("x != null"))).toEqual({ x: { $ne: null } });
    expect(compile(parseExpr(""))).toBeNull();
    // Printed with the parentheses that the precedence implies.
    expect(printExpr(parseExpr("a = 1 or b = 2 and c = 3"))).toBe("a = 1 or (b = 2 and c = 3)");
  });

  it("names what is wrong and where", () => {
    const bad: [string, string][] = [
      ["val_loss <=", "value is missing"],
      ["val_loss 3", "operator"],
      ["(a = 1", '")" is expected'],
      ["a = 1 b = 2", '"and", "or"'],
      ['a = "open', "not closed"],
      ["a in 3", "list"],
    ];
    for (const [text, needle] of bad) {
      let message = "";
      try {
        parseExpr(text);
      } catch (e) {
        expect(e).toBeInstanceOf(FilterError);
        message = (e as Error).message;
      }
      expect(message, text).toContain(needle);
    }
  });

  it("knows where a column name is being typed", () => {
    const text = "val_lo";
    expect(wordAt(text, text.length)).toEqual({ start: 0, word: "val_lo" });
    expect(expectsColumn("", 0)).toBe(true);
    expect(expectsColumn("a = 1 and ", 10)).toBe(true);
    expect(expectsColumn("a = ", 4)).toBe(false);
    expect(expectsColumn("(", 1)).toBe(true);
  });
});
