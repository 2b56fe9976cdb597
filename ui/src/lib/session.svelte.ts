// Who is signed in: the viewer, fetched once when the app starts and replaced when the user
// signs in or out. The session itself is an HttpOnly cookie that scripts never see; a 401 from
// any request means it is gone, and the app goes to the sign-in page.

import { ApiError, api, setUnauthorizedHandler, type Viewer } from "./api";
import { location } from "./router.svelte";

/** What a server without accounts answers: nobody signed in, everything allowed. */
const NO_AUTH: Viewer = { auth: false, user: null, admin: true, teams: [] };

class Session {
  viewer: Viewer | null = $state(null);
  /** "loading" until the first answer; "signed-out" after a 401; "error" when it failed otherwise. */
  status: "loading" | "ready" | "signed-out" | "error" = $state("loading");
  error = $state("");

  constructor() {
    setUnauthorizedHandler(() => this.lost());
  }

  async load() {
    try {
      this.viewer = await api.viewer();
      this.status = "ready";
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return; // lost() has run
      if (e instanceof ApiError && e.status === 404) {
        // A server from before accounts has no /viewer: it has no sign-in either.
        this.viewer = NO_AUTH;
        this.status = "ready";
        return;
      }
      this.error = e instanceof Error ? e.message : String(e);
      this.status = "error";
    }
  }

  /** Reads the viewer again, after a change to the user's teams. */
  async refresh() {
    try {
      this.viewer = await api.viewer();
    } catch {
      // a 401 went to the sign-in page; anything else keeps what the UI had
    }
  }

  /** The user signed in, or set up the first admin: the server answered with the viewer. */
  signedIn(viewer: Viewer) {
    this.viewer = viewer;
    this.status = "ready";
    this.error = "";
  }

  /** Ends the session; throws when the server could not (the cookie may still be good). */
  async signOut() {
    try {
      await api.signOut();
    } catch (e) {
      // 401: signed out already.
      if (!(e instanceof ApiError && e.status === 401)) throw e;
    }
    this.viewer = null;
    this.status = "signed-out";
    location.go({ page: "signin", next: "" });
  }

  /** A request answered 401: sign in, then come back here (unless already signing in). */
  private lost() {
    this.viewer = null;
    this.status = "signed-out";
    const page = location.route.page;
    if (page === "signin" || page === "setup") return;
    location.go({ page: "signin", next: location.current() });
  }
}

export const session = new Session();
