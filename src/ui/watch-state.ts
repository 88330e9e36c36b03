import type { QueueReading } from '../watch/queue-depths.js';
import { nextSortKey, type SortKey, type StatsView } from '../watch/stats-aggregator.js';

/**
 * UI state of `watch` as a reducer: pure functions from (state, action) to state, tested without
 * rendering. The data itself (snapshots, queue depths) is not UI state: it arrives through a
 * `WatchFeed`; the UI only decides how to show it (paused, sort key, selected worker).
 */

/** Everything one frame shows. Built outside src/ui (the command wires the broker to it). */
export interface WatchData {
  readonly stats: StatsView;
  /** Latest queue reading; null until the first one arrives. Its rates are null while it is stale. */
  readonly queues: QueueReading | null;
  /** Why the latest queue read failed (neither the API nor AMQP answered); null when it succeeded. */
  readonly queueError: string | null;
  /** The reading shown is old (the latest read failed, or none succeeded for a while): not current. */
  readonly queuesStale?: boolean;
  /** How old the reading shown is, in ms; null without one. */
  readonly queuesAgeMs?: number | null;
  readonly broker: { readonly state: 'connecting' | 'connected' | 'reconnecting'; readonly detail: string | null };
}

/** A source of frames: `watch` subscribes once and re-renders on every change. */
export interface WatchFeed {
  subscribe(listener: () => void): () => void;
  getData(): WatchData;
}

export interface UiState {
  readonly paused: boolean;
  /** The data shown while paused (refreshes keep arriving, they are just not shown). */
  readonly frozen: WatchData | null;
  readonly sortKey: SortKey;
  /** Selected worker, by id so that re-sorting keeps it selected; null = no details pane. */
  readonly selectedId: string | null;
}

export type UiAction =
  | { readonly type: 'toggle-pause'; readonly data: WatchData }
  | { readonly type: 'cycle-sort' }
  | { readonly type: 'select-next'; readonly ids: readonly string[] }
  | { readonly type: 'select-prev'; readonly ids: readonly string[] }
  | { readonly type: 'deselect' };

export const initialUiState: UiState = { paused: false, frozen: null, sortKey: 'id', selectedId: null };

export function uiReducer(state: UiState, action: UiAction): UiState {
  switch (action.type) {
    case 'toggle-pause':
      return state.paused ? { ...state, paused: false, frozen: null } : { ...state, paused: true, frozen: action.data };
    case 'cycle-sort':
      return { ...state, sortKey: nextSortKey(state.sortKey) };
    case 'select-next':
    case 'select-prev': {
      if (action.ids.length === 0) return { ...state, selectedId: null };
      const at = state.selectedId === null ? -1 : action.ids.indexOf(state.selectedId);
      // Nothing selected (or the selected worker was forgotten): start from the top or the bottom.
      if (at === -1) return { ...state, selectedId: action.type === 'select-next' ? action.ids[0]! : action.ids[action.ids.length - 1]! };
      const step = action.type === 'select-next' ? 1 : -1;
      const next = Math.min(action.ids.length - 1, Math.max(0, at + step));
      return { ...state, selectedId: action.ids[next]! };
    }
    case 'deselect':
      return { ...state, selectedId: null };
  }
}

/** Keys of the TUI; the input names follow Ink's `useInput` (`input` text plus key flags). */
export type KeyIntent = 'quit' | 'pause' | 'sort' | 'next' | 'prev' | 'deselect' | null;

export function keyIntent(input: string, key: { upArrow?: boolean; downArrow?: boolean; escape?: boolean; ctrl?: boolean }): KeyIntent {
  if (input === 'q' || (key.ctrl && input === 'c')) return 'quit';
  if (input === 'p' || input === ' ') return 'pause';
  if (input === 's') return 'sort';
  if (key.downArrow || input === 'j') return 'next';
  if (key.upArrow || input === 'k') return 'prev';
  if (key.escape) return 'deselect';
  return null;
}

/** How much of each panel fits the terminal. */
export interface Layout {
  /** Wide terminals get extra table columns (10 s rate, duplicates, in-flight, processing p99). */
  readonly wide: boolean;
  /** Worker rows shown; the rest are summarised as "… N more". */
  readonly workerRowsMax: number;
  readonly sparklines: 'each' | 'total' | 'none';
  /** 'each' lists every retry step; 'merged' sums them into one row. */
  readonly queueRows: 'each' | 'merged' | 'none';
  /** Queue rows shown when not all fit (the most important queues first); undefined: all of them. */
  readonly queueRowsMax?: number;
  readonly details: boolean;
  /** Blank lines between panels. */
  readonly gaps: boolean;
  /** The per-hop latency line: the least important, shown only in a line nothing else needs. */
  readonly hops?: boolean;
  /** The processing stages line (workers run with `--stage`): like the hop line, only in a spare line. */
  readonly stages?: boolean;
}

/** Widths at or above this get the wide table. */
export const WIDE_COLUMNS_MIN = 120;

/** Height of the details pane in lines. */
export const DETAILS_LINES = 6;

/** What the layout has to fit: worker rows, queue rows by kind, stage lines. */
export interface LayoutCounts {
  readonly workers: number;
  readonly retryQueues: number;
  /** Partition queues of an ordered namespace: one summed row when any. */
  readonly partitionQueues?: number;
  readonly stages?: number;
  /** A note line under the queue panel's title (a stale reading or a failed read): 0 or 1. */
  readonly queueNotes?: number;
}

/**
 * Fits the panels into the terminal, giving up the least important things first: spacing, the
 * per-step retry rows, per-worker sparklines, then worker rows. One line is kept free: Ink clears
 * the whole screen (and flickers) when a frame is as tall as the terminal.
 */
