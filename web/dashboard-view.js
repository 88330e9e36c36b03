/* global document, Node */
// Pure helpers of the dashboard: formatting and DOM building, no state and no network.

// Minor-unit digits per currency where they are not 2 (ISO 4217), the server's own table. Money stays text: never a float.
import { EXPONENTS } from './currency-exponents.js';

/** "123456" EUR → "1,234.56 EUR", from the digits (amounts are strings of minor units). */
export function formatMinor(minor, currency) {
  if (minor === null || minor === undefined) return '–';
  const text = String(minor);
  const negative = text.startsWith('-');
  const digits = negative ? text.slice(1) : text;
  const exp = EXPONENTS[currency] ?? 2;
  const padded = digits.padStart(exp + 1, '0');
  const whole = padded.slice(0, padded.length - exp).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const frac = exp > 0 ? `.${padded.slice(padded.length - exp)}` : '';
  return `${negative ? '-' : ''}${whole}${frac}${currency ? ` ${currency}` : ''}`;
}

export function formatNumber(n) {
  if (n === null || n === undefined) return '–';
  return Number(n).toLocaleString('en-US', { maximumFractionDigits: 1 });
}

export function formatTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '–' : d.toISOString().slice(11, 23);
}

/** The last 8 characters: a seeded run's ids share their first ones (the run), not their last. */
export function shortId(id) {
  return `…${String(id).slice(-8)}`;
}

/** `el('td', { class: 'n' }, 'text')`: an element with attributes and text or child nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c === null || c === undefined ? '' : String(c)));
  return node;
}

const latencyCell = (l, key) => (l && l.count > 0 ? formatNumber(l[key]) : '–');

/**
 * One row of the workers table, like `watch` shows it. The server already leaves out what a row
 * cannot know now (in-flight and latency of a gone worker, anything while it cannot hear the
 * workers); `unheard` shows the status as `?` (the last one known in its title).
 */
export function workerRow(w) {
  return el(
    'tr',
    { class: w.status, dataset: { workerId: w.workerId, status: w.status, unheard: w.unheard ? 'true' : null } },
    el('td', {}, w.workerId, w.paused ? ' (paused)' : '', w.blocked ? ' (blocked)' : ''),
    w.unheard
      ? el('td', { class: 'status status-unheard', title: `was ${w.status}; the server cannot hear the workers` }, '?')
      : el('td', { class: `status status-${w.status}` }, w.status),
    el('td', { class: 'n rate' }, w.ratePerS === null ? '–' : formatNumber(w.ratePerS)),
    el('td', { class: 'n' }, w.rate10sPerS === null ? '–' : formatNumber(w.rate10sPerS)),
    el('td', { class: 'n applied' }, formatNumber(w.applied)),
    el('td', { class: 'n' }, formatNumber(w.rejected)),
    el('td', { class: 'n' }, formatNumber(w.retried)),
    el('td', { class: 'n' }, formatNumber(w.parked)),
    el('td', { class: 'n in-flight' }, w.inFlight === null || w.inFlight === undefined ? '–' : `${w.inFlight}/${w.prefetchCount}`),
    el('td', { class: 'n p50' }, latencyCell(w.endToEndMs, 'p50')),
    el('td', { class: 'n p99' }, latencyCell(w.endToEndMs, 'p99')),
    el('td', { class: 'n' }, (w.lastSeenAgoMs / 1000).toFixed(1)),
  );
}

export function totalCells(t) {
  const live = t.byStatus.active + t.byStatus.idle;
  return [
    el('td', {}, 'total'),
    el('td', {}, `${live}/${t.workers} live`),
    el('td', { class: 'n rate' }, t.unheard ? '–' : formatNumber(t.ratePerS)),
    el('td', { class: 'n' }, t.unheard ? '–' : formatNumber(t.rate10sPerS)),
    el('td', { class: 'n applied' }, formatNumber(t.applied)),
    el('td', { class: 'n' }, formatNumber(t.rejected)),
    el('td', { class: 'n' }, formatNumber(t.retried)),
    el('td', { class: 'n' }, formatNumber(t.parked)),
    el('td', { class: 'n' }, formatNumber(t.inFlight)),
    el('td', { class: 'n' }, latencyCell(t.endToEndMs, 'p50')),
    el('td', { class: 'n' }, latencyCell(t.endToEndMs, 'p99')),
    el('td', {}, ''),
  ];
}

