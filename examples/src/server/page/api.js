// The REST API and the live event stream. The key comes from the URL fragment (`#key=...`),
// is kept in sessionStorage for reloads and removed from the address bar; fetches send it as
// a Bearer header, the EventSource (which cannot send headers) as `?key=`.

const STORE = 'omoi.key';

/** The API key, or null: `#key=` of the URL first, then this tab's storage. */
export function takeKey() {
  const m = /(?:^#|&)key=([^&]+)/.exec(location.hash);
  if (m) {
    const key = decodeURIComponent(m[1]);
    sessionStorage.setItem(STORE, key);
    history.replaceState(null, '', location.pathname + location.search);
    return key;
  }
  return sessionStorage.getItem(STORE);
}

/** Forgets the key of this tab. */
export function forgetKey() {
  sessionStorage.removeItem(STORE);
}

/** An HTTP error from the API, with its typed code (`not_found`, `unauthorized`, ...). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

/** GET (or another method with a JSON body) on the API; resolves to the JSON body. */
export async function api(key, path, { method = 'GET', body } = {}) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) {
    let code = 'http_error';
    let message = res.statusText;
    try {
      const e = (await res.json()).error;
      code = e.code;
      message = e.message;
    } catch (_) {
      // not a typed error body: keep the status text
    }
    throw new ApiError(res.status, code, message);
  }
  return res.status === 204 ? null : res.json();
}

/**
 * Opens the event stream and calls `onEvent(name, storedEvent)` for each event of `names`,
 * `onStatus('open' | 'reconnecting' | 'closed')` when the connection changes. The browser
 * resumes after the last received cursor (`Last-Event-ID`) on its own when it reconnects.
 */
export function openStream(key, names, onEvent, onStatus) {
  const es = new EventSource(`/api/events?key=${encodeURIComponent(key)}`);
  for (const name of names) {
    es.addEventListener(name, (e) => {
      let data;
      try {
        data = JSON.parse(e.data);
      } catch (err) {
        console.warn('unparsable event', name, err);
        return;
      }
      onEvent(name, data);
    });
  }
  es.onopen = () => onStatus('open');
  es.onerror = () => onStatus(es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  return es;
}
