// One render function per panel. Each takes the page's state and returns DOM (built with `h`,
// so every string from the API is text, never markup).

import { h } from './dom.js';
import { ago, clock, pct, seconds, shortId, taskLabel, tokens, usd } from './format.js';

export const STATES = ['waiting', 'blocked', 'ready', 'claimed', 'running', 'completed', 'failed', 'cancelled'];

/** The board's columns: which task states each one shows. */
export const COLUMNS = [
  { id: 'waiting', title: 'Waiting', states: ['waiting', 'blocked'] },
  { id: 'ready', title: 'Ready', states: ['ready'] },
  { id: 'running', title: 'Running', states: ['claimed', 'running'] },
  { id: 'completed', title: 'Completed', states: ['completed'] },
  { id: 'failed', title: 'Failed', states: ['failed'] },
  { id: 'cancelled', title: 'Cancelled', states: ['cancelled'] },
];

const PHASES = ['explore', 'prd', 'requirements', 'design', 'tasks', 'sync'];

const empty = (text) => h('p', { class: 'empty' }, text);

/** One chip per task state, plus the total. */
export function counts({ counts, total }) {
  return [
    ...STATES.map((s) =>
      h('div', { class: `count st-${s}`, dataset: { state: s } },
        h('span', { class: 'n' }, String(counts[s] || 0)), h('span', { class: 'label' }, s))),
    h('div', { class: 'count total', dataset: { state: 'total' } },
      h('span', { class: 'n' }, String(total)), h('span', { class: 'label' }, 'total')),
  ];
}

function card(t, tickets, selected, onSelect) {
  const branch = Boolean(t.links?.parent_id);
  const ticket = t.links?.ticket_id ? tickets.get(t.links.ticket_id) : null;
  return h('article', {
    class: `card st-${t.state}${branch ? ' branch' : ''}${t.id === selected ? ' selected' : ''}`,
    dataset: { taskId: t.id, state: t.state },
    tabindex: 0,
    onclick: () => onSelect(t.id),
    onkeydown: (e) => e.key === 'Enter' && onSelect(t.id),
  },
  h('div', { class: 'card-title' }, branch ? h('span', { class: 'branch-mark', title: 'discovery branch' }, '◆ ') : null,
    taskLabel(t)),
  h('div', { class: 'card-meta' },
    h('span', { class: 'id' }, shortId(t.id)),
    ticket ? h('span', { class: 'ticket', title: ticket.title }, ticket.local_id || 'ticket') : null,
    t.state !== COLUMNS.find((c) => c.states.includes(t.state)).id ? h('span', { class: `badge st-${t.state}` }, t.state) : null,
    t.attempts > 0 ? h('span', { title: 'attempts' }, `#${t.attempts}`) : null,
    t.lease ? h('span', { class: 'holder', title: 'lease holder' }, '⚙ ' + shortId(t.lease.holder)) : null,
    t.usage?.cost_usd > 0 ? h('span', { class: 'cost' }, usd(t.usage.cost_usd)) : null),
  t.last_error && (t.state === 'failed' || t.state === 'ready')
    ? h('div', { class: 'card-error', title: t.last_error }, t.last_error) : null);
}

/** The board: one column per entry of `COLUMNS`, cards newest last. */
export function board({ tasks, counts, tickets, selected, onSelect }) {
  return COLUMNS.map((col) => {
    const mine = tasks.filter((t) => col.states.includes(t.state));
    const total = col.states.reduce((n, s) => n + (counts[s] || 0), 0);
    return h('section', { class: `column col-${col.id}`, dataset: { column: col.id } },
      h('header', {}, h('span', {}, col.title), h('span', { class: 'n' }, String(total))),
      h('div', { class: 'cards' }, mine.length ? mine.map((t) => card(t, tickets, selected, onSelect)) : empty('—'),
        total > mine.length ? h('p', { class: 'more' }, `+${total - mine.length} not loaded`) : null));
  });
}

/** Failed, blocked and stuck tasks and specs awaiting approval, each with why. */
export function attention({ failed, blocked, stuck, specs, tasks, onSelect }) {
  const items = [];
  for (const s of specs.filter((s) => String(s.state).startsWith('awaiting_approval'))) {
    items.push(h('li', { class: 'att approval' }, h('span', { class: 'badge st-ready' }, 'approval'),
      `spec “${s.title}” waits for approval of ${String(s.state).split(':')[1] || 'a phase'}`));
  }
  for (const s of specs.filter((s) => String(s.state).startsWith('failed'))) {
    items.push(h('li', { class: 'att' }, h('span', { class: 'badge st-failed' }, 'spec failed'),
      `spec “${s.title}” failed in ${String(s.state).split(':')[1] || 'a phase'}`));
  }
  for (const [id, st] of stuck) {
    const t = tasks.find((x) => x.id === id);
    if (t && t.state !== 'claimed' && t.state !== 'running') continue; // that run is over
    items.push(h('li', { class: 'att stuck link', onclick: () => onSelect(id) }, h('span', { class: 'badge st-blocked' }, 'stuck'),
      `${t ? taskLabel(t) : shortId(id)}: ${st.rule.replaceAll('_', ' ')} ×${st.repeats} (agent ${shortId(st.agent_id)}, ${ago(st.at)})`));
  }
  for (const t of failed) {
    const err = t.last_error || '';
    items.push(h('li', { class: 'att link', title: err, onclick: () => onSelect(t.id) }, h('span', { class: 'badge st-failed' }, 'failed'),
      `${taskLabel(t)}${err ? ': ' + (err.length > 140 ? err.slice(0, 139) + '…' : err) : ''}`));
  }
  for (const t of blocked) {
    items.push(h('li', { class: 'att link', onclick: () => onSelect(t.id) }, h('span', { class: 'badge st-blocked' }, 'blocked'),
      `${taskLabel(t)}: a dependency failed or was cancelled`));
  }
  return items.length ? h('ul', { class: 'attention-list' }, items) : empty('Nothing needs attention.');
}

