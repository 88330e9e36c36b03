import { Box, Text } from 'ink';
import type { QueueDepth, QueueReading } from '../watch/queue-depths.js';
import { cell, formatAgo, formatCount, formatRate } from './text.js';
import { useColor } from './use-color.js';

export interface QueuePanelProps {
  readonly reading: QueueReading | null;
  readonly error: string | null;
  /** 'each' lists every retry step; 'merged' sums them into one row. Partitions are always summed. */
  readonly mode: 'each' | 'merged';
  /** Most queue rows shown, the most important first (a small terminal); undefined: all. */
  readonly rowsMax?: number;
  /** The reading is old (the latest read failed): title and a note line say so, with its age and the error. */
  readonly stale?: boolean;
  /** How old the reading is, in ms. */
  readonly ageMs?: number | null;
  /** Width of the terminal: columns that do not fit are left out whole, from the right. */
  readonly width?: number;
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

/** What the title says about where the numbers come from (or that they are old). */
export function sourceLabel(reading: QueueReading | null, stale = false): string {
  if (!reading) return 'queues (reading…)';
  if (stale) return 'queues (stale)';
  return reading.source === 'management-api' ? 'queues via management API' : 'queues via AMQP (API down)';
}

/**
 * The line under the title when something is wrong: `last read 20s ago: <error>` for a stale
 * reading, the error alone when there was never one; null when all is well.
 */
export function queueNote(reading: QueueReading | null, error: string | null, stale: boolean, ageMs: number | null): string | null {
  if (reading && stale) return `last read ${formatAgo(ageMs ?? 0)} ago${error ? `: ${error}` : ''}`;
  if (!reading && error) return error;
  return null;
}

const LABEL_WIDTH = 26;
const COLUMNS = [
  { title: 'ready', width: 8 },
  { title: 'unacked', width: 8 },
  { title: 'in/s', width: 7 },
  { title: 'out/s', width: 7 },
  { title: 'consumers', width: 9 },
] as const;

/** The value columns that fit `width` after the label (undefined: all); the rest, from the right, are left out whole. */
export function queueColumns(width?: number): { shown: number; dropped: string[] } {
  let shown: number = COLUMNS.length;
  const widthOf = (n: number) => LABEL_WIDTH + COLUMNS.slice(0, n).reduce((a, c) => a + 1 + c.width, 0);
  while (width !== undefined && shown > 2 && widthOf(shown) > width) shown--;
  return { shown, dropped: COLUMNS.slice(shown).map((c) => c.title) };
}

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
export function QueuePanel({ reading, error, mode, rowsMax, stale = false, ageMs = null, width }: QueuePanelProps) {
  const color = useColor();
  const { shown } = queueColumns(width);
  const columns = COLUMNS.slice(0, shown);
  const note = queueNote(reading, error, stale, ageMs);
  const partitionsMerged = reading ? mergeRole(reading.queues, 'partition') : [];
  const queues = mostImportantQueues(mode === 'merged' ? mergeRole(partitionsMerged, 'retry') : partitionsMerged, rowsMax);
  const num = (n: number | null) => (n === null ? '-' : formatCount(n));
  const rate = (n: number | null) => (n === null ? '-' : formatRate(n));
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate" color={stale ? color('yellow') : undefined}>
        {cell(sourceLabel(reading, stale), LABEL_WIDTH)}
        {columns.map((c) => ` ${cell(c.title, c.width, 'right')}`).join('')}
      </Text>
      {note ? <Text color={color(stale ? 'yellow' : 'red')} wrap="truncate">{`  ${note}`}</Text> : null}
      {queues.map((q) => (
        // A stale reading's depths are dimmed: they are what the queues held then, not now.
        <Text key={q.name} wrap="truncate" dimColor={!q.exists || stale}>
          {cell(`  ${labelOf(q)}${q.exists ? '' : ' (missing)'}`, LABEL_WIDTH)}
          {[num(q.ready), num(q.unacked), rate(q.inPerS), rate(q.outPerS), num(q.consumers)]
            .slice(0, shown)
            .map((v, i) => ` ${cell(v, columns[i]!.width, 'right')}`)
            .join('')}
        </Text>
      ))}
    </Box>
  );
}
