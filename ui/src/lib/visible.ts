/** A Svelte action: calls `onvisible` once, when the element first comes on screen (panels fetch
 * their data then, not before: what is below the fold waits, and leaves the first screen the
 * browser's connections and the machine's time). */
export function whenVisible(node: HTMLElement, onvisible: () => void) {
  const observer = new IntersectionObserver(
    (entries) => {
      if (entries.some((e) => e.isIntersecting)) {
        observer.disconnect();
        onvisible();
      }
    },
    { rootMargin: "0px" },
  );
  observer.observe(node);
  return { destroy: () => observer.disconnect() };
}
