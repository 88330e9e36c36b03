/* global document, window, location, history, sessionStorage, fetch, WebSocket, ResizeObserver, setInterval, clearInterval, URLSearchParams */
// The txsim dashboard: one WebSocket (/v1/dashboard/ws) brings a stats frame per second and every
// transaction's state changes; the REST API answers the timeline and account views. Plain ES
// modules, no build step; uPlot for the charts.
import uPlot from '/vendor/uPlot.esm.js';
import {
  el,
  eventLabel,
  formatMinor,
  formatNumber,
  formatTime,
  queueRow,
  queueSourceText,
  recentCells,
  statementRow,
  totalCells,
  transactionDetail,
  workerRow,
} from '/web/dashboard-view.js';

const TOKEN_KEY = 'txsim.dashboard.token';
const HISTORY_MAX = 300;
const RECENT_MAX = 200;
const HELD_MAX = 1000;
const RECONNECT_MS = [1000, 2000, 4000, 5000];

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  socket: null,
  attempt: 0,
  reconnectTimer: null,
  countdown: null,
  paused: false,
  held: [],
  /** transactionId → <tr> of the recent list. */
  recentRows: new Map(),
  selectedTx: null,
  account: null,
  series: { t: [], applied: [], rejected: [], retried: [], p50: [], p99: [], max: [] },
};
// For the browser tests and the curious: the last frame and the connection state.
window.txsimDashboard = { state: 'connecting', frames: 0, lastFrame: null };

// --- token ---------------------------------------------------------------------------------------