function reason(r, titles, onSelect) {
  const link = (id) => h('a', { href: '#', onclick: (e) => { e.preventDefault(); onSelect(id); } }, r.title || titles.get(id) || shortId(id));
  switch (r.kind) {
    case 'dependency':
      return h('li', {}, 'waits for ', link(r.task_id), ` (${r.state})`);
    case 'blocked_by':
      return h('li', {}, 'blocked by ', link(r.task_id), ` which ${r.state === 'failed' ? 'failed' : 'was cancelled'}`);
    case 'scheduled':
      return h('li', {}, `scheduled: not before ${clock(r.run_at)} (backoff)`);
    case 'awaiting_approval':
      return h('li', {}, `its spec ${shortId(r.spec_id)} awaits approval${r.phase ? ' of ' + r.phase : ''}`);
    case 'queued':
      return h('li', {}, `ready: waits for a free worker (${r.attempts_left} attempt${r.attempts_left === 1 ? '' : 's'} left)`);
    default:
      return h('li', {}, JSON.stringify(r));
  }
}

/** The selected task: why it waits, its attempts, discoveries, interventions and cost. */
export function detail({ detail, titles, onSelect }) {
  if (!detail) return empty('Select a task on the board or in the graph.');
  const t = detail.task;
  const why = detail.why_waiting?.reasons || [];
  return [
    h('h3', {}, taskLabel(t), ' ', h('span', { class: `badge st-${t.state}` }, t.state)),
    h('p', { class: 'muted' }, `${shortId(t.id)} · ${t.def.phase} · priority ${t.def.priority} · attempts ${t.attempts}/${t.def.max_attempts}`),
    t.def.description ? h('p', { class: 'desc' }, t.def.description) : null,
    h('h4', {}, 'Why is this waiting?'),
    why.length ? h('ul', { class: 'why' }, why.map((r) => reason(r, titles, onSelect)))
      : h('p', { class: 'muted' }, `Not waiting: ${t.state}.`),
    t.last_error ? [h('h4', {}, 'Last error'), h('pre', { class: 'error' }, t.last_error)] : null,
    h('h4', {}, 'Attempts'),
    detail.attempts?.length
      ? h('ol', { class: 'attempts' }, detail.attempts.map((a) =>
        h('li', {}, `#${a.attempt} ${a.outcome} by ${shortId(a.holder)} at ${clock(a.at)}`, a.error ? h('span', { class: 'err' }, ' — ' + a.error) : null)))
      : h('p', { class: 'muted' }, 'none yet'),
    detail.trajectory?.length ? [h('h4', {}, 'Recent steps'), h('ol', { class: 'steps' }, detail.trajectory.slice(-8).map((e) => {
      const d = e.event.data || {};
      const text = typeof d.detail === 'string' ? d.detail : JSON.stringify(d.detail ?? '');
      return h('li', {}, h('span', { class: 'ev' }, `#${d.step} ${d.action}`), ' ', h('span', { class: 'muted' }, text.length > 90 ? text.slice(0, 89) + '…' : text));
    }))] : null,
    detail.discoveries?.length ? [h('h4', {}, 'Discoveries'), h('ul', {}, detail.discoveries.map((d) =>
      h('li', {}, h('span', { class: 'badge disc' }, d.kind), ` ${d.title} — ${d.status}`, d.spawned?.length ? ` → ${d.spawned.length} branch(es)` : '')))] : null,
    detail.interventions?.length ? [h('h4', {}, 'Interventions'), h('ul', {}, detail.interventions.map((i) =>
      h('li', {}, h('span', { class: `badge sev-${i.severity}` }, i.severity), ` ${i.message}`)))] : null,
    h('p', { class: 'muted' }, `cost ${usd(detail.cost?.cost_usd)} · ${tokens(detail.cost)} tokens`),
  ];
}

