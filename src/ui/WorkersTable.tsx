import { Box, Text } from 'ink';
import type { Totals, WorkerRow, WorkerStatus } from '../watch/stats-aggregator.js';
import { cell, formatAgo, formatCount, formatMs, formatRate } from './text.js';
import { useColor } from './use-color.js';

export interface WorkersTableProps {
  /** Already sorted. */
  readonly rows: readonly WorkerRow[];
  readonly totals: Totals;
  readonly selectedId: string | null;
  readonly wide: boolean;
  /** Rows beyond this are summarised in one "… N more" line. */
  readonly rowsMax: number;
  /** Width of the terminal: columns that do not fit are left out whole (see `workerColumns`). */
  readonly width?: number;
}

interface Column {
  readonly title: string;
  readonly width: number;
  readonly align: 'left' | 'right';
  readonly wideOnly?: boolean;
  readonly row: (r: WorkerRow) => string;
  readonly total: (t: Totals) => string;
}

/**
 * A row's status cell: a paused (database down) or blocked (broker alarm) worker says so instead;
 * `?` while watch itself cannot hear the workers (its broker connection is down).
 */
function statusText(r: WorkerRow): { text: string; color: string } {
  if (r.unheard) return { text: '?', color: 'yellow' };
  if ((r.status === 'active' || r.status === 'idle') && r.paused) return { text: 'paused', color: 'magenta' };
  if ((r.status === 'active' || r.status === 'idle') && r.blocked) return { text: 'blockd', color: 'magenta' };
  return { text: r.status, color: STATUS_COLOR[r.status] };
}

export const STATUS_COLOR: Record<WorkerStatus, string> = { active: 'green', idle: 'white', stale: 'yellow', gone: 'red' };

/** Narrow columns add up to 78 characters with separators; the wide ones to 116 (see WIDE_COLUMNS_MIN). */
function columnsFor(wide: boolean): Column[] {
  const all: Column[] = [
    { title: 'worker', width: wide ? 14 : 10, align: 'left', row: (r) => r.workerId, total: () => 'total' },
    {
      title: 'status',
      width: 6,
      align: 'left',
      row: (r) => statusText(r).text,
      total: (t) => `${t.byStatus.active + t.byStatus.idle}/${t.workers}`,
    },
    {
      title: 'tx/s',
      width: 7,
      align: 'right',
      row: (r) => formatRate(r.ratePerS),
      total: (t) => formatRate(t.unheard ? null : t.ratePerS),
    },
    {
      title: '10s avg',
      width: 7,
      align: 'right',
      wideOnly: true,
      row: (r) => formatRate(r.rate10sPerS),
      total: (t) => formatRate(t.unheard ? null : t.rate10sPerS),
    },
    { title: 'applied', width: 8, align: 'right', row: (r) => formatCount(r.applied), total: (t) => formatCount(t.applied) },
    { title: 'rejected', width: 8, align: 'right', row: (r) => formatCount(r.rejected), total: (t) => formatCount(t.rejected) },
    { title: 'retried', width: 7, align: 'right', row: (r) => formatCount(r.retried), total: (t) => formatCount(t.retried) },
    { title: 'parked', width: 6, align: 'right', row: (r) => formatCount(r.parked), total: (t) => formatCount(t.parked) },
    {
      title: 'dup',
      width: 6,
      align: 'right',
      wideOnly: true,
      row: (r) => formatCount(r.duplicates),
      total: (t) => formatCount(t.duplicates),
    },
    {
      title: 'in-flight',
      width: 9,
      align: 'right',
      wideOnly: true,
      row: (r) => inFlightText(r),
      total: (t) => (t.unheard ? '-' : String(t.inFlight)),
    },
    {
      title: 'p50 ms',
      width: 6,
      align: 'right',
      row: (r) => live(r, formatMs(r.endToEndMs.p50, r.endToEndMs.count)),
      total: (t) => approx(t.endToEndMs.exact, formatMs(t.endToEndMs.p50, t.endToEndMs.count)),
    },
    {
      title: 'p99 ms',
      width: 6,
      align: 'right',
      row: (r) => live(r, formatMs(r.endToEndMs.p99, r.endToEndMs.count)),
      total: (t) => approx(t.endToEndMs.exact, formatMs(t.endToEndMs.p99, t.endToEndMs.count)),
    },
    {
      title: 'proc p99',
      width: 8,
      align: 'right',
      wideOnly: true,
      row: (r) => live(r, formatMs(r.processingMs.p99, r.processingMs.count)),
      total: (t) => approx(t.processingMs.exact, formatMs(t.processingMs.p99, t.processingMs.count)),
    },
    { title: 'seen', width: 5, align: 'right', row: (r) => formatAgo(r.lastSeenAgoMs), total: () => '' },
  ];
  return all.filter((c) => wide || !c.wideOnly);
}

