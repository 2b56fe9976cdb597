// The app's location: the route from the path, the view state from the query string. Changing
// either updates the URL (history.replaceState for view tweaks, pushState for navigation).

import { DEFAULT_VIEW, type Route, type ViewState, decodeView, encodeView, parseRoute, routePath } from "./url";

class Location {
  route: Route = $state(parseRoute(window.location.pathname));
  view: ViewState = $state(decodeView(window.location.search));

  constructor() {
    window.addEventListener("popstate", () => {
      this.route = parseRoute(window.location.pathname);
      this.view = decodeView(window.location.search);
    });
  }

  /** Goes to another page; `view` is kept unless given. */
  go(route: Route, view?: Partial<ViewState>) {
    this.route = route;
    this.view = { ...(view ? { ...this.view, ...view } : this.view) };
    window.history.pushState(null, "", routePath(route) + encodeView(this.view));
    window.scrollTo(0, 0);
  }

  /** Changes the view state in place (filters, sort, columns...). */
  set(change: Partial<ViewState>) {
    this.view = { ...this.view, ...change };
    window.history.replaceState(null, "", routePath(this.route) + encodeView(this.view));
  }

  /** A link's href for a route, keeping the current view state. */
  href(route: Route, view: Partial<ViewState> = {}): string {
    return routePath(route) + encodeView({ ...this.view, ...view });
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
