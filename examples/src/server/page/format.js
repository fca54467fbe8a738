// Small formatting helpers shared by the panels.

/** The last 6 characters of an id (UUIDv7s share their leading timestamp digits). */
export function shortId(id) {
  return id ? String(id).slice(-6) : '—';
}

/** "3 s ago", "5 min ago", "2 h ago" from an ISO timestamp. */
export function ago(ts, now = Date.now()) {
  if (!ts) return '—';
  const s = Math.max(0, (now - Date.parse(ts)) / 1000);
  return seconds(s) + ' ago';
}

/** 12 s, 4 min, 3 h, 2 d. */
export function seconds(s) {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** HH:MM:SS of an ISO timestamp, in local time. */
export function clock(ts) {
  return ts ? new Date(ts).toLocaleTimeString([], { hour12: false }) : '—';
}

/** "$0.0123" */
export function usd(v) {
  const n = Number(v || 0);
  return '$' + (n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(2) : n.toFixed(4));
}

/** "12.3k" tokens. */
export function tokens(u) {
  const n = Number(u?.input_tokens || 0) + Number(u?.output_tokens || 0);
  return n >= 1e6 ? (n / 1e6).toFixed(1) + 'M' : n >= 1e3 ? (n / 1e3).toFixed(1) + 'k' : String(n);
}

/** 0.87 → "87%"; null → "—". */
export function pct(v) {
  return v === null || v === undefined ? '—' : Math.round(Number(v) * 100) + '%';
}

/** A task's display name: its local id (TSK-001) if it has one, then its title. */
export function taskLabel(t) {
  return t.links?.local_id ? `${t.links.local_id} ${t.def.title}` : t.def.title;
}
