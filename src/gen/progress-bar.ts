import type { RunProgress } from './publish-run.js';

/** Characters of the bar itself. */
const BAR_WIDTH = 30;

/** `0:07`, `12:34`, `1:02:03`: an ETA short enough for one terminal line. */
export function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.ceil(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

/**
 * One frame of gen's progress bar: confirmed of the total, the percentage, the confirm rate so far and
 * the time left at that rate, and what is in flight. Pure, so tests can read frames.
 */
export function progressLine(p: RunProgress, total: number, elapsedMs: number): string {
  const done = Math.min(p.confirmed, total);
  const share = total > 0 ? done / total : 1;
  const filled = Math.min(BAR_WIDTH, Math.floor(share * BAR_WIDTH));
  const ratePerS = elapsedMs > 0 ? (done * 1000) / elapsedMs : 0;
  const eta = done >= total ? '0:00' : ratePerS > 0 ? formatEta((total - done) / ratePerS) : '?';
  const inFlight = Math.max(0, p.published - p.confirmed - p.returned - p.failed);
  return (
    `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${done}/${total} ${Math.floor(share * 100)}% ` +
    `${Math.round(ratePerS)} msg/s ETA ${eta}, ${inFlight} in flight`
  );
}

/**
 * gen's progress bar on a terminal: redrawn in place, ended with a final frame and a newline, and
 * out of the way of anything else written to the terminal (the Ctrl-C message starts on its own line).
 */
export class ProgressBar {
  private readonly startedMs = performance.now();
  /** A frame is on the line without its newline yet. */
  private open = false;
  /** After an interrupt, only the final frame is drawn (log lines may arrive in between). */
  private held = false;
  private finished = false;

  constructor(
    private readonly total: number,
    private readonly write: (text: string) => void,
  ) {}

  draw(p: RunProgress): void {
    if (this.held || this.finished) return;
    this.write(`\r${progressLine(p, this.total, performance.now() - this.startedMs)}`);
    this.open = true;
  }

  /** Ends the current line at once (a signal arrived: its message goes on a line of its own). */
  interrupt(): void {
    this.held = true;
    this.endLine();
  }

  /** Draws the last frame (the final counts, e.g. 100 %) on a line of its own and ends it; null draws nothing. */
  finish(p: RunProgress | null): void {
    if (this.finished) return;
    if (p) {
      if (this.held) this.endLine();
      this.write(`\r${progressLine(p, this.total, performance.now() - this.startedMs)}`);
      this.open = true;
    }
    this.endLine();
    this.finished = true;
  }

  private endLine(): void {
    if (this.open) this.write('\n');
    this.open = false;
  }
}