/**
 * What the queues card says about its numbers: their source, or — when the latest read failed or
 * none came for a while — that they are old, how old, and why (the server then sends no rates).
 */
export function queueSourceText(frame) {
  const q = frame.queues;
  if (!q) return frame.queueError ?? '';
  if (frame.queuesStale) {
    const age = Math.round((frame.queuesAgeMs ?? 0) / 1000);
    return `stale: last read ${age} s ago${frame.queueError ? `: ${frame.queueError}` : ''}`;
  }
  return q.source === 'management-api' ? 'management API' : `AMQP passive declare (API: ${q.apiError ?? 'unavailable'})`;
}

export function queueRow(q) {
  // A retry step by its delay, a partition of an ordered namespace by its number.
  const name = q.role === 'retry' || q.role === 'partition' ? `${q.role} ${q.name.slice(q.name.lastIndexOf('.') + 1)}` : q.role;
  return el(
    'tr',
    { dataset: { role: q.role, queue: q.name } },
    el('td', { title: q.name }, q.exists ? name : `${name} (missing)`),
    el('td', { class: 'n ready' }, formatNumber(q.ready)),
    el('td', { class: 'n' }, formatNumber(q.unacked)),
    el('td', { class: 'n' }, formatNumber(q.inPerS)),
    el('td', { class: 'n' }, formatNumber(q.outPerS)),
    el('td', { class: 'n' }, formatNumber(q.consumers)),
  );
}

/** A row of the recent-transactions list (updated in place as the transaction moves on). */
export function recentCells(e) {
  return [
    el('td', {}, formatTime(e.at)),
    el('td', { class: 'id', title: e.transactionId }, shortId(e.transactionId)),
    el('td', {}, e.type ?? '–'),
    el('td', { class: 'n' }, e.accountId ?? '–'),
    el('td', { class: 'n' }, formatMinor(e.amountMinor, e.currency)),
    el('td', { class: `outcome outcome-${e.event}` }, eventLabel(e)),
  ];
}

/** What an event says in a row: the state (with its reason), or for a processing stage its name and result. */
export function eventLabel(e) {
  if (e.event === 'stage' && e.stage) return `${e.stage.name}: ${e.stage.phase === 'start' ? '…' : e.stage.result}`;
  return e.reason ? `${e.event}: ${e.reason}` : e.event;
}

/** The timeline panel of `GET /v1/transactions/{id}`. */
export function transactionDetail(v) {
  const rows = [
    ['id', el('span', { class: 'id' }, v.id)],
    ['status', el('b', { class: `outcome-${v.status}` }, v.status)],
    ['type', v.type ?? '–'],
    ['account', v.accountId ?? '–'],
    ['amount', formatMinor(v.amountMinor, v.currency)],
  ];
  if (v.balanceAfterMinor !== null) rows.push(['balance after', formatMinor(v.balanceAfterMinor, v.currency)]);
  if (v.reason) rows.push(['reason', v.detail ? `${v.reason} (${v.detail})` : v.reason]);
  if (v.attempts !== null) rows.push(['attempts', v.attempts]);
  if (v.destinationAccount !== null) rows.push(['destination', v.destinationAccount]);
  const dl = el('dl', { class: 'kv' });
  for (const [k, val] of rows) dl.append(el('dt', {}, k), el('dd', {}, val));
  const timeline = el('ol', { class: 'timeline', id: 'tx-timeline' });
  for (const t of v.timeline) timeline.append(el('li', { dataset: { state: t.state } }, el('b', {}, t.state), ` ${t.at}`));
  return [dl, el('h3', {}, 'Timeline'), timeline];
}

export function statementRow(l) {
  return el(
    'tr',
    {},
    el('td', {}, l.accountSeq),
    el('td', {}, formatTime(l.occurredAt)),
    el('td', {}, l.type),
    el('td', { class: `outcome-${l.outcome}` }, l.reason ? `${l.outcome}: ${l.reason}` : l.outcome),
    el('td', { class: 'n' }, formatMinor(l.amountMinor, l.currency)),
    el('td', { class: 'n' }, formatMinor(l.balanceAfterMinor, l.currency)),
  );
}
