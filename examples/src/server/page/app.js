// The page's controller: loads every panel from the REST API, then keeps it current from the
// event stream. Events mark resources dirty; a short debounce refetches exactly those, so a
// burst of events costs one request per resource.

import { api, ApiError, forgetKey, openStream, takeKey } from './api.js';
import { renderDag } from './dag.js';
import { fill, h } from './dom.js';
import * as panel from './panels.js';
import { taskLabel } from './format.js';

const BOARD_LIMIT = 500;
const FEED_LENGTH = 40;
const DEBOUNCE_MS = 120;
const SPEC_DETAILS = 20;
const AGENTS_EVERY_MS = 10000;

const state = {
  key: null,
  tasks: [],
  counts: {},
  total: 0,
  failed: [],
  blocked: [],
  stuck: new Map(), // task id → {rule, repeats, agent_id, at}
  specs: [],
  tickets: new Map(), // ticket id → ticket, for the specs loaded in detail
  phaseRetries: new Map(), // "spec/phase" → last spec.phase_retry data
  agents: [],
  interventions: [],
  cost: null,
  events: [],
  selected: null,
  detail: null,
  live: 'connecting',
  lastCursor: null,
  health: null,
};

// Exposed for tests and for poking around in the console.
window.omoi = { state, loaded: false, eventsSeen: 0, refreshes: 0 };

const titles = () => new Map(state.tasks.map((t) => [t.id, taskLabel(t)]));

function select(id) {
  state.selected = id;
  state.detail = null;
  schedule('detail');
  render('board', 'dag', 'detail');
}

// ---- loading ----------------------------------------------------------------------------

const loaders = {
  async tasks() {
    const r = await api(state.key, `/api/tasks?limit=${BOARD_LIMIT}`);
    state.tasks = r.tasks;
    if (!state.selected) schedule('detail'); // shows the first waiting task's reasons
    return ['board', 'dag', 'agents', 'attention'];
  },
  async counts() {
    const r = await api(state.key, '/api/tasks/counts');
    state.counts = r.counts;
    state.total = r.total;
    return ['counts', 'board'];
  },
  async attention() {
    const [f, b] = await Promise.all([
      api(state.key, '/api/tasks?state=failed&limit=50'),
      api(state.key, '/api/tasks?state=blocked&limit=50'),
    ]);
    state.failed = f.tasks;
    state.blocked = b.tasks;
    return ['attention'];
  },
  async specs() {
    state.specs = (await api(state.key, '/api/specs')).specs;
    // Tickets come with each spec's detail: the newest specs' are enough for the board.
    const recent = [...state.specs].sort((a, b) => b.created_at.localeCompare(a.created_at)).slice(0, SPEC_DETAILS);
    const details = await Promise.all(recent.map((sp) => api(state.key, `/api/specs/${encodeURIComponent(sp.id)}`)));
    state.tickets = new Map(details.flatMap((d) => d.tickets).map((t) => [t.id, t]));
    return ['specs', 'attention', 'board'];
  },
  async agents() {
    state.agents = (await api(state.key, '/api/agents')).agents;
    return ['agents'];
  },
  async interventions() {
    state.interventions = (await api(state.key, '/api/interventions?limit=50')).interventions;
    return ['interventions'];
  },
  async cost() {
    state.cost = await api(state.key, '/api/cost');
    return ['cost'];
  },
  async detail() {
    if (!state.selected) {
      const waiting = state.tasks.find((t) => t.state === 'waiting' || t.state === 'blocked');
      if (!waiting) return ['detail'];
      state.selected = waiting.id;
    }
    try {
      state.detail = await api(state.key, `/api/tasks/${encodeURIComponent(state.selected)}`);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
      state.selected = null;
      state.detail = null;
    }
    return ['detail', 'board', 'dag'];
  },
  async recent() {
    // What only the event log knows at load: stuck tasks and the last system assessment.
    const r = await api(state.key, '/api/events/recent?names=monitor.stuck_detected,monitor.system_assessed&limit=50');
    for (const ev of [...r.events].reverse()) remember(ev);
    return ['attention', 'header'];
  },
};

const dirty = new Set();
let timer = null;
let inFlight = false; // one refresh at a time, so an older answer never overwrites a newer one

function schedule(...names) {
  for (const n of names) dirty.add(n);
  if (!timer && !inFlight && dirty.size) timer = setTimeout(refresh, DEBOUNCE_MS);
}

async function refresh() {
  timer = null;
  const names = [...dirty];
  dirty.clear();
  inFlight = true;
  let results;
  try {
    results = await Promise.allSettled(names.map((n) => loaders[n]()));
  } finally {
    inFlight = false;
    schedule(); // what became stale meanwhile
  }
  const panels = new Set();
  let failure = null;
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') r.value.forEach((p) => panels.add(p));
    else failure = { name: names[i], error: r.reason };
  });
  window.omoi.refreshes += 1;
  if (failure) {
    const e = failure.error;
    if (e instanceof ApiError && e.status === 401) return askForKey('The key was refused (401).');
    banner(`Could not load ${failure.name}: ${e.message}`);
    console.error('omoi: loading', failure.name, e);
  } else {
    banner(null);
  }
  render(...panels);
}

// ---- live stream ------------------------------------------------------------------------

// Which resources an event makes stale, by the part of its name before the dot.
const STALE = {
  task: ['tasks', 'counts', 'attention', 'agents'], // agents: what each one works on
  spec: ['specs', 'attention'],
  ticket: ['specs'],
  agent: ['agents'],
  discovery: ['tasks'],
  intervention: ['interventions', 'agents'],
  monitor: ['agents'],
  memory: [],
};

