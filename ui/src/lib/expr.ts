// The filter as text: `val_loss <= 1 and (optimizer = sgd or lr = 0.01)`. It reads into the
// builder's model and prints from it, so the text editor and the builder edit one filter.
import { FilterError, condition, group, type Condition, type Group, type Node, type Operator, type ValueType } from "./filter";

const OPS: [string, Operator][] = [
  ["not in", "NOT IN"],
  ["!=", "≠"],
  ["<>", "≠"],
  ["<=", "≤"],
  [">=", "≥"],
  ["==", "="],
  ["=~", "regex"],
  ["≠", "≠"],
  ["≤", "≤"],
  ["≥", "≥"],
  ["=", "="],
  ["<", "<"],
  [">", ">"],
  ["~", "regex"],
  ["in", "IN"],
];

const PRINTED: Record<Operator, string> = { "=": "=", "≠": "!=", "<": "<", ">": ">", "≤": "<=", "≥": ">=", IN: "in", "NOT IN": "not in", regex: "~" };

type Token =
  | { kind: "word"; text: string; at: number }
  | { kind: "string"; text: string; at: number }
  | { kind: "op"; op: Operator; at: number }
  | { kind: "punct"; text: "(" | ")" | "[" | "]" | ","; at: number };

const WORD = /[^\s()[\],=<>!~≠≤≥"'`]/;

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if ("()[],".includes(c)) {
      out.push({ kind: "punct", text: c as "(", at: i });
      i++;
      continue;
    }
    if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      let s = "";
      while (j < text.length && text[j] !== c) {
        if (text[j] === "\\" && j + 1 < text.length) j++;
        s += text[j];
        j++;
      }
      if (j >= text.length) throw new FilterError(`the quote at character ${i + 1} is not closed`);
      // A backquoted name is a column, like a bare word.
      out.push({ kind: c === "`" ? "word" : "string", text: s, at: i });
      i = j + 1;
      continue;
    }
    const symbol = OPS.find(([s]) => !/^[a-z]/.test(s) && text.startsWith(s, i));
    if (symbol) {
      out.push({ kind: "op", op: symbol[1], at: i });
      i += symbol[0].length;
      continue;
    }
    let j = i;
    while (j < text.length && WORD.test(text[j])) j++;
    if (j === i) throw new FilterError(`unexpected "${c}" at character ${i + 1}`);
    out.push({ kind: "word", text: text.slice(i, j), at: i });
    i = j;
  }
  return out;
}

