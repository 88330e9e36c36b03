import { Box, Text } from 'ink';
import type { WorkerRow } from '../watch/stats-aggregator.js';
import { STATUS_COLOR } from './WorkersTable.js';
import { cell, formatRate, sparkline } from './text.js';
import { useColor } from './use-color.js';

export interface ThroughputProps {
  readonly rows: readonly WorkerRow[];
  readonly totalHistory: readonly number[];
  /** Null while watch cannot hear the workers (no current rate). */
  readonly totalRatePerS: number | null;
  /** 'each': the total and one line per worker; 'total': the total only. */
  readonly mode: 'each' | 'total';
  readonly columns: number;
}

const LABEL_WIDTH = 10;
const VALUE_WIDTH = 13;

/**
 * Throughput sparklines, one sample per second, newest on the right. Worker lines share one scale
 * (so a slow worker looks slow next to the others); the total has its own.
 */
export function Throughput({ rows, totalHistory, totalRatePerS, mode, columns }: ThroughputProps) {
  const color = useColor();
  const width = Math.max(10, columns - LABEL_WIDTH - VALUE_WIDTH - 3);
  const workerMax = Math.max(0, ...rows.flatMap((r) => r.history.slice(-width)));
  return (
    <Box flexDirection="column">
      <Text wrap="truncate">
        {`${cell('total', LABEL_WIDTH)} `}
        <Text color={color('cyan')}>{sparkline(totalHistory, width)}</Text>
        {` ${cell(`${formatRate(totalRatePerS)} tx/s`, VALUE_WIDTH, 'right')}`}
      </Text>
      {mode === 'each'
        ? rows.map((r) => (
            <Text key={r.workerId} wrap="truncate" dimColor={r.status === 'gone'}>
              {`${cell(r.workerId, LABEL_WIDTH)} `}
              <Text color={color(STATUS_COLOR[r.status])}>{sparkline(r.history, width, workerMax)}</Text>
              {` ${cell(`${formatRate(r.ratePerS)} tx/s`, VALUE_WIDTH, 'right')}`}
            </Text>
          ))
        : null}
    </Box>
  );
}
