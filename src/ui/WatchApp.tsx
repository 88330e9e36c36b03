import { Box, Text, useApp, useInput, useStdin } from 'ink';
import { useReducer } from 'react';
import { sortRows } from '../watch/stats-aggregator.js';
import { Header } from './Header.js';
import { HopLatency } from './HopLatency.js';
import { QueuePanel, queueColumns, queueNote } from './QueuePanel.js';
import { RejectReasons } from './RejectReasons.js';
import { StagePanel } from './StagePanel.js';
import { Throughput } from './Throughput.js';
import { WorkerDetails } from './WorkerDetails.js';
import { WorkersTable, workerColumns } from './WorkersTable.js';
import { ColorContext, colorsAllowed } from './use-color.js';
import { useTerminalSize, type TerminalSize } from './use-terminal-size.js';
import { useWatchData } from './use-watch-data.js';
import {
  hiddenParts,
  initialUiState,
  keyIntent,
  planLayout,
  uiReducer,
  type UiState,
  type WatchData,
  type WatchFeed,
} from './watch-state.js';

export interface WatchAppProps {
  readonly feed: WatchFeed;
  readonly namespace: string;
  /** Endpoints with passwords already redacted. */
  readonly endpoints: { readonly amqp: string; readonly database: string };
  /** When `watch` started, for the uptime in the header. */
  readonly startedAtMs: number;
  /** Fixed size instead of the terminal's (tests). */
  readonly size?: TerminalSize;
  /** Initial UI state (tests start paused, sorted or with a worker selected). */
  readonly initialState?: UiState;
  /** Colours on or off; default: off when NO_COLOR is set (https://no-color.org). */
  readonly colors?: boolean;
}

/**
 * The `txsim watch` screen: header, workers table with totals, throughput sparklines (or the
 * selected worker's details), queue depths, top reject reasons, and a key legend. All data comes
 * from `feed`; this component only lays it out and handles keys.
 */
export function WatchApp({
  feed,
  namespace,
  endpoints,
  startedAtMs,
  size: fixedSize,
  initialState,
  colors = colorsAllowed(process.env),
}: WatchAppProps) {
  const live = useWatchData(feed);
  const [ui, dispatch] = useReducer(uiReducer, initialState ?? initialUiState);
  const data: WatchData = ui.paused && ui.frozen ? ui.frozen : live;
  const size = useTerminalSize(fixedSize);
  const { exit } = useApp();
  const { isRawModeSupported } = useStdin();

  const rows = sortRows(data.stats.rows, ui.sortKey);
  const ids = rows.map((r) => r.workerId);
  const selected = rows.find((r) => r.workerId === ui.selectedId) ?? null;
  const countOf = (role: string) => data.queues?.queues.filter((q) => q.role === role).length ?? 0;
  const counts = {
    workers: rows.length,
    retryQueues: countOf('retry'),
    partitionQueues: countOf('partition'),
    stages: data.stats.stages.length,
    queueNotes: queueNote(data.queues, data.queueError, data.queuesStale ?? false, data.queuesAgeMs ?? null) === null ? 0 : 1,
  };
  const layout = planLayout(size, counts, selected !== null);
  // Below 80 columns whole columns are left out (never cut to a misleading `…`), and the footer names them.
  const droppedColumns = [
    ...workerColumns(layout.wide, size.columns).dropped,
    ...(layout.queueRows === 'none' ? [] : queueColumns(size.columns).dropped.map((c) => `queue ${c}`)),
  ];
  const hidden = [
    ...hiddenParts(layout, counts, selected !== null),
    ...(droppedColumns.length > 0 ? [`columns ${droppedColumns.join('/')}`] : []),
  ];

  // Raw mode (needed for single keys) only exists on a TTY stdin; without it the screen still updates.
  useInput(
    (input, key) => {
      // Keys typed faster than a frame arrive as one chunk ("ssp"): handle each character.
      const intents = input.length > 1 && !key.ctrl && !key.meta ? [...input].map((ch) => keyIntent(ch, {})) : [keyIntent(input, key)];
      for (const intent of intents) {
        switch (intent) {
          case 'quit':
            return exit();
          case 'pause':
            dispatch({ type: 'toggle-pause', data: live });
            break;
          case 'sort':
            dispatch({ type: 'cycle-sort' });
            break;
          case 'next':
            dispatch({ type: 'select-next', ids });
            break;
          case 'prev':
            dispatch({ type: 'select-prev', ids });
            break;
          case 'deselect':
            dispatch({ type: 'deselect' });
            break;
          case null:
            break;
        }
      }
    },
    { isActive: isRawModeSupported === true },
  );

  const gap = layout.gaps ? <Text> </Text> : null;
  const warnings = [
    data.queues?.apiError ? `API: ${data.queues.apiError}` : '',
    data.stats.invalidCount > 0 ? `${data.stats.invalidCount} invalid snapshots ignored` : '',
    isRawModeSupported === true ? '' : 'keys off (stdin is not a terminal)',
  ].filter(Boolean);
  return (
    <ColorContext.Provider value={colors}>
      <Box flexDirection="column" width={size.columns}>
        <Header
          namespace={namespace}
          endpoints={endpoints}
          uptimeMs={data.stats.atMs - startedAtMs}
          broker={data.broker}
          paused={ui.paused}
          sortKey={ui.sortKey}
        />
        {gap}
        <WorkersTable
          rows={rows}
          totals={data.stats.totals}
          selectedId={selected?.workerId ?? null}
          wide={layout.wide}
          rowsMax={layout.workerRowsMax}
          width={size.columns}
        />
        {layout.details && selected ? (
          <>
            {gap}
            <WorkerDetails row={selected} nowMs={data.stats.atMs} columns={size.columns} />
          </>
        ) : layout.sparklines !== 'none' ? (
          <>
            {gap}
            <Throughput
              rows={rows}
              totalHistory={data.stats.totalHistory}
              totalRatePerS={data.stats.totals.unheard ? null : data.stats.totals.ratePerS}
              mode={layout.sparklines}
              columns={size.columns}
            />
          </>
        ) : null}
        {layout.queueRows !== 'none' ? (
          <>
            {gap}
            <QueuePanel
              reading={data.queues}
              error={data.queueError}
              stale={data.queuesStale ?? false}
              ageMs={data.queuesAgeMs ?? null}
              mode={layout.queueRows}
              rowsMax={layout.queueRowsMax}
              width={size.columns}
            />
          </>
        ) : null}
        {gap}
        <RejectReasons reasons={data.stats.rejectReasons} />
        {layout.stages ? <StagePanel stages={data.stats.stages} /> : null}
        {layout.hops ? <HopLatency hops={data.stats.totals.hopsMs} windowS={rows[0]?.latencyWindowS ?? 10} /> : null}
        <Text wrap="truncate" dimColor>
          {hidden.length > 0 ? `hidden: ${hidden.join(', ')} (too small) · ` : ''}
          {`q quit  p ${ui.paused ? 'resume' : 'pause'}  s sort (${ui.sortKey})  ↑↓ ${selected ? 'select' : 'details'}${selected ? '  esc close' : ''}`}
          {warnings.length > 0 ? `  ${warnings.join('  ')}` : ''}
        </Text>
      </Box>
    </ColorContext.Provider>
  );
}
