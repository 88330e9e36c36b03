import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { BenchProcessExitedError, ProcessWatch, type ProcessExit } from '../../src/bench/process-watch.js';

/** A child process as the watch sees it: an emitter of `exit` with a pid. */
const fakeChild = (pid: number) => Object.assign(new EventEmitter(), { pid });

describe('ProcessWatch', () => {
  it('the first exit the bench did not ask for: who, how, when (t since publishing started) and in which phase', () => {
    let nowMs = 10_000;
    const watch = new ProcessWatch('bench', () => nowMs);
    const w1 = fakeChild(101);
    const w2 = fakeChild(102);
    watch.add('worker bench-w1', w1);
    watch.add('worker bench-w2', w2);
    const seen: ProcessExit[] = [];
    watch.onExit((exit) => seen.push(exit));
    watch.publishingStarted(10_000);
    expect(() => watch.throwIfExited()).not.toThrow();
    nowMs = 12_340;
    w2.emit('exit', null, 'SIGKILL');
    nowMs = 13_000;
    w1.emit('exit', 1, null); // the second death changes nothing: the first voided the run
    expect(seen).toEqual([{ name: 'worker bench-w2', pid: 102, code: null, signal: 'SIGKILL', atS: 2.3, phase: 'publishing' }]);
    watch.setPhase('draining', 'bench run-1');
    let error: unknown;
    try {
      watch.throwIfExited();
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(BenchProcessExitedError);
    expect((error as BenchProcessExitedError).exitCode).toBe(ExitCode.verificationFailed);
    expect((error as Error).message).toBe(
      'bench run-1: worker bench-w2 (pid 102) was killed by SIGKILL at t=2.3 s, while publishing, before the bench stopped it; the run is void (no report: its figures would be wrong)',
    );
  });

  it('an exit before publishing started (a worker that could not connect) says so, with its exit code', () => {
    const watch = new ProcessWatch('bench');
    const relay = fakeChild(7);
    watch.add('the relay process', relay);
    relay.emit('exit', 3, null);
    expect(() => watch.throwIfExited()).toThrow(/^bench: the relay process \(pid 7\) exited with code 3 before publishing started, /);
  });

  it('disarmed, it lets the bench stop its processes: their exits are not failures', () => {
    const watch = new ProcessWatch('bench');
    const w = fakeChild(5);
    watch.add('worker bench-w1', w);
    watch.publishingStarted(Date.now());
    watch.disarm();
    watch.disarm();
    w.emit('exit', 0, null);
    expect(watch.exit).toBeNull();
    expect(() => watch.throwIfExited()).not.toThrow();
    expect(w.listenerCount('exit')).toBe(0);
  });
});
