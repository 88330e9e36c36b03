import type { EventEmitter } from 'node:events';
import { VerificationFailedError } from '../errors.js';

/**
 * Watches the processes a bench starts (its workers, the relay process, `txsim serve`) for an exit the
 * bench did not ask for. One that dies mid-run voids the run: the workers left take over its
 * deliveries, so the run may still drain and verify, but its throughput was made with fewer workers
 * than the report says and its CPU stopped being counted when it died. So the bench stops at the first
 * such exit and fails with one line saying which process, how, and when.
 */

/** What the bench is doing, for the message: the same death means different things at different times. */
export type BenchPhase = 'starting' | 'publishing' | 'draining' | 'waiting for the relay' | 'waiting for the last snapshots';

/** How and when a watched process ended. */
export interface ProcessExit {
  /** `worker bench-w2`, `the relay process`, `txsim serve`. */
  readonly name: string;
  readonly pid: number | null;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Seconds since the start of publishing (the `t` of the per-second lines); null before it started. */
  readonly atS: number | null;
  readonly phase: BenchPhase;
}

/**
 * A process of the bench exited before the bench stopped it. Exit 4, as a bench that could not drain:
 * the run happened and nothing may be wrong with the books, but its figures would be wrong, and a
 * script running benches must not take them (exit 1 would say txsim itself failed; 3 would claim a
 * service was unreachable, which the bench cannot know).
 */
export class BenchProcessExitedError extends VerificationFailedError {
  constructor(
    readonly runLabel: string,
    readonly exit: ProcessExit,
  ) {
    super(`${runLabel}: ${exitText(exit)}, before the bench stopped it; the run is void (no report: its figures would be wrong)`);
  }
}

/** `worker bench-w2 (pid 4242) was killed by SIGKILL at t=2.3 s, while publishing`. */
export function exitText(exit: ProcessExit): string {
  const how = exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${exit.code ?? 'unknown'}`;
  const when = exit.atS === null ? `before publishing started` : `at t=${exit.atS.toFixed(1)} s, while ${exit.phase}`;
  return `${exit.name}${exit.pid !== null ? ` (pid ${exit.pid})` : ''} ${how} ${when}`;
}

/** The part of a ChildProcess the watch needs (an EventEmitter with `exit` in tests). */
export type WatchedProcess = Pick<EventEmitter, 'once' | 'removeListener'> & { readonly pid?: number | undefined };

export class ProcessWatch {
  private phase: BenchPhase = 'starting';
  private startMs: number | null = null;
  private first: ProcessExit | null = null;
  private readonly detach: (() => void)[] = [];
  private readonly onExitCallbacks: ((exit: ProcessExit) => void)[] = [];

  constructor(
    /** Names the run in the error (`bench`, or `bench <runId>` once it has one). */
    private runLabel: string,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** Watches `child` under `name` until `disarm()`. */
  add(name: string, child: WatchedProcess): void {
    const listener = (code: number | null, signal: NodeJS.Signals | null) => this.exited(name, child.pid ?? null, code, signal);
    child.once('exit', listener);
    this.detach.push(() => child.removeListener('exit', listener));
  }

  /** Called once, at the first unasked-for exit (the bench aborts its publishing here). */
  onExit(callback: (exit: ProcessExit) => void): void {
    this.onExitCallbacks.push(callback);
  }

  /** Publishing starts now: exits are timed from here, as the per-second lines are. */
  publishingStarted(atMs: number, runLabel?: string): void {
    this.startMs = atMs;
    this.phase = 'publishing';
    if (runLabel) this.runLabel = runLabel;
  }

  setPhase(phase: BenchPhase, runLabel?: string): void {
    this.phase = phase;
    if (runLabel) this.runLabel = runLabel;
  }

  /** The first unasked-for exit, or null. */
  get exit(): ProcessExit | null {
    return this.first;
  }

  /** Throws BenchProcessExitedError when a watched process exited. */
  throwIfExited(): void {
    if (this.first) throw new BenchProcessExitedError(this.runLabel, this.first);
  }

  /** Stops watching: from here the bench stops the processes itself. Safe to call twice. */
  disarm(): void {
    for (const d of this.detach.splice(0)) d();
  }

  private exited(name: string, pid: number | null, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.first) return;
    const atS = this.startMs === null ? null : Math.round((this.nowMs() - this.startMs) / 100) / 10;
    this.first = { name, pid, code, signal, atS, phase: this.phase };
    for (const callback of this.onExitCallbacks) callback(this.first);
  }
}
