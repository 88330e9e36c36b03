import type { LatenessSummary, SecondLine } from './send-schedule.js';

/**
 * gen's words for lateness: the summary line and the per-second lines. A publisher that fell behind
 * its schedule says so here, in numbers, every time.
 */

/** `late: 120 of 800 sent more than 10 ms after they were due (p50 35 ms, p99 80 ms, max 95 ms); 3 dropped (--drop-late 500 ms)`. */
export function latenessText(s: LatenessSummary & { readonly published: number }): string {
  const linger = s.lingerMs > 0 ? ` (or their --linger ${s.lingerMs} ms group was)` : '';
  const late =
    s.late === 0
      ? `late: none of ${s.published} sent more than ${s.lateThresholdMs} ms after it was due${linger}`
      : `late: ${s.late} of ${s.published} sent more than ${s.lateThresholdMs} ms after they were due${linger} (p50 ${s.latenessMs.p50} ms, p99 ${s.latenessMs.p99} ms, max ${s.latenessMs.max} ms)`;
  const dropped = s.dropLateMs === null ? '' : `; ${s.dropped} dropped (more than --drop-late ${s.dropLateMs} ms late)`;
  return late + dropped;
}

/** One second: `gen  12 s  due 2000  sent 1850  late 420 (max 850 ms)  dropped 0`. */
export function secondText(line: SecondLine): string {
  return (
    `gen ${String(line.second).padStart(4)} s  due ${line.due}  sent ${line.published}  ` +
    `late ${line.late}${line.late > 0 ? ` (max ${line.latenessMaxMs} ms)` : ''}  dropped ${line.dropped}`
  );
}
