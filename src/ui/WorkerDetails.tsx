import { Box, Text } from 'ink';
import type { WorkerRow } from '../watch/stats-aggregator.js';
import type { LatencySummary } from '../stats/snapshot.js';
import { inFlightText, STATUS_COLOR } from './WorkersTable.js';
import { formatAgo, formatDuration, formatMs, formatRate, sparkline } from './text.js';
import { useColor } from './use-color.js';

export interface WorkerDetailsProps {
  readonly row: WorkerRow;
  readonly nowMs: number;
  readonly columns: number;
}

function latencyLine(label: string, l: LatencySummary, windowS: number): string {
  if (l.count === 0) return `${label}  no messages in the last ${windowS} s`;
  return `${label}  p50 ${formatMs(l.p50)}  p90 ${formatMs(l.p90)}  p99 ${formatMs(l.p99)}  max ${formatMs(l.max)}  (n=${l.count}, last ${windowS} s)`;
}

/** Everything one worker reported, for the worker selected with the arrow keys (DETAILS_LINES lines). */
export function WorkerDetails({ row: r, nowMs, columns }: WorkerDetailsProps) {
  const color = useColor();
  const reasons = Object.entries(r.rejectedByReason)
    .filter(([, n]) => n > 0)
    .map(([reason, n]) => `${reason} ${n}`)
    .join(', ');
  const flags = [r.blocked ? 'BLOCKED by broker' : '', r.paused ? 'PAUSED: database down' : ''].filter(Boolean).join(' ');
  return (
    <Box flexDirection="column">
      <Text wrap="truncate">
        <Text bold>{`▸ ${r.workerId} `}</Text>
        <Text color={color(r.unheard ? 'yellow' : STATUS_COLOR[r.status])}>
          {r.unheard ? `? (was ${r.status}; watch cannot hear)` : r.status}
        </Text>
        {`  ${r.host} pid ${r.pid}  up ${formatDuration(nowMs - r.startedAtMs)}  seen ${formatAgo(r.lastSeenAgoMs)} ago  in-flight ${inFlightText(r)}  `}
        <Text color={color('magenta')}>{flags}</Text>
      </Text>
      <Text wrap="truncate">{`  applied ${r.applied}  rejected ${r.rejected}${reasons ? ` (${reasons})` : ''}  retried ${r.retried}  parked ${r.parked}  duplicates ${r.duplicates}${r.restarts > 0 ? `  (${r.restarts} earlier ${r.restarts === 1 ? 'process' : 'processes'} included)` : ''}`}</Text>
      <Text wrap="truncate">
        {`  tx/s ${formatRate(r.ratePerS)} (1 s)  ${formatRate(r.rate10sPerS)} (10 s)  `}
        <Text color={color('cyan')}>{sparkline(r.history, Math.max(10, columns - 40))}</Text>
      </Text>
      <Text wrap="truncate">{`  ${r.status === 'gone' ? 'created→committed ms    - (worker gone: no live latency)' : r.unheard ? 'created→committed ms    - (watch cannot hear the workers)' : latencyLine('created→committed ms  ', r.endToEndMs, r.latencyWindowS)}`}</Text>
      <Text wrap="truncate">{`  ${r.status === 'gone' || r.unheard ? 'delivered→committed ms  -' : latencyLine('delivered→committed ms', r.processingMs, r.latencyWindowS)}`}</Text>
      <Text wrap="truncate" color={color(r.lastError ? 'red' : undefined)} dimColor={!r.lastError}>
        {r.lastError
          ? `  last error ${formatAgo(Math.max(0, nowMs - r.lastError.atMs))} ago: ${r.lastError.message}`
          : '  last error: none'}
      </Text>
    </Box>
  );
}
