import { Text, Box } from 'ink';
import type { SortKey } from '../watch/stats-aggregator.js';
import { formatDuration } from './text.js';
import { useColor } from './use-color.js';
import type { WatchData } from './watch-state.js';

export interface HeaderProps {
  readonly namespace: string;
  /** Endpoints with passwords already redacted. */
  readonly endpoints: { readonly amqp: string; readonly database: string };
  readonly uptimeMs: number;
  readonly broker: WatchData['broker'];
  readonly paused: boolean;
  readonly sortKey: SortKey;
}

const BROKER_COLOR = { connecting: 'yellow', connected: 'green', reconnecting: 'red' } as const;

/** Two lines: what is being watched and for how long, then where (broker and database, no passwords). */
export function Header({ namespace, endpoints, uptimeMs, broker, paused, sortKey }: HeaderProps) {
  const color = useColor();
  return (
    <Box flexDirection="column">
      <Text wrap="truncate">
        <Text bold>txsim watch</Text>
        {`  ns ${namespace}  up ${formatDuration(uptimeMs)}  sort ${sortKey}  broker `}
        <Text color={color(BROKER_COLOR[broker.state])}>{broker.state}</Text>
        {broker.detail ? ` (${broker.detail})` : ''}
        {paused ? '  ' : ''}
        {paused ? <Text inverse>{' PAUSED '}</Text> : ''}
      </Text>
      <Text wrap="truncate" dimColor>{`amqp ${endpoints.amqp}  db ${endpoints.database}`}</Text>
    </Box>
  );
}