function readToken() {
  // `#token=…` in the URL (printed links, tests) is taken once and removed from the address bar.
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.has('token')) {
    sessionStorage.setItem(TOKEN_KEY, hash.get('token'));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function authHeaders() {
  return state.token ? { authorization: `Bearer ${state.token}` } : {};
}

function askToken(message) {
  setConnection('refused', 'token needed');
  $('login-msg').textContent = message;
  const dialog = $('login');
  if (!dialog.open) dialog.showModal();
  $('token').focus();
}

$('login-form').addEventListener('submit', () => {
  state.token = $('token').value.trim() || null;
  if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
  $('token').value = '';
  void connect();
});
$('change-token').addEventListener('click', () => askToken('Paste an admin token (txsim tokens create --admin).'));

// --- connection ----------------------------------------------------------------------------------

function setConnection(kind, text) {
  const conn = $('conn');
  conn.dataset.state = kind;
  conn.textContent = text;
  window.txsimDashboard.state = kind;
}

function showBanner(text) {
  const banner = $('banner');
  banner.textContent = text;
  banner.hidden = text === null;
}

async function connect() {
  clearTimeout(state.reconnectTimer);
  clearInterval(state.countdown);
  if (state.socket) {
    state.socket.onclose = null;
    state.socket.close();
    state.socket = null;
  }
  setConnection('connecting', 'connecting…');
  let response;
  try {
    response = await fetch('/v1/dashboard/session', { headers: authHeaders(), cache: 'no-store' });
  } catch {
    return scheduleReconnect('the server is unreachable');
  }
  if (response.status === 401)
    return askToken(state.token ? 'The token was refused: it is invalid, revoked or expired.' : 'This server needs an admin token.');
  if (response.status === 403) return askToken('This token is not an admin token: the dashboard shows every account.');
  if (!response.ok) return scheduleReconnect(`the server answered HTTP ${response.status}`);
  const session = await response.json();
  $('namespace').textContent = `namespace ${session.namespace}${session.noAuth ? ' (--no-auth)' : ''}`;
  const url = new URL('/v1/dashboard/ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  if (state.token) url.searchParams.set('token', state.token);
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.onopen = () => {
    state.attempt = 0;
    setConnection('live', 'live');
    showBanner(null);
  };
  socket.onmessage = (message) => onMessage(JSON.parse(message.data));
  socket.onclose = (event) => {
    if (state.socket !== socket) return;
    state.socket = null;
    // 1008: the token was revoked or expired while connected; reconnecting with it would only be refused.
    if (event.code === 1008)
      return askToken(`The server closed the connection: ${event.reason || 'the token no longer works'}. Paste a valid admin token.`);
    scheduleReconnect(`the connection closed (code ${event.code})`);
  };
}

function scheduleReconnect(why) {
  const delayMs = RECONNECT_MS[Math.min(state.attempt, RECONNECT_MS.length - 1)];
  state.attempt++;
  setConnection('down', 'disconnected');
  let left = Math.round(delayMs / 1000);
  const tick = () => showBanner(`Disconnected: ${why}. Reconnecting in ${left} s (attempt ${state.attempt})…`);
  tick();
  clearInterval(state.countdown);
  state.countdown = setInterval(() => {
    left = Math.max(0, left - 1);
    tick();
  }, 1000);
  state.reconnectTimer = setTimeout(() => void connect(), delayMs);
}

function onMessage(message) {
  if (message.type === 'hello') {
    resetSeries(message.history);
    if (message.frame) renderFrame(message.frame, false);
  } else if (message.type === 'frame') {
    renderFrame(message, true);
  } else if (message.type === 'tx') {
    onTransactions(message.events, message.dropped);
  }
}

// --- charts --------------------------------------------------------------------------------------

function chartWidth(id) {
  return Math.max(240, $(id).clientWidth);
}

const axisTime = { stroke: '#6b7480', grid: { stroke: '#eee' } };
const axisValue = { stroke: '#6b7480', grid: { stroke: '#eee' }, size: 60 };
const line = (label, stroke, extra = {}) => ({ label, stroke, width: 2, points: { show: false }, ...extra });

const throughputChart = new uPlot(
  {
    width: chartWidth('chart-throughput'),
    height: 200,
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [axisTime, axisValue],
    series: [{}, line('applied/s', '#1a7f37'), line('rejected/s', '#c62828'), line('retried/s', '#b26b00')],
  },
  [[], [], [], []],
  $('chart-throughput'),
);

const latencyChart = new uPlot(
  {
    width: chartWidth('chart-latency'),
    height: 200,
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [axisTime, axisValue],
    series: [{}, line('p50 ms', '#2f6fde'), line('p99 ms', '#8e44ad'), line('max ms', '#999', { width: 1, dash: [4, 4] })],
  },
  [[], [], [], []],
  $('chart-latency'),
);

new ResizeObserver(() => {
  throughputChart.setSize({ width: chartWidth('chart-throughput'), height: 200 });
  latencyChart.setSize({ width: chartWidth('chart-latency'), height: 200 });
}).observe(document.querySelector('main'));

function resetSeries(points) {
  for (const key of Object.keys(state.series)) state.series[key] = [];
  for (const p of points) addPoint(p);
  drawCharts();
}

function addPoint(p) {
  const s = state.series;
  s.t.push(p.atMs / 1000);
  s.applied.push(p.appliedPerS);
  s.rejected.push(p.rejectedPerS);
  s.retried.push(p.retriedPerS);
  s.p50.push(p.p50Ms);
  s.p99.push(p.p99Ms);
  s.max.push(p.maxMs);
  if (s.t.length > HISTORY_MAX) for (const key of Object.keys(s)) s[key].shift();
}

function drawCharts() {
  const s = state.series;
  throughputChart.setData([s.t, s.applied, s.rejected, s.retried]);
  latencyChart.setData([s.t, s.p50, s.p99, s.max]);
}

// --- frames: workers, queues, rejects ------------------------------------------------------------

function renderFrame(frame, live) {
  window.txsimDashboard.frames++;
  window.txsimDashboard.lastFrame = frame;
  if (live) {
    addPoint(frame.point);
    drawCharts();
  }
  const t = frame.totals;
  $('kpi-rate').textContent = t.unheard ? '–' : formatNumber(t.ratePerS);
  $('kpi-applied').textContent = formatNumber(t.applied);
  $('kpi-rejected').textContent = formatNumber(t.rejected);
  $('kpi-workers').textContent = `${t.byStatus.active + t.byStatus.idle}/${t.workers}`;
  $('workers-summary').textContent =
    `${t.byStatus.active} active, ${t.byStatus.idle} idle, ${t.byStatus.stale} stale, ${t.byStatus.gone} gone` +
    (frame.broker.state === 'connected' ? '' : ` · broker ${frame.broker.state}`) +
    (frame.broker.detail ? ` · ${frame.broker.detail}` : '') +
    (frame.invalidSnapshots > 0 ? ` · ${frame.invalidSnapshots} invalid snapshots` : '');
  const body = document.querySelector('#workers tbody');
  body.replaceChildren(...frame.workers.map(workerRow));
  if (frame.workers.length === 0)
    body.append(el('tr', {}, el('td', { colspan: 12, class: 'muted' }, 'no worker reports yet (txsim worker publishes every second)')));
  $('workers-total').replaceChildren(...totalCells(t));

  const queues = document.querySelector('#queues tbody');
  // A stale reading (the latest read failed) keeps its depths, dimmed and labelled with its age and the error.
  const stale = Boolean(frame.queues && frame.queuesStale);
  $('queues').classList.toggle('stale', stale);
  $('queues').dataset.stale = String(stale);
  $('queues-source').classList.toggle('stale', stale);
  $('queues-source').textContent = queueSourceText(frame);
  if (frame.queues) {
    queues.replaceChildren(...frame.queues.queues.map(queueRow));
  } else {
    queues.replaceChildren(el('tr', {}, el('td', { colspan: 6, class: 'muted' }, frame.queueError ?? 'reading…')));
  }

  const rejects = $('rejects');
  rejects.replaceChildren(
    ...(frame.rejectReasons.length === 0
      ? [el('li', { class: 'muted' }, 'none')]
      : frame.rejectReasons.map((r) => el('li', { dataset: { reason: r.reason } }, el('b', {}, formatNumber(r.count)), ` ${r.reason}`))),
  );
}

// --- recent transactions -------------------------------------------------------------------------

function onTransactions(events, dropped) {
  for (const e of events) if (state.account !== null && e.accountId === state.account.id) onAccountEvent(e);
  if (state.paused) {
    state.held.push(...events);
    if (state.held.length > HELD_MAX) state.held.splice(0, state.held.length - HELD_MAX);
    $('recent-held').textContent = `paused · ${state.held.length} new`;
    return;
  }
  addRecent(events);
  $('recent-held').textContent = dropped > 0 ? `${dropped} skipped in the last batch (too many to show)` : '';
}

/** An outcome after which nothing more happens to a transaction (the server's FINAL_STATES). */
function isFinal(event) {
  return event === 'applied' || event === 'rejected';
}

function addRecent(events) {
  const body = document.querySelector('#recent tbody');
  for (const e of events) {
    let row = state.recentRows.get(e.transactionId);
    if (row) {
      // An event that arrives after the outcome must not hide it: the feed's events come from different
      // publishers (a worker's stage events, the relay's outcomes, replay-dead's queued), in no fixed order.
      if (!isFinal(e.event) && isFinal(row.dataset.outcome)) continue;
      row.replaceChildren(...recentCells(e));
      row.dataset.outcome = e.event;
      continue;
    }
    row = el('tr', { dataset: { id: e.transactionId, outcome: e.event } }, ...recentCells(e));
    if (e.transactionId === state.selectedTx) row.classList.add('selected');
    body.prepend(row);
    state.recentRows.set(e.transactionId, row);
  }
  while (body.rows.length > RECENT_MAX) {
    const last = body.rows[body.rows.length - 1];
    state.recentRows.delete(last.dataset.id);
    last.remove();
  }
}

$('pause').addEventListener('click', () => {
  state.paused = !state.paused;
  $('pause').textContent = state.paused ? 'Resume' : 'Pause';
  $('pause').setAttribute('aria-pressed', String(state.paused));
  if (!state.paused) {
    addRecent(state.held);
    state.held = [];
    $('recent-held').textContent = '';
  } else {
    $('recent-held').textContent = 'paused · 0 new';
  }
});

document.querySelector('#recent tbody').addEventListener('click', (event) => {
  const row = event.target.closest('tr[data-id]');
  if (row) showTransaction(row.dataset.id);
});

async function showTransaction(id) {
  state.selectedTx = id;
  for (const r of document.querySelectorAll('#recent tr.selected')) r.classList.remove('selected');
  state.recentRows.get(id)?.classList.add('selected');
  const detail = $('tx-detail');
  detail.className = '';
  detail.replaceChildren(el('span', { class: 'muted' }, 'loading…'));
  try {
    const response = await fetch(`/v1/transactions/${encodeURIComponent(id)}`, { headers: authHeaders(), cache: 'no-store' });
    const body = await response.json();
    if (state.selectedTx !== id) return;
    if (!response.ok)
      return detail.replaceChildren(el('span', { class: 'outcome-rejected' }, body.error?.message ?? `HTTP ${response.status}`));
    detail.replaceChildren(...transactionDetail(body));
    detail.dataset.id = id;
    detail.dataset.status = body.status;
  } catch (err) {
    detail.replaceChildren(el('span', { class: 'outcome-rejected' }, `could not load: ${err.message}`));
  }
}

// --- account view --------------------------------------------------------------------------------

$('account-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const id = Number($('account-id').value);
  if (Number.isSafeInteger(id) && id >= 1) void showAccount(id);
});

async function showAccount(id) {
  const view = $('account-view');
  view.hidden = false;
  $('account-summary').textContent = 'loading…';
  $('account-live').replaceChildren(el('li', { class: 'muted' }, 'waiting for its transactions…'));
  try {
    const [account, statement] = await Promise.all([
      fetch(`/v1/accounts/${id}`, { headers: authHeaders(), cache: 'no-store' }).then((r) => r.json().then((b) => ({ ok: r.ok, b }))),
      fetch(`/v1/accounts/${id}/statement?limit=10`, { headers: authHeaders(), cache: 'no-store' }).then((r) => r.json()),
    ]);
    if (!account.ok) {
      state.account = null;
      $('account-summary').textContent = account.b.error?.message ?? 'not found';
      document.querySelector('#statement tbody').replaceChildren();
      return;
    }
    state.account = account.b;
    renderAccountSummary();
    const lines = statement.items ?? [];
    document
      .querySelector('#statement tbody')
      .replaceChildren(
        ...(lines.length > 0
          ? lines.map(statementRow)
          : [el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'no statement lines yet (txsim accounting consume writes them)'))]),
      );
  } catch (err) {
    $('account-summary').textContent = `could not load: ${err.message}`;
  }
}

