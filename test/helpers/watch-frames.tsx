import { render } from 'ink-testing-library';
import type { QueueDepth, QueueReading } from '../../src/watch/queue-depths.js';
import { WatchApp } from '../../src/ui/WatchApp.js';
import { initialUiState } from '../../src/ui/watch-state.js';
import { WatchFeedStore } from '../../src/watch/watch.js';
import { snapshot } from '../unit/stats-fixtures.js';

/**
 * The frame setup the `watch` UI tests share: a store fed by workers w1..wN on a fake clock, a
 * management-API queue reading, and `frameOf` to render the app at a given terminal size. Each test
 * file calls `afterEach(unmountFrame)`, so no Ink instance outlives its test.
 */

export const ENDPOINTS = { amqp: 'amqp://guest:***@127.0.0.1:5672', database: 'mysql://root@127.0.0.1:3306/txsim' };
export const START_MS = 1_000_000;
export const STALENESS = { staleAfterMs: 3_000, goneAfterMs: 15_000, forgetAfterMs: 300_000 } as const;

/** The figures every queue of a reading shares (the tests assert on them, so each file picks its own). */
export type QueueFigures = Pick<QueueDepth, 'unacked' | 'consumers' | 'inPerS' | 'outPerS'>;

/** A management-API reading taken at START_MS of `[name, role, ready]` queues, all with the same `figures`. */
export function queueReading(queues: readonly (readonly [string, QueueDepth['role'], number])[], figures: QueueFigures): QueueReading {
  return {
    source: 'management-api',
    atMs: START_MS,
    apiError: null,
    queues: queues.map(([name, role, ready]) => ({ name, role, exists: true, ready, ...figures })),
  };
}

export interface WatchStoreOptions {
  /** Workers w1..wN (default 3). */
  readonly workers?: number;
  /** Ids whose last snapshot says goodbye (a clean stop). */
  readonly gone?: readonly string[];
  readonly reading: QueueReading;
}

/**
 * Workers w1..wN reporting for three seconds (one snapshot a second each, in-flight 7 of 50), then
 * the queues read and the broker connected. `advance` moves the store's clock on, `at` reads it.
 */
export function watchStore(options: WatchStoreOptions) {
  const { workers = 3, gone = [], reading } = options;
  let nowMs = START_MS + 60_000;
  const store = new WatchFeedStore(STALENESS, () => nowMs);
  for (let seq = 1; seq <= 3; seq++) {
    for (let i = 1; i <= workers; i++) {
      const id = `w${i}`;
      store.onSnapshot(snapshot(id, { seq, inFlight: 7, prefetchCount: 50, stopping: seq === 3 && gone.includes(id) }), nowMs);
    }
    store.refresh();
    nowMs += 1_000;
  }
  store.setQueues(reading, null);
  store.setBroker('connected');
  store.refresh();
  return { store, advance: (ms: number) => void (nowMs += ms), at: () => nowMs };
}

let unmountLast: (() => void) | null = null;

/** Unmounts the frame rendered last, if any (use as `afterEach(unmountFrame)`, or between two renders). */
export function unmountFrame(): void {
  unmountLast?.();
  unmountLast = null;
}

/** Renders the app for `feed` at `size` and returns its last frame; `colors` and `selectedId` as the app takes them. */
export function frameOf(
  feed: WatchFeedStore,
  size: { columns: number; rows: number } = { columns: 80, rows: 30 },
  extra: { colors?: boolean; selectedId?: string } = {},
): string {
  unmountFrame();
  const r = render(
    <WatchApp
      feed={feed}
      namespace="txsim"
      endpoints={ENDPOINTS}
      startedAtMs={START_MS}
      size={size}
      colors={extra.colors}
      initialState={{ ...initialUiState, selectedId: extra.selectedId ?? null }}
    />,
  );
  unmountLast = r.unmount;
  return r.lastFrame()!;
}
