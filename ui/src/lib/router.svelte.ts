// The app's location: the route from the path, the view state from the query string. Changing
// either updates the URL (history.replaceState for view tweaks, pushState for navigation).
// Account pages (sign-in, setup, settings...) keep their own query instead of the view state,
// which stays in memory for the way back.

import { DEFAULT_VIEW, type Route, type ViewState, decodeView, parseRoute, routeUrl } from "./url";

class Location {
  route: Route = $state(parseRoute(window.location.pathname, window.location.search));
  view: ViewState = $state(decodeView(window.location.search));

  constructor() {
    window.addEventListener("popstate", () => {
      this.route = parseRoute(window.location.pathname, window.location.search);
      this.view = decodeView(window.location.search);
    });
  }

  /** Goes to another page; `view` is kept unless given. */
  go(route: Route, view?: Partial<ViewState>) {
    this.route = route;
    this.view = { ...(view ? { ...this.view, ...view } : this.view) };
    window.history.pushState(null, "", routeUrl(route, this.view));
    window.scrollTo(0, 0);
  }

  /** Goes to a path with its query, as a link or `next` parameter writes it. */
  open(url: string) {
    const u = new URL(url, window.location.origin);
    this.go(parseRoute(u.pathname, u.search), decodeView(u.search));
  }

  /** Where the app is: the path and query, to come back to after signing in. */
  current(): string {
    return window.location.pathname + window.location.search;
  }

  /** Changes the view state in place (filters, sort, columns...). */
  set(change: Partial<ViewState>) {
    this.view = { ...this.view, ...change };
    window.history.replaceState(null, "", routeUrl(this.route, this.view));
  }

  /** A link's href for a route, keeping the current view state. */
  href(route: Route, view: Partial<ViewState> = {}): string {
    return routeUrl(route, { ...this.view, ...view });
  }

  reset() {
    this.set({ ...DEFAULT_VIEW });
  }
}

export const location = new Location();

/** Handles a click on an internal link without reloading the page. */
export function navigate(event: MouseEvent, route: Route, view?: Partial<ViewState>) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  location.go(route, view);
}