/**
 * Columns given up whole, in this order, when the terminal is narrower than the table: a cut-off
 * `p99 ms` with a `…` would look like a number. Status, rate, counts and p99 stay longest.
 */
const DROP_ORDER: readonly string[] = ['seen', 'parked', 'retried', 'dup', '10s avg', 'proc p99', 'in-flight', 'p50 ms', 'rejected'];

/** Characters a table of these columns needs: widths plus one space between columns. */
function tableWidth(columns: readonly Column[]): number {
  return columns.reduce((n, c) => n + c.width, 0) + Math.max(0, columns.length - 1);
}

/**
 * The columns that fit `width` (undefined: all), and the titles of those left out, for the footer
 * to say. Whole columns go, in DROP_ORDER; never worker, status, tx/s, applied or p99.
 */
export function workerColumns(wide: boolean, width?: number): { columns: Column[]; dropped: string[] } {
  let columns = columnsFor(wide);
  const dropped: string[] = [];
  for (const title of DROP_ORDER) {
    if (width === undefined || tableWidth(columns) <= width) break;
    if (!columns.some((c) => c.title === title)) continue;
    columns = columns.filter((c) => c.title !== title);
    dropped.push(title);
  }
  return { columns, dropped };
}

/**
 * A live reading (in flight now, latency of the last window), or '-' for a gone worker: its last
 * snapshot's numbers describe a process that no longer runs, and would read as current. (The rows
 * already carry no in-flight count or latency for it; this keeps the details pane saying so.)
 */
export function live(r: Pick<WorkerRow, 'status' | 'unheard'>, text: string): string {
  return r.status === 'gone' || r.unheard ? '-' : text;
}

/** `in-flight/prefetch`, or '-' when the row has no current in-flight count (gone, unheard). */
export function inFlightText(r: Pick<WorkerRow, 'inFlight' | 'prefetchCount'>): string {
  return r.inFlight === null ? '-' : `${r.inFlight}/${r.prefetchCount}`;
}

/** A '~' marks a total that is the worst worker's value rather than an exact merge. */
function approx(exact: boolean, text: string): string {
  return exact || text === '-' ? text : `~${text}`;
}

/**
 * The workers table: one row per worker, a totals row. Cells are fixed-width text (monospace)
 * so the table reads the same at 80 columns and on a wide screen.
 */
export function WorkersTable({ rows, totals, selectedId, wide, rowsMax, width }: WorkersTableProps) {
  const color = useColor();
  const { columns } = workerColumns(wide, width);
  const line = (values: string[]) => values.map((v, i) => cell(v, columns[i]!.width, columns[i]!.align)).join(' ');
  const shown = rows.slice(0, Math.max(1, rowsMax));
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate">
        {line(columns.map((c) => c.title))}
      </Text>
      {rows.length === 0 ? <Text dimColor>{'no worker has reported yet (start one: txsim worker --id w1)'}</Text> : null}
      {shown.map((r) => {
        const values = columns.map((c) => c.row(r));
        const status = statusText(r);
        const [idCell, statusCell, ...rest] = values.map((v, i) => cell(v, columns[i]!.width, columns[i]!.align));
        const selected = r.workerId === selectedId;
        return (
          <Text key={r.workerId} wrap="truncate" inverse={selected} dimColor={r.status === 'gone'}>
            {`${idCell} `}
            <Text color={color(status.color)}>{statusCell}</Text>
            {` ${rest.join(' ')}`}
          </Text>
        );
      })}
      {rows.length > shown.length ? <Text dimColor>{`… ${rows.length - shown.length} more (make the terminal taller)`}</Text> : null}
      <Text bold wrap="truncate">
        {line(columns.map((c) => c.total(totals)))}
      </Text>
    </Box>
  );
}