function phaseCell(spec, phase, live) {
  const cp = spec.checkpoints?.[phase];
  const [state, current] = String(spec.state).split(':');
  const retry = live.get(`${spec.id}/${phase}`);
  let cls = 'pending';
  let text = phase;
  let sub = '';
  if (cp) {
    // a gated phase has passed and waits for a human: both
    cls = current === phase && state === 'awaiting_approval' ? 'passed awaiting_approval' : 'passed';
    sub = `${cp.score.toFixed(2)}${cp.attempts > 1 ? ` · ${cp.attempts - 1} retr${cp.attempts > 2 ? 'ies' : 'y'}` : ''}`;
  } else if (current === phase) {
    cls = state; // running | awaiting_approval | failed
    sub = retry ? `try ${retry.attempt + 1}${retry.score != null ? ` · last ${retry.score.toFixed(2)}` : ''}` : state.replace('_', ' ');
  }
  return h('div', { class: `phase ${cls}`, title: retry?.feedback || '' }, h('div', { class: 'pname' }, text), h('div', { class: 'psub' }, sub || '·'));
}

/** Each spec with its phases: passed with score and retries, the current one, the rest. */
export function specs({ specs, tickets, live }) {
  if (!specs.length) return empty('No specs yet.');
  return specs.map((s) => {
    const mine = [...tickets.values()].filter((t) => t.spec_id === s.id);
    return h('div', { class: 'spec' },
      h('div', { class: 'spec-head' }, h('strong', {}, s.title), h('span', { class: 'badge' }, String(s.state).replace('_', ' ')),
        h('span', { class: 'muted' }, `${usd(s.usage?.cost_usd)} · ${tokens(s.usage)} tok`)),
      h('div', { class: 'phases' }, PHASES.map((p) => phaseCell(s, p, live))),
      mine.length ? h('div', { class: 'tickets' }, mine.map((t) =>
        h('span', { class: `ticket-chip tk-${t.status}${t.blocked ? ' blocked' : ''}`, title: t.title },
          `${t.local_id || shortId(t.id)} ${t.status}${t.blocked ? ' · blocked' : ''}`))) : null);
  });
}

/** Agents with heartbeat health, current tasks and alignment. */
export function agents({ agents, titles }) {
  if (!agents.length) return empty('No agents registered.');
  return h('table', { class: 'agents' },
    h('thead', {}, h('tr', {}, ['agent', 'status', 'heartbeat', 'alignment', 'working on'].map((c) => h('th', {}, c)))),
    h('tbody', {}, agents.map((a) => h('tr', { dataset: { agentId: a.agent.id } },
      h('td', {}, h('span', { class: `health h-${a.health}`, title: a.health }), ' ', a.agent.name, h('div', { class: 'muted' }, a.agent.kind)),
      h('td', {}, a.agent.status),
      h('td', {}, seconds(a.seconds_since_heartbeat || 0), h('div', { class: 'muted' }, a.health)),
      h('td', {}, a.alignment == null ? h('span', { class: 'muted' }, '—')
        : h('div', { class: 'meter', title: pct(a.alignment) }, h('div', { class: 'fill', style: `width:${Math.round(a.alignment * 100)}%` }), h('span', {}, pct(a.alignment)))),
      h('td', {}, a.current_tasks?.length ? a.current_tasks.map((id) => titles.get(id) || shortId(id)).join(', ') : h('span', { class: 'muted' }, 'idle'))))));
}

/** Interventions, newest first, on a vertical timeline. */
export function interventions({ interventions }) {
  if (!interventions.length) return empty('No interventions.');
  return h('ol', { class: 'timeline' }, interventions.map((i) => h('li', { class: `sev-${i.severity}` },
    h('div', { class: 'when' }, clock(i.created_at)),
    h('div', {}, h('span', { class: `badge sev-${i.severity}` }, i.severity), ' ', h('span', { class: 'muted' }, `${i.source} → agent ${shortId(i.agent_id)}`),
      h('div', {}, i.message), i.reason ? h('div', { class: 'muted' }, i.reason) : null,
      h('div', { class: 'muted' }, i.acknowledged_at ? `applied ${clock(i.acknowledged_at)}` : 'not yet applied')))));
}

function costTable(title, rows) {
  return h('div', { class: 'cost-table' }, h('h4', {}, title),
    rows.length ? h('table', {}, h('tbody', {}, rows.slice(0, 8).map((r) =>
      h('tr', {}, h('td', {}, r.name), h('td', { class: 'num' }, usd(r.usage?.cost_usd)), h('td', { class: 'num muted' }, tokens(r.usage))))))
      : empty('—'));
}

/** Total cost and the most expensive specs, agents and tasks. */
export function cost({ cost }) {
  if (!cost) return empty('—');
  return [
    h('div', { class: 'cost-total' }, h('span', { class: 'n' }, usd(cost.total?.cost_usd)), h('span', { class: 'muted' }, ` ${tokens(cost.total)} tokens`)),
    h('div', { class: 'cost-grid' },
      costTable('per spec', cost.specs || []),
      costTable('per agent', cost.agents || []),
      costTable('per task', cost.tasks || [])),
  ];
}

/** The last events received on the stream. */
export function feed({ events }) {
  if (!events.length) return empty('Waiting for events…');
  return h('ol', { class: 'feed' }, events.map((e) => h('li', {},
    h('span', { class: 'when' }, clock(e.at)), h('span', { class: `ev ev-${e.event.type.split('.')[0]}` }, e.event.type),
    h('span', { class: 'muted' }, ` #${e.cursor}`))));
}
