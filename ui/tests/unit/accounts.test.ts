import { describe, expect, it } from "vitest";
import type { ApiKey, Viewer } from "../../src/lib/api";
import { accessTo, canWrite, keyActive, parseExpiryDays } from "../../src/lib/accounts";

const user = (teams: Viewer["teams"] = [], admin = false): Viewer => ({ auth: true, user: "ana", admin, teams });

describe("access to an entity's projects", () => {
  it("allows everything with auth off", () => {
    const off: Viewer = { auth: false, user: null, admin: true, teams: [] };
    expect(accessTo(off, "anyone")).toBe("admin");
    // Even if a server without auth answered admin: false, nobody is checked.
    expect(accessTo({ ...off, admin: false }, "anyone")).toBe("admin");
  });

  it("makes a server admin admin everywhere", () => {
    expect(accessTo(user([], true), "someone-else")).toBe("admin");
  });

  it("makes users admins of their own entity", () => {
    expect(accessTo(user(), "ana")).toBe("admin");
  });

  it("follows the role in a team", () => {
    const v = user([
      { name: "vision", role: "admin" },
      { name: "nlp", role: "member" },
      { name: "audio", role: "viewer" },
    ]);
    expect(accessTo(v, "vision")).toBe("admin");
    expect(accessTo(v, "nlp")).toBe("write");
    expect(accessTo(v, "audio")).toBe("read");
    expect(canWrite(v, "nlp")).toBe(true);
    expect(canWrite(v, "audio")).toBe(false);
  });

  it("only reads anything else, or before the viewer is known", () => {
    expect(accessTo(user([{ name: "vision", role: "admin" }]), "bob")).toBe("read");
    expect(accessTo(null, "ana")).toBe("read");
    expect(canWrite(user(), "bob")).toBe(false);
  });

  it("does not take a signed-out user's null name for an entity", () => {
    expect(accessTo({ auth: true, user: null, admin: false, teams: [] }, "")).toBe("read");
  });
});

describe("API keys", () => {
  const key: ApiKey = {
    id: 1,
    user: "ana",
    name: "laptop",
    prefix: "cairn_AbCdEf",
    created_at: "2025-01-01T00:00:00Z",
    expires_at: null,
    last_used_at: null,
    revoked_at: null,
  };
  const now = Date.parse("2025-06-01T00:00:00Z");

  it("is active until revoked or expired", () => {
    expect(keyActive(key, now)).toBe(true);
    expect(keyActive({ ...key, expires_at: "2025-07-01T00:00:00Z" }, now)).toBe(true);
    expect(keyActive({ ...key, expires_at: "2025-05-01T00:00:00Z" }, now)).toBe(false);
    expect(keyActive({ ...key, revoked_at: "2025-05-01T00:00:00Z" }, now)).toBe(false);
  });

  it("reads the expiry field", () => {
    expect(parseExpiryDays("")).toEqual({ days: null });
    expect(parseExpiryDays("  ")).toEqual({ days: null });
    expect(parseExpiryDays("30")).toEqual({ days: 30 });
    expect(parseExpiryDays(" 7 ")).toEqual({ days: 7 });
    for (const bad of ["0", "-3", "1.5", "abc", "1e400"]) expect("error" in parseExpiryDays(bad), bad).toBe(true);
  });
});
