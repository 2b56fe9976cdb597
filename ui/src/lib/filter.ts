// The runs filter builder's model: conditions (column, operator, value) in groups joined by
// "and" or "or", nested for parentheses. It compiles to the server's Mongo-style filter JSON and
// back, so a filter round-trips through the URL.

export type Operator = "=" | "≠" | "<" | ">" | "≤" | "≥" | "IN" | "NOT IN" | "regex";
export const OPERATORS: Operator[] = ["=", "≠", "<", ">", "≤", "≥", "IN", "NOT IN", "regex"];

/** How the value text is read. `auto` guesses: number, then null, then string. */
export type ValueType = "auto" | "integer" | "float" | "string" | "timestamp" | "null";
export const VALUE_TYPES: ValueType[] = ["auto", "integer", "float", "string", "timestamp", "null"];

export interface Condition {
  kind: "condition";
  column: string;
  op: Operator;
  value: string;
  type: ValueType;
}

export interface Group {
  kind: "group";
  join: "and" | "or";
  items: Node[];
}

export type Node = Condition | Group;

const MONGO: Record<Operator, string> = {
  "=": "$eq",
  "≠": "$ne",
  "<": "$lt",
  ">": "$gt",
  "≤": "$lte",
  "≥": "$gte",
  IN: "$in",
  "NOT IN": "$nin",
  regex: "$regex",
};

const FROM_MONGO: Record<string, Operator> = Object.fromEntries(
  Object.entries(MONGO).map(([op, mongo]) => [mongo, op as Operator]),
);

export function condition(column = "", op: Operator = "=", value = "", type: ValueType = "auto"): Condition {
  return { kind: "condition", column, op, value, type };
}

export function group(join: "and" | "or" = "and", items: Node[] = []): Group {
  return { kind: "group", join, items };
}

/** A value that the filter cannot use, with the reason. */
export class FilterError extends Error {}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Reads one value as its type says. */
export function parseValue(text: string, type: ValueType, column = ""): Json {
  const t = text.trim();
  switch (type) {
    case "null":
      return null;
    case "string":
      return text;
    case "integer": {
      if (!/^[-+]?\d+$/.test(t)) throw new FilterError(`${column}: "${text}" is not an integer`);
      return Number.parseInt(t, 10);
    }
    case "float": {
      const v = Number(t);
      if (t === "" || !Number.isFinite(v)) throw new FilterError(`${column}: "${text}" is not a number`);
      return v;
    }
    case "timestamp": {
      const ms = Date.parse(t);
      if (Number.isNaN(ms)) throw new FilterError(`${column}: "${text}" is not a date or time`);
      return new Date(ms).toISOString();
    }
    case "auto": {
      if (t === "null") return null;
      if (t === "true" || t === "false") return t === "true";
      if (t !== "" && Number.isFinite(Number(t))) return Number(t);
      return text;
    }
  }
}

/** The server's name for a table column: `summary_metrics.x` and `display_name` are W&B's. */
export function fieldName(column: string): string {
  return column;
}

function compileCondition(c: Condition): Json {
  if (!c.column.trim()) throw new FilterError("a condition has no column");
  const field = fieldName(c.column.trim());
  if (c.op === "IN" || c.op === "NOT IN") {
    const items = c.value
      .split(",")
      .map((v) => v.trim())
      .filter((v) => v !== "")
      .map((v) => parseValue(v, c.type, field));
    return { [field]: { [MONGO[c.op]]: items } };
  }
  if (c.op === "regex") {
    try {
      new RegExp(c.value);
    } catch {
      throw new FilterError(`${field}: "${c.value}" is not a valid regular expression`);
    }
    return { [field]: { $regex: c.value } };
  }
  return { [field]: { [MONGO[c.op]]: parseValue(c.value, c.type, field) } };
}

/** The Mongo-style JSON the server takes, or null when the filter is empty. */
export function compile(node: Node): Json {
  if (node.kind === "condition") return compileCondition(node);
  const items = node.items.map(compile).filter((x) => x !== null);
  if (items.length === 0) return null;
  if (items.length === 1) return items[0];
  return { [node.join === "and" ? "$and" : "$or"]: items };
}

function typeOf(value: Json): ValueType {
  if (value === null) return "null";
  // "auto" reads true and false back as booleans.
  if (typeof value === "boolean") return "auto";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "float";
  if (typeof value === "string" && /^\d{4}-\d{2}-\d{2}T/.test(value)) return "timestamp";
  return "string";
}

function text(value: Json): string {
  return value === null ? "null" : String(value);
}

/** Reads Mongo-style JSON back into the builder's model. */
export function decompile(json: Json): Group {
  if (json === null || typeof json !== "object" || Array.isArray(json)) return group();
  const items: Node[] = [];
  for (const [key, value] of Object.entries(json)) {
    if (key === "$and" || key === "$or") {
      const children = (value as Json[]).map((child) => {
        const g = decompile(child);
        return g.items.length === 1 ? g.items[0] : g;
      });
      items.push(group(key === "$and" ? "and" : "or", children));
    } else if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const [op, operand] of Object.entries(value)) {
        const operator = FROM_MONGO[op];
        if (!operator) throw new FilterError(`unknown operator ${op}`);
        if (Array.isArray(operand)) {
          items.push(condition(key, operator, operand.map(text).join(", "), operand.length ? typeOf(operand[0]) : "auto"));
        } else {
          items.push(condition(key, operator, text(operand), operator === "regex" ? "string" : typeOf(operand)));
        }
      }
    } else {
      items.push(condition(key, "=", text(value), typeOf(value)));
    }
  }
  if (items.length === 1 && items[0].kind === "group") return items[0];
  return group("and", items);
}

/** How many conditions a filter has: field tests, not the $and/$or nodes that join them. */
export function countConditions(json: unknown): number {
  if (json === null || typeof json !== "object") return 0;
  if (Array.isArray(json)) return json.reduce((n: number, item) => n + countConditions(item), 0);
  let n = 0;
  for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
    if (key === "$and" || key === "$or" || key === "$nor") n += countConditions(value);
    else if (value !== null && typeof value === "object" && !Array.isArray(value) && Object.keys(value).some((k) => k.startsWith("$"))) {
      n += Object.keys(value).filter((k) => k.startsWith("$") && k !== "$options").length;
    } else n += 1;
  }
  return n;
}

/** Combines filters with "and", leaving out the empty ones. */
export function and(...filters: Json[]): Json {
  const parts = filters.filter((f) => f !== null && !(typeof f === "object" && Object.keys(f as object).length === 0));
  if (parts.length === 0) return null;
  if (parts.length === 1) return parts[0];
  return { $and: parts };
}

/** Column names that start with what is typed, for autocompletion. */
export function suggest(columns: string[], typed: string, limit = 12): string[] {
  const t = typed.toLowerCase();
  const starts = columns.filter((c) => c.toLowerCase().startsWith(t));
  const contains = columns.filter((c) => !c.toLowerCase().startsWith(t) && c.toLowerCase().includes(t));
  return [...starts, ...contains].slice(0, limit);
}