/** Applies what an event says directly (no refetch needed for these). */
function remember(ev) {
  const d = ev.event.data || {};
  switch (ev.event.type) {
    case 'monitor.stuck_detected':
      state.stuck.set(d.task_id, { ...d, at: ev.at });
      break;
    case 'spec.phase_retry':
      state.phaseRetries.set(`${d.spec_id}/${d.phase}`, d);
      break;
    case 'monitor.system_assessed':
      state.health = d;
      break;
    default:
  }
}

function onEvent(name, ev) {
  window.omoi.eventsSeen += 1;
  state.lastCursor = ev.cursor;
  state.events.unshift(ev);
  state.events.length = Math.min(state.events.length, FEED_LENGTH);
  remember(ev);
  const kind = name.split('.')[0];
  // a step changes no agent's health; only the open task's trajectory (below)
  const stale = name === 'agent.step' ? [] : [...(STALE[kind] || [])];
  if (name === 'task.completed' || name === 'task.failed' || kind === 'spec') stale.push('cost');
  if (name === 'monitor.intervention' || name === 'monitor.stuck_detected') stale.push('interventions', 'attention');
  if (kind === 'task' && ev.event.data?.task_id !== state.selected) {
    // the selected task's "why waiting" depends on its dependencies' states too
    if (state.selected && state.detail?.task?.state === 'waiting') stale.push('detail');
  }
  const d = ev.event.data || {};
  if (state.selected && (d.task_id === state.selected || d.source_task === state.selected)) stale.push('detail');
  if (name === 'task.completed' || name === 'task.failed' || name === 'task.cancelled' || name === 'task.redriven') {
    state.stuck.delete(d.task_id);
  }
  schedule(...stale);
  render('feed', 'header');
}

let snapshotRequested = false;

function onStatus(s) {
  state.live = s;
  render('header');
  // The stream starts at the current end of the log, so the snapshot is loaded once it is open:
  // nothing written after the snapshot can be missed.
  if (s === 'open' && !snapshotRequested) {
    snapshotRequested = true;
    schedule(...Object.keys(loaders));
    // Heartbeats are not events: the agents' health is re-read on a timer.
    setInterval(() => schedule('agents'), AGENTS_EVERY_MS);
  }
  if (s === 'closed') banner('The event stream closed; reload the page to reconnect.');
}

// ---- rendering --------------------------------------------------------------------------

const renderers = {
  header() {
    const live = document.getElementById('live');
    live.dataset.live = state.live;
    live.textContent = state.live === 'open' ? 'live' : state.live;
    document.getElementById('cursor').textContent = state.lastCursor == null ? '' : `cursor ${state.lastCursor}`;
    const hl = document.getElementById('system-health');
    if (state.health) {
      hl.textContent = `system ${state.health.health.replaceAll('_', ' ')} · coherence ${Math.round(state.health.coherence * 100)}%`;
      hl.dataset.health = state.health.health;
    }
  },
  counts: () => fill('counts', panel.counts(state)),
  board: () => fill('board', panel.board({ ...state, onSelect: select })),
  dag() {
    const el = fill('dag', renderDag(state.tasks, { selected: state.selected, onSelect: select }));
    if (!state.tasks.length) el.append(h('p', { class: 'empty' }, 'No tasks yet.'));
  },
  attention: () => fill('attention', panel.attention({ ...state, onSelect: select })),
  detail: () => fill('detail', panel.detail({ detail: state.detail, titles: titles(), onSelect: select })),
  specs: () => fill('specs', panel.specs({ specs: state.specs, tickets: state.tickets, live: state.phaseRetries })),
  agents: () => fill('agents', panel.agents({ agents: state.agents, titles: titles() })),
  interventions: () => fill('interventions', panel.interventions(state)),
  cost: () => fill('cost', panel.cost(state)),
  feed: () => fill('feed', panel.feed(state)),
};

function render(...names) {
  for (const n of new Set(names)) renderers[n]();
  if (names.includes('board') || names.includes('counts')) window.omoi.loaded = true;
}

function banner(text) {
  const el = document.getElementById('banner');
  el.hidden = !text;
  el.textContent = text || '';
}

function askForKey(why) {
  forgetKey();
  banner(why);
  const form = h('form', { class: 'key-form' },
    h('label', {}, 'API key ', h('input', { name: 'key', type: 'password', autocomplete: 'off', placeholder: 'omoi_…', required: true })),
    h('button', { type: 'submit' }, 'Open'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = 'key=' + encodeURIComponent(new FormData(form).get('key'));
    location.reload();
  });
  fill('board', form);
}

// ---- start ------------------------------------------------------------------------------

async function start() {
  Object.keys(renderers).forEach((n) => n !== 'header' && n !== 'feed' && fill(n, h('p', { class: 'empty' }, 'loading…')));
  state.key = takeKey();
  if (!state.key) return askForKey('This page needs an API key: open it as /#key=<key> (the server prints one).');
  let names;
  try {
    names = (await api(state.key, '/api/event-names')).names;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return askForKey('The key was refused (401).');
    throw e;
  }
  render('header', 'feed');
  openStream(state.key, names, onEvent, onStatus);
}

start().catch((e) => {
  banner(`The page failed to start: ${e.message}`);
  console.error('omoi: start', e);
});

