// Every URL the page builds: relative to the page (so a reverse-proxy sub-path just works) and
// carrying the page's own `?token=` when it was opened as `/?token=T`. Such a page has no other
// credentials, and an <img> or a WebSocket cannot send a header: each of its requests needs the
// token in its URL. A page without a token builds exactly the URLs it always did.

// Read once, from the address bar only: the token is not stored anywhere else (no storage,
// no cookie, no log line). An empty `?token=` counts as none.
const token = new URLSearchParams(location.search).get("token") || null;

/**
 * The absolute URL of `path` resolved against the page (e.g. "api/status", "?mode=ws"), with the
 * page's token added to its query.
 * @param {string} path
 * @returns {string}
 */
export function pageUrl(path) {
  const url = new URL(path, document.baseURI);
  if (token !== null) url.searchParams.set("token", token);
  return url.href;
}

/**
 * A WebSocket URL for `path`: same host and path as pageUrl(), ws: or wss: after the page's
 * own scheme (so TLS carries over).
 * @param {string} path
 * @returns {string}
 */
export function wsUrl(path) {
  const url = new URL(pageUrl(path));
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}
