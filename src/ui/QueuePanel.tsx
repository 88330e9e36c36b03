import { Box, Text } from 'ink';
import type { QueueDepth, QueueReading } from '../watch/queue-depths.js';
import { cell, formatCount, formatRate } from './text.js';
import { useColor } from './use-color.js';

export interface QueuePanelProps {
  readonly reading: QueueReading | null;
  readonly error: string | null;
  /** 'each' lists every retry step; 'merged' sums them into one row. Partitions are always summed. */
  readonly mode: 'each' | 'merged';
  /** Most queue rows shown, the most important first (a small terminal); undefined: all. */
  readonly rowsMax?: number;
}

/** Which queues stay when not all fit: the backlog first, then where failures pile up. */
const ROLE_PRIORITY: readonly QueueDepth['role'][] = ['partition', 'process', 'errors', 'dead', 'retry', 'accounting'];

/** At most `rowsMax` queues, chosen by role priority, kept in their usual order. */
export function mostImportantQueues(queues: readonly QueueDepth[], rowsMax: number | undefined): QueueDepth[] {
  if (rowsMax === undefined || queues.length <= rowsMax) return [...queues];
  const keep = new Set(
    [...queues].sort((a, b) => ROLE_PRIORITY.indexOf(a.role) - ROLE_PRIORITY.indexOf(b.role)).slice(0, Math.max(0, rowsMax)),
  );
  return queues.filter((q) => keep.has(q));
}

/** What the title says about where the numbers come from. */
export function sourceLabel(reading: QueueReading | null): string {
  if (!reading) return 'queues (reading…)';
  return reading.source === 'management-api' ? 'queues via management API' : 'queues via AMQP (API down)';
}

const LABEL_WIDTH = 26;
const COLUMNS = [
  { title: 'ready', width: 8 },
  { title: 'unacked', width: 8 },
  { title: 'in/s', width: 7 },
  { title: 'out/s', width: 7 },
  { title: 'consumers', width: 9 },
] as const;

/** `process`, `errors`…; a retry step by its delay (`retry 250ms`), a partition by its number; merged rows by their count. */
function labelOf(q: QueueDepth): string {
  if (q.role !== 'retry' && q.role !== 'partition') return q.role;
  // A merged row's name (`retry ×4`) has no dot; a queue's always does.
  const dot = q.name.lastIndexOf('.');
  return dot === -1 ? q.name : `${q.role} ${q.name.slice(dot + 1)}`;
}

/** Sums the queues of one role into one row (a compact layout has no room for four retry steps, none for 64 partitions). */
export function mergeRole(queues: readonly QueueDepth[], role: 'retry' | 'partition'): QueueDepth[] {
  const members = queues.filter((q) => q.role === role);
  if (members.length <= 1) return [...queues];
  const add = (f: (q: QueueDepth) => number | null) => {
    const values = members.map(f);
    return values.every((v) => v === null) ? null : values.reduce<number>((a, v) => a + (v ?? 0), 0);
  };
  const merged: QueueDepth = {
    name: `${role === 'retry' ? 'retry' : 'partitions'} ×${members.length}`,
    role,
    exists: members.some((q) => q.exists),
    ready: add((q) => q.ready),
    unacked: add((q) => q.unacked),
    consumers: add((q) => q.consumers),
    inPerS: add((q) => q.inPerS),
    outPerS: add((q) => q.outPerS),
  };
  const at = queues.indexOf(members[0]!);
  return [...queues.slice(0, at), merged, ...queues.slice(at).filter((q) => q.role !== role)];
}

/**
 * Queue depths and rates of the namespace's queues. Without the management API, unacked counts
 * and rates are unknown and shown as '-', and the title says so.
 */
export function QueuePanel({ reading, error, mode, rowsMax }: QueuePanelProps) {
  const color = useColor();
  const partitionsMerged = reading ? mergeRole(reading.queues, 'partition') : [];
  const queues = mostImportantQueues(mode === 'merged' ? mergeRole(partitionsMerged, 'retry') : partitionsMerged, rowsMax);
  const num = (n: number | null) => (n === null ? '-' : formatCount(n));
  const rate = (n: number | null) => (n === null ? '-' : formatRate(n));
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate">
        {cell(sourceLabel(reading), LABEL_WIDTH)}
        {COLUMNS.map((c) => ` ${cell(c.title, c.width, 'right')}`).join('')}
      </Text>
      {error && !reading ? <Text color={color('red')} wrap="truncate">{`  ${error}`}</Text> : null}
      {queues.map((q) => (
        <Text key={q.name} wrap="truncate" dimColor={!q.exists}>
          {cell(`  ${labelOf(q)}${q.exists ? '' : ' (missing)'}`, LABEL_WIDTH)}
          {[num(q.ready), num(q.unacked), rate(q.inPerS), rate(q.outPerS), num(q.consumers)]
            .map((v, i) => ` ${cell(v, COLUMNS[i]!.width, 'right')}`)
            .join('')}
        </Text>
      ))}
    </Box>
  );
}