function renderAccountSummary() {
  const a = state.account;
  const c = a.counts ?? {};
  $('account-summary').replaceChildren(
    el('b', {}, `#${a.id} ${a.name ?? ''}`),
    ' balance ',
    el('b', { id: 'account-balance' }, formatMinor(a.balanceMinor, a.currency)),
    ` · applied ${formatNumber(c.applied)} · rejected ${formatNumber(c.rejected)} · pending ${formatNumber(c.pending)}`,
  );
}

function onAccountEvent(e) {
  if (e.event === 'applied' && e.balanceAfterMinor !== null) {
    state.account = { ...state.account, balanceMinor: e.balanceAfterMinor };
    renderAccountSummary();
  }
  const live = $('account-live');
  if (live.firstElementChild?.classList.contains('muted')) live.replaceChildren();
  live.prepend(
    el(
      'li',
      { dataset: { id: e.transactionId, event: e.event } },
      `${formatTime(e.at)} ${e.type ?? ''} ${formatMinor(e.amountMinor, e.currency)} `,
      el('b', { class: `outcome-${e.event}` }, eventLabel(e)),
    ),
  );
  while (live.children.length > 50) live.lastElementChild.remove();
}

// --- start ---------------------------------------------------------------------------------------

state.token = readToken();
void connect();