/** Reads the text form into the builder's model. An empty text is an empty filter. */
export function parseExpr(text: string): Group {
  const tokens = tokenize(text);
  let pos = 0;
  const peek = () => tokens[pos];
  const isWord = (t: Token | undefined, w: string) => t?.kind === "word" && t.text.toLowerCase() === w;
  const where = (t: Token | undefined) => (t ? `at character ${t.at + 1}` : "at the end");

  function value(column: string): { text: string; type: ValueType } {
    const t = tokens[pos++];
    if (!t || t.kind === "op" || t.kind === "punct") throw new FilterError(`${column}: a value is missing ${where(t)}`);
    if (t.kind === "string") return { text: t.text, type: "string" };
    if (t.text.toLowerCase() === "null") return { text: "null", type: "null" };
    return { text: t.text, type: "auto" };
  }

  function cond(): Condition {
    const col = tokens[pos++];
    if (!col || col.kind !== "word") throw new FilterError(`a column name is expected ${where(col)}`);
    let t = peek();
    let op: Operator;
    if (isWord(t, "not") && isWord(tokens[pos + 1], "in")) {
      op = "NOT IN";
      pos += 2;
    } else if (isWord(t, "in")) {
      op = "IN";
      pos++;
    } else if (t?.kind === "op") {
      op = t.op;
      pos++;
    } else {
      throw new FilterError(`an operator (=, !=, <, <=, >, >=, in, not in, ~) is expected after ${col.text} ${where(t)}`);
    }
    if (op === "IN" || op === "NOT IN") {
      t = tokens[pos++];
      const close = t?.kind === "punct" && t.text === "[" ? "]" : t?.kind === "punct" && t.text === "(" ? ")" : null;
      if (!close) throw new FilterError(`${col.text} ${PRINTED[op]}: a list in [ ] is expected ${where(t)}`);
      const items: { text: string; type: ValueType }[] = [];
      while (!(peek()?.kind === "punct" && (peek() as { text: string }).text === close)) {
        items.push(value(col.text));
        const sep = peek();
        if (sep?.kind === "punct" && sep.text === ",") pos++;
        else if (!(sep?.kind === "punct" && sep.text === close)) throw new FilterError(`${col.text}: "," or "${close}" is expected ${where(sep)}`);
      }
      pos++;
      const type = items.every((i) => i.type === "string") && items.length ? "string" : "auto";
      return condition(col.text, op, items.map((i) => i.text).join(", "), type);
    }
    const v = value(col.text);
    return condition(col.text, op, v.text, op === "regex" ? "string" : v.type);
  }

  function unary(): Node {
    const t = peek();
    if (t?.kind === "punct" && t.text === "(") {
      pos++;
      const inner = or();
      const close = tokens[pos++];
      if (!(close?.kind === "punct" && close.text === ")")) throw new FilterError(`")" is expected ${where(close)}`);
      return inner.items.length === 1 ? inner.items[0] : inner;
    }
    return cond();
  }

  function joined(join: "and" | "or", next: () => Node): Group {
    const items = [next()];
    while (isWord(peek(), join)) {
      pos++;
      items.push(next());
    }
    return group(join, items);
  }
  const and = () => {
    const g = joined("and", unary);
    return g.items.length === 1 ? g.items[0] : g;
  };
  const or = (): Group => {
    const g = joined("or", and);
    return g.items.length === 1 && g.items[0].kind === "group" ? g.items[0] : g;
  };

  if (tokens.length === 0) return group();
  const result = or();
  if (pos < tokens.length) throw new FilterError(`"and", "or" or the end is expected ${where(tokens[pos])}`);
  return result.items.length === 1 && result.items[0].kind === "condition" ? group("and", result.items) : result;
}

const needsQuotes = (s: string) => s === "" || [...s].some((c) => !WORD.test(c)) || ["and", "or", "in", "not", "null"].includes(s.toLowerCase());
const quote = (s: string) => `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`;

function printValue(text: string, type: ValueType): string {
  if (type === "null") return "null";
  const t = text.trim();
  // A string that would read back as a number, a boolean or null keeps its quotes.
  const readsOtherwise = t !== "" && (Number.isFinite(Number(t)) || t === "true" || t === "false" || t === "null");
  if (type === "string" && (readsOtherwise || needsQuotes(text))) return quote(text);
  return needsQuotes(text) ? quote(text) : text;
}

/** The text form of a builder model. */
export function printExpr(node: Node, top = true): string {
  if (node.kind === "condition") {
    const column = needsQuotes(node.column) ? `\`${node.column}\`` : node.column;
    const op = PRINTED[node.op];
    if (node.op === "IN" || node.op === "NOT IN") {
      const items = node.value.split(",").map((v) => v.trim()).filter((v) => v !== "");
      return `${column} ${op} [${items.map((v) => printValue(v, node.type)).join(", ")}]`;
    }
    // A pattern is always quoted: it reads more clearly as one.
    return `${column} ${op} ${node.op === "regex" ? quote(node.value) : printValue(node.value, node.type)}`;
  }
  const parts = node.items.map((item) => printExpr(item, false)).filter((p) => p !== "");
  const text = parts.join(` ${node.join} `);
  return !top && parts.length > 1 ? `(${text})` : text;
}

/** The word being typed at `cursor`, for autocompletion: where it starts and what it is. */
export function wordAt(text: string, cursor: number): { start: number; word: string } {
  let start = cursor;
  while (start > 0 && WORD.test(text[start - 1])) start--;
  return { start, word: text.slice(start, cursor) };
}

/** Whether the word at `start` is where a column name goes (not a value or a keyword). */
export function expectsColumn(text: string, start: number): boolean {
  const before = tokenize(text.slice(0, start).replace(/["'`][^"'`]*$/, ""));
  const last = before[before.length - 1];
  if (!last) return true;
  if (last.kind === "punct") return last.text === "(";
  return last.kind === "word" && ["and", "or"].includes(last.text.toLowerCase());
}
