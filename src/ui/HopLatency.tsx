import { Text } from 'ink';
import type { Hop } from '../stats/hops.js';
import type { MergedLatency } from '../watch/stats-aggregator.js';
import { hopLatencyText } from './text.js';

export interface HopLatencyProps {
  readonly hops: Readonly<Partial<Record<Hop, MergedLatency>>>;
  readonly windowS: number;
}

/** Where the time goes, over the live workers' last window: one line of per-hop p50/p99. */
export function HopLatency({ hops, windowS }: HopLatencyProps) {
  const text = hopLatencyText(hops);
  return (
    <Text wrap="truncate">
      <Text bold>{`hops p50/p99 ms (${windowS} s)  `}</Text>
      {text === '' ? <Text dimColor>no messages</Text> : text}
    </Text>
  );
}
