/** A Svelte action: calls `onvisible` once, when the element first comes within 200 px of the
 * viewport (panels fetch their data then, not before). */
export function whenVisible(node: HTMLElement, onvisible: () => void) {
  const observer = new IntersectionObserver(
    (entries) => {
      if (entries.some((e) => e.isIntersecting)) {
        observer.disconnect();
        onvisible();
      }
    },
    { rootMargin: "200px" },
  );
  observer.observe(node);
  return { destroy: () => observer.disconnect() };
}