export function planLayout(size: { columns: number; rows: number }, counts: LayoutCounts, detailsOpen: boolean): Layout {
  const budget = Math.max(8, size.rows - 1);
  const wide = size.columns >= WIDE_COLUMNS_MIN;
  const heightOf = (l: Layout): number => {
    const shownWorkers = Math.min(counts.workers, l.workerRowsMax);
    const more = counts.workers > shownWorkers ? 1 : 0;
    const table = 1 + Math.max(1, shownWorkers) + more + 1;
    const sparks = l.details ? 0 : l.sparklines === 'each' ? 1 + counts.workers : l.sparklines === 'total' ? 1 : 0;
    const details = l.details ? DETAILS_LINES : 0;
    const queues =
      l.queueRows === 'none'
        ? 0
        : 1 +
          (counts.queueNotes ?? 0) +
          Math.min(l.queueRowsMax ?? Infinity, queueBodyRows(l.queueRows, counts.retryQueues, counts.partitionQueues));
    const sections = [table, sparks + details, queues, 1].filter((h) => h > 0).length;
    const gaps = l.gaps ? sections : 0;
    // header 2 + table + sparklines/details + queues + reject reasons 1 + hop latency 0/1 + footer 1
    return 2 + table + sparks + details + queues + 1 + (l.hops ? 1 : 0) + (l.stages ? 1 : 0) + 1 + gaps;
  };
  const candidates: Layout[] = [
    { wide, workerRowsMax: counts.workers, sparklines: 'each', queueRows: 'each', details: detailsOpen, gaps: true },
    { wide, workerRowsMax: counts.workers, sparklines: 'each', queueRows: 'merged', details: detailsOpen, gaps: true },
    { wide, workerRowsMax: counts.workers, sparklines: 'each', queueRows: 'merged', details: detailsOpen, gaps: false },
    { wide, workerRowsMax: counts.workers, sparklines: 'total', queueRows: 'merged', details: detailsOpen, gaps: false },
    { wide, workerRowsMax: counts.workers, sparklines: 'none', queueRows: 'merged', details: detailsOpen, gaps: false },
  ];
  // The hop line gets a line left over once everything else is placed.
  // The stages line (when some worker has stages) gets a line left over first: a user who configured
  // stages came to see them; the hop line gets the next one.
  const withHops = (l: Layout): Layout => {
    const staged = (counts.stages ?? 0) > 0 && heightOf({ ...l, stages: true }) <= budget ? { ...l, stages: true } : l;
    return heightOf({ ...staged, hops: true }) <= budget ? { ...staged, hops: true } : staged;
  };
  for (const c of candidates) if (heightOf(c) <= budget) return withHops(c);
  // Still too tall: drop the details pane (when open), then the queue panel, then cut worker rows.
  const last = candidates[candidates.length - 1]!;
  let fallback: Layout =
    detailsOpen && heightOf({ ...last, details: false, sparklines: 'total' }) <= budget
      ? { ...last, details: false, sparklines: 'total' }
      : { ...last, queueRows: 'none' };
  const cutWorkerRows = () => {
    while (heightOf(fallback) > budget && fallback.workerRowsMax > 1) fallback = { ...fallback, workerRowsMax: fallback.workerRowsMax - 1 };
  };
  cutWorkerRows();
  // Even one worker row does not leave room for the details pane: close it rather than overflow.
  if (heightOf(fallback) > budget && fallback.details) {
    fallback = { ...fallback, details: false, workerRowsMax: counts.workers };
    cutWorkerRows();
  }
  // Dropping a whole panel can free more rows than were missing: give them back, the queues first
  // (the backlog is what an operator looks for), then the total throughput line.
  const free = () => budget - heightOf(fallback);
  const queueHeadLines = 1 + (counts.queueNotes ?? 0);
  if (fallback.queueRows === 'none' && free() >= queueHeadLines + 1) {
    fallback = {
      ...fallback,
      queueRows: 'merged',
      queueRowsMax: Math.min(queueBodyRows('merged', counts.retryQueues, counts.partitionQueues), free() - queueHeadLines),
    };
  }
  if (!fallback.details && fallback.sparklines === 'none' && free() >= 1) fallback = { ...fallback, sparklines: 'total' };
  return withHops(fallback);
}

/**
 * Rows of the queue panel below its title: process, errors, dead, accounting, the retry steps, and
 * one row for the partitions of an ordered namespace (always summed).
 */
export function queueBodyRows(mode: 'each' | 'merged', retryQueues: number, partitionQueues = 0): number {
  return 4 + Math.min(1, partitionQueues) + (mode === 'each' ? retryQueues : Math.min(1, retryQueues));
}

/**
 * What a layout leaves out that a taller terminal would show, for the footer to say (worker rows
 * cut are said by the table itself: "… N more").
 */
export function hiddenParts(l: Layout, counts: LayoutCounts, detailsOpen: boolean): string[] {
  const hidden: string[] = [];
  if ((counts.stages ?? 0) > 0 && !l.stages) hidden.push('stages');
  if (detailsOpen && !l.details) hidden.push('details');
  if (!l.details && l.sparklines === 'none') hidden.push('throughput');
  else if (!l.details && l.sparklines === 'total' && counts.workers > 1) hidden.push('worker sparklines');
  if (l.queueRows === 'none') hidden.push('queues');
  else if (l.queueRowsMax !== undefined) {
    const cut = queueBodyRows(l.queueRows, counts.retryQueues, counts.partitionQueues) - l.queueRowsMax;
    if (cut > 0) hidden.push(`${cut} queue ${cut === 1 ? 'row' : 'rows'}`);
  }
  return hidden;
}
