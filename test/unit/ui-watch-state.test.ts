import { describe, expect, it } from 'vitest';
import { emptyStats, viewOf } from '../../src/watch/stats-aggregator.js';
import { initialUiState, keyIntent, planLayout, uiReducer, type WatchData } from '../../src/ui/watch-state.js';

const data: WatchData = { stats: viewOf(emptyStats(), 0), queues: null, queueError: null, broker: { state: 'connected', detail: null } };

describe('uiReducer', () => {
  it('pause freezes the data shown; resume lets go of it', () => {
    const paused = uiReducer(initialUiState, { type: 'toggle-pause', data });
    expect(paused).toMatchObject({ paused: true, frozen: data });
    expect(uiReducer(paused, { type: 'toggle-pause', data })).toMatchObject({ paused: false, frozen: null });
  });

  it('cycles the sort key', () => {
    const once = uiReducer(initialUiState, { type: 'cycle-sort' });
    expect(once.sortKey).toBe('rate');
    expect(uiReducer(once, { type: 'cycle-sort' }).sortKey).toBe('applied');
  });

  it('arrows select by id, stop at the ends, and start from the top (down) or bottom (up)', () => {
    const ids = ['w1', 'w2', 'w3'];
    let s = uiReducer(initialUiState, { type: 'select-next', ids });
    expect(s.selectedId).toBe('w1');
    s = uiReducer(uiReducer(uiReducer(s, { type: 'select-next', ids }), { type: 'select-next', ids }), { type: 'select-next', ids });
    expect(s.selectedId).toBe('w3');
    s = uiReducer(s, { type: 'select-prev', ids });
    expect(s.selectedId).toBe('w2');
    expect(uiReducer(initialUiState, { type: 'select-prev', ids }).selectedId).toBe('w3');
    // The order changed (re-sorted): the same worker stays selected and moves from where it is now.
    expect(uiReducer(s, { type: 'select-next', ids: ['w2', 'w3', 'w1'] }).selectedId).toBe('w3');
    expect(uiReducer(s, { type: 'deselect' }).selectedId).toBeNull();
    expect(uiReducer(s, { type: 'select-next', ids: [] }).selectedId).toBeNull();
  });
});

describe('keyIntent', () => {
  it('maps the documented keys', () => {
    expect(keyIntent('q', {})).toBe('quit');
    expect(keyIntent('c', { ctrl: true })).toBe('quit');
    expect(keyIntent('p', {})).toBe('pause');
    expect(keyIntent('s', {})).toBe('sort');
    expect(keyIntent('', { downArrow: true })).toBe('next');
    expect(keyIntent('', { upArrow: true })).toBe('prev');
    expect(keyIntent('', { escape: true })).toBe('deselect');
    expect(keyIntent('x', {})).toBeNull();
  });
});

describe('planLayout', () => {
  it('fits three workers and everything else into 80×24, keeping a line free', () => {
    const l = planLayout({ columns: 80, rows: 24 }, { workers: 3, retryQueues: 4 }, false);
    expect(l).toMatchObject({ wide: false, workerRowsMax: 3, sparklines: 'each', queueRows: 'merged' });
  });

  it('uses the room of a big terminal: wide columns, every retry step, spacing', () => {
    expect(planLayout({ columns: 160, rows: 50 }, { workers: 3, retryQueues: 4 }, false)).toEqual({
      wide: true,
      workerRowsMax: 3,
      sparklines: 'each',
      queueRows: 'each',
      details: false,
      gaps: true,
      hops: true,
    });
  });

  it('shows the hop latency line only in a line left over', () => {
    // Twenty workers in 12 rows: worker rows are cut to fill the frame, no line is left over.
    expect(planLayout({ columns: 80, rows: 12 }, { workers: 20, retryQueues: 4 }, false).hops).toBeUndefined();
    expect(planLayout({ columns: 80, rows: 40 }, { workers: 3, retryQueues: 4 }, false).hops).toBe(true);
  });

  it('gives up spacing and per-worker sparklines before worker rows', () => {
    const l = planLayout({ columns: 80, rows: 24 }, { workers: 8, retryQueues: 4 }, false);
    expect(l.workerRowsMax).toBe(8);
    expect(l.sparklines).not.toBe('each');
    expect(l.gaps).toBe(false);
  });

  it('cuts worker rows only when nothing else is left to give', () => {
    const l = planLayout({ columns: 80, rows: 24 }, { workers: 40, retryQueues: 4 }, false);
    expect(l.queueRows).toBe('none');
    expect(l.workerRowsMax).toBeLessThan(40);
    expect(l.workerRowsMax).toBeGreaterThan(10);
  });

  it('shows the details pane at 80×24', () => {
    expect(planLayout({ columns: 80, rows: 24 }, { workers: 3, retryQueues: 4 }, true).details).toBe(true);
  });
});
