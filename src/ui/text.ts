import { HOPS, type Hop } from '../stats/hops.js';

/**
 * Text helpers of the TUI: fixed-width cells (the tables are monospace lines, which truncate
 * predictably at 80 columns) and the sparkline. Pure; shared by the components.
 */

const BARS = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'] as const;

/**
 * The last `width` values as bars scaled to `max` (default: the largest value shown). Zero is a
 * blank so an idle stretch reads as empty; any positive value gets at least the lowest bar.
 * Shorter histories are padded on the left, so "now" is always the right edge.
 */
export function sparkline(values: readonly number[], width: number, max?: number): string {
  if (width <= 0) return '';
  const shown = values.slice(-width);
  const top = max ?? Math.max(0, ...shown);
  const bars = shown.map((v) => {
    if (!(v > 0) || top <= 0) return ' ';
    const level = Math.ceil((Math.min(v, top) / top) * BARS.length) - 1;
    return BARS[Math.max(0, Math.min(BARS.length - 1, level))]!;
  });
  return ' '.repeat(width - shown.length) + bars.join('');
}

/** Pads or cuts to exactly `width` characters; cut text ends in '…'. */
export function cell(text: string, width: number, align: 'left' | 'right' = 'left'): string {
  if (text.length > width) return width <= 1 ? text.slice(0, width) : `${text.slice(0, width - 1)}…`;
  return align === 'left' ? text.padEnd(width) : text.padStart(width);
}

/** A rate in tx/s: one decimal below 100, whole numbers above; '-' when unknown. */
export function formatRate(perS: number | null): string {
  if (perS === null) return '-';
  return perS >= 100 ? String(Math.round(perS)) : perS.toFixed(1);
}

/** Counts compact enough for a 7-wide cell: 1234567 → 1.23M. */
export function formatCount(n: number): string {
  if (n < 100_000) return String(n);
  if (n < 10_000_000) return `${(n / 1_000).toFixed(0)}k`;
  return `${(n / 1_000_000).toFixed(2)}M`;
}

/** Milliseconds for a latency cell; '-' when there was nothing to measure. */
export function formatMs(ms: number, count = 1): string {
  if (count === 0) return '-';
  if (ms >= 10_000) return `${(ms / 1000).toFixed(0)}s`;
  return String(Math.round(ms));
}

/** How long ago, short: 0.4s, 12s, 3m, 2h. */
export function formatAgo(ms: number): string {
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 120_000) return `${Math.round(ms / 1000)}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  return `${Math.round(ms / 3_600_000)}h`;
}

/** A duration for uptimes: 42s, 5m02s, 3h07m. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Short names of the hops, as the line shows them. */
const HOP_LABEL: Record<Hop, string> = {
  queue_wait: 'queue',
  processing: 'processing',
  commit: 'commit',
  ack: 'ack',
  relay: 'relay',
  statement: 'statement',
  end_to_end: 'e2e',
};

/** `queue 2/9 · commit 8/30 · …`: p50/p99 of each hop measured, in the order a message passes them. */
export function hopLatencyText(hops: Readonly<Partial<Record<Hop, { count: number; p50: number; p99: number }>>>): string {
  return HOPS.flatMap((hop) => {
    const l = hops[hop];
    return l && l.count > 0 ? [`${HOP_LABEL[hop]} ${formatMs(l.p50)}/${formatMs(l.p99)}`] : [];
  }).join(' · ');
}

/**
 * `fraud 12 in · 5/48 ms · ✗3 !1 · issuer …`: per processing stage, walks inside it now, p50/p99 ms
 * (slowest worker), declines (✗) and fails (!) since start — only the non-zero ones.
 */
export function stagesText(
  stages: readonly { name: string; inFlight: number; passed: number; declined: number; failed: number; p50Ms: number; p99Ms: number }[],
): string {
  return stages
    .map((s) => {
      const walked = s.passed + s.declined + s.failed;
      const parts = [`${s.name} ${s.inFlight} in`, walked > 0 ? `${formatMs(s.p50Ms)}/${formatMs(s.p99Ms)} ms` : '-'];
      if (s.declined > 0) parts.push(`✗${formatCount(s.declined)}`);
      if (s.failed > 0) parts.push(`!${formatCount(s.failed)}`);
      return parts.join(' ');
    })
    .join(' · ');
}
