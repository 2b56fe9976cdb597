import { countConditions } from "../../src/lib/filter";
import { describe, expect, it } from "vitest";
import { FilterError, and, compile, condition, decompile, group, parseValue, suggest } from "../../src/lib/filter";

describe("parseValue", () => {
  it("reads each value type", () => {
    expect(parseValue("42", "integer")).toBe(42);
    expect(parseValue("-3", "integer")).toBe(-3);
    expect(parseValue("0.5", "float")).toBe(0.5);
    expect(parseValue("1e-3", "float")).toBe(0.001);
    expect(parseValue(" x ", "string")).toBe(" x ");
    expect(parseValue("anything", "null")).toBeNull();
    expect(parseValue("2024-11-05T11:10:06Z", "timestamp")).toBe("2024-11-05T11:10:06.000Z");
  });

  it("guesses in auto mode: number, null, boolean, else string", () => {
    expect(parseValue("0.01", "auto")).toBe(0.01);
    expect(parseValue("null", "auto")).toBeNull();
    expect(parseValue("true", "auto")).toBe(true);
    expect(parseValue("adam", "auto")).toBe("adam");
    expect(parseValue("", "auto")).toBe("");
  });

  it("names the column and the bad text", () => {
    expect(() => parseValue("1.5", "integer", "config.epochs")).toThrow(/config\.epochs: "1\.5" is not an integer/);
    expect(() => parseValue("abc", "float", "summary.loss")).toThrow(FilterError);
    expect(() => parseValue("", "float", "summary.loss")).toThrow(/not a number/);
    expect(() => parseValue("yesterday", "timestamp", "created_at")).toThrow(/created_at: "yesterday" is not a date/);
  });
});

describe("compile", () => {
  it("maps every operator to its Mongo form", () => {
    const cases: [Parameters<typeof condition>[1], string][] = [
      ["=", "$eq"],
      ["≠", "$ne"],
      ["<", "$lt"],
      [">", "$gt"],
      ["≤", "$lte"],
      ["≥", "$gte"],
    ];
    for (const [op, mongo] of cases) {
      expect(compile(condition("config.lr", op, "0.1", "float"))).toEqual({ "config.lr": { [mongo]: 0.1 } });
    }
    expect(compile(condition("state", "IN", "finished, failed", "string"))).toEqual({ state: { $in: ["finished", "failed"] } });
    expect(compile(condition("config.bs", "NOT IN", "16,32", "integer"))).toEqual({ "config.bs": { $nin: [16, 32] } });
    expect(compile(condition("name", "regex", "^run-[0-9]+$", "string"))).toEqual({ name: { $regex: "^run-[0-9]+$" } });
    expect(compile(condition("group", "=", "", "null"))).toEqual({ group: { $eq: null } });
  });

  it("joins conditions with and/or and nests groups as parentheses", () => {
    const tree = group("and", [
      condition("config.lr", ">", "0.001", "float"),
      group("or", [condition("state", "=", "finished", "string"), condition("tags", "IN", "best", "string")]),
    ]);
    expect(compile(tree)).toEqual({
      $and: [{ "config.lr": { $gt: 0.001 } }, { $or: [{ state: { $eq: "finished" } }, { tags: { $in: ["best"] } }] }],
    });
  });

  it("leaves out empty groups and unwraps single conditions", () => {
    expect(compile(group())).toBeNull();
    expect(compile(group("or", [group("and", [])]))).toBeNull();
    expect(compile(group("or", [condition("state", "=", "running", "string")]))).toEqual({ state: { $eq: "running" } });
  });

  it("rejects a condition without a column or with a bad regex", () => {
    expect(() => compile(group("and", [condition("", "=", "1")]))).toThrow(/no column/);
    expect(() => compile(condition("name", "regex", "(unclosed"))).toThrow(/name: "\(unclosed" is not a valid regular expression/);
  });
});

describe("decompile", () => {
  it("round-trips what compile writes", () => {
    const tree = group("or", [
      condition("config.lr", "≥", "0.01", "float"),
      group("and", [condition("config.epochs", "<", "10", "integer"), condition("name", "regex", "^a", "string")]),
      condition("state", "NOT IN", "crashed, killed", "string"),
      condition("group", "=", "null", "null"),
    ]);
    const json = compile(tree);
    expect(compile(decompile(json))).toEqual(json);
    const back = decompile(json);
    expect(back.join).toBe("or");
    expect(back.items).toHaveLength(4);
    expect(back.items[1]).toMatchObject({ kind: "group", join: "and" });
  });

  it("reads the shorthand {field: value} as equality", () => {
    expect(decompile({ state: "finished" })).toEqual(group("and", [condition("state", "=", "finished", "string")]));
  });

  it("gives an empty group for no filter, and names an unknown operator", () => {
    expect(decompile(null)).toEqual(group());
    expect(() => decompile({ x: { $near: 1 } })).toThrow(/unknown operator \$near/);
  });
});

describe("and / suggest", () => {
  it("combines filters, leaving out empty ones", () => {
    expect(and(null, {})).toBeNull();
    expect(and({ a: 1 }, null)).toEqual({ a: 1 });
    expect(and({ a: 1 }, { b: 2 })).toEqual({ $and: [{ a: 1 }, { b: 2 }] });
  });

  it("autocompletes column names, prefix matches first", () => {
    const columns = ["state", "summary.loss", "summary.acc", "config.loss_fn", "name"];
    expect(suggest(columns, "sum")).toEqual(["summary.loss", "summary.acc"]);
    expect(suggest(columns, "loss")).toEqual(["summary.loss", "config.loss_fn"]);
    expect(suggest(columns, "STATE")).toEqual(["state"]);
    expect(suggest(columns, "", 2)).toHaveLength(2);
  });
});

describe("countConditions", () => {
  it("counts conditions, not the and/or nodes", () => {
    expect(countConditions(null)).toBe(0);
    expect(countConditions({ lr: 0.1 })).toBe(1);
    expect(countConditions({ $and: [{ a: { $lt: 1 } }, { $or: [{ b: 2 }, { c: { $gt: 1, $lt: 5 } }] }] })).toBe(4);
    expect(countConditions({ name: { $regex: "x", $options: "i" } })).toBe(1);
  });
});
