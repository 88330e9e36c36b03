import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import hdr from 'hdr-histogram-js';

/**
 * How long the disk takes to make a small write durable, measured beside a bench run: every
 * `intervalMs`, 4 KiB written at the start of a probe file and `fdatasync`ed — the flush every durable
 * commit waits for (RabbitMQ's quorum log before it confirms or delivers, MariaDB's redo log at COMMIT).
 * A paced run's hop tails follow the disk's; this tells a slow disk from a slow pipeline. Async (libuv's
 * thread pool), one probe at a time: it never blocks the bench's event loop, and a slow flush delays
 * the next probe instead of piling up. It measures the disk of `dir`, which is the services' only when
 * they keep their data on the same one (`bench --disk-probe <dir>`).
 */

/** fdatasync latency over a run (ms, to 10 µs); the percentiles are 0 when no probe finished. */
export interface DiskSyncFigures {
  /** The directory whose disk was probed. */
  readonly dir: string;
  readonly intervalMs: number;
  readonly samples: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

const PROBE_BYTES = 4096;

/** A histogram of µs, 1 µs .. 60 s, 3 significant digits. */
function microsecondHistogram() {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
}

/** µs as ms to the hundredth (10 µs): enough to tell a 0.15 ms flush from a 1.5 ms one. */
const ms = (us: number) => Math.round(us / 10) / 100;

export class DiskSyncProbe {
  private readonly run = microsecondHistogram();
  /** The slowest flush since the last `takeIntervalMaxMs()` (µs), or null when none finished. */
  private intervalMaxUs: number | null = null;
  private readonly buffer = Buffer.alloc(PROBE_BYTES, 0x5a);
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private failure: Error | null = null;

  private constructor(
    private readonly file: FileHandle,
    private readonly path: string,
    readonly dir: string,
    readonly intervalMs: number,
  ) {}

  /** Opens the probe file in `dir` and starts probing; throws (with the path) when the file cannot be created. */
  static async start(dir: string, intervalMs = 50): Promise<DiskSyncProbe> {
    const path = join(dir, `.txsim-disk-probe-${process.pid}`);
    const file = await open(path, 'w').catch((err: Error) => {
      throw new Error(`disk probe: cannot create ${path}: ${err.message}`);
    });
    const probe = new DiskSyncProbe(file, path, dir, intervalMs);
    probe.timer = setInterval(() => probe.tick(), intervalMs);
    return probe;
  }

  /** The slowest flush since the last call (ms), or undefined when none finished in between. */
  takeIntervalMaxMs(): number | undefined {
    const max = this.intervalMaxUs;
    this.intervalMaxUs = null;
    return max === null ? undefined : ms(max);
  }

  /** Stops probing, removes the probe file and returns the run's figures (throws the first failed probe's error). */
  async stop(): Promise<DiskSyncFigures> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.inFlight;
    await this.file.close().catch(() => {});
    await rm(this.path, { force: true });
    if (this.failure) throw new Error(`disk probe in ${this.dir}: ${this.failure.message}`);
    return {
      dir: this.dir,
      intervalMs: this.intervalMs,
      samples: this.run.totalCount,
      p50Ms: ms(this.run.getValueAtPercentile(50)),
      p99Ms: ms(this.run.getValueAtPercentile(99)),
      maxMs: ms(this.run.getValueAtPercentile(100)),
    };
  }

  private tick(): void {
    if (this.inFlight || this.failure) return;
    this.inFlight = this.probeOnce()
      .catch((err: Error) => {
        this.failure = err;
      })
      .finally(() => {
        this.inFlight = null;
      });
  }

  private async probeOnce(): Promise<void> {
    const started = process.hrtime.bigint();
    await this.file.write(this.buffer, 0, PROBE_BYTES, 0);
    await this.file.datasync();
    const us = Math.max(1, Number((process.hrtime.bigint() - started) / 1000n));
    this.run.recordValue(Math.min(60_000_000, us));
    this.intervalMaxUs = Math.max(this.intervalMaxUs ?? 0, us);
  }
}
