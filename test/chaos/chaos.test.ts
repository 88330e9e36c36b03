import { describe, expect, it } from 'vitest';
import { runIdForSeed } from '../../src/domain/ids.js';
import type { Knex } from '../../src/db/knex.js';
import { spawnTxsim, type RunResult } from '../helpers/txsim.js';
import { canControlServices, database, rabbit, restoreServices, sleep, stage, verifyScenario, type Stage } from '../faults/fault-kit.js';
import { drawSchedule, FAULT_KINDS, timeline, type FaultTarget, type ScheduledFault } from './schedule.js';

// A seeded chaos run (`npm run test:chaos -- --seed S --duration 120`): while gen publishes paced through
// three workers, a schedule drawn from the seed breaks workers, gen, the broker and the database — one
// fault or several at once — and at the end `txsim verify --run` must be clean: nothing lost, nothing
// applied twice, the invariant holding, the workers alive. The same seed replays the same schedule.

const SEED = Number(process.env.CHAOS_SEED ?? 1);
const DURATION_S = Number(process.env.CHAOS_DURATION_S ?? 120);
/** The types gen draws from (the rest of a card flow follows its authorization). */
const CHAOS_MIX = 'deposit=30,withdrawal=15,card_payment=10,transfer=20,card_authorization=25';
/** Paced, so the run lasts DURATION_S when nothing goes wrong. */
const RATE_PER_S = 300;

/** gen, started again after a kill (same seed: the same ids, duplicates absorbed) or a refusal while the broker was down. */
class GenSupervisor {
  private child: ReturnType<typeof spawnTxsim> | null = null;
  private finished: RunResult | null = null;
  restarts = 0;
  private stopped = false;

  constructor(
    private readonly s: Stage,
    private readonly args: string[],
  ) {}

  start(): void {
    this.child = spawnTxsim(this.args, this.s.ns.env, 900_000);
    void this.child.done.then(
      (r) => this.onExit(r),
      () => this.onExit({ code: null, stdout: '', stderr: 'timed out' }),
    );
  }

  private onExit(r: RunResult): void {
    if (r.code === 0 || this.stopped) {
      this.finished = r;
      return;
    }
    // Killed by the schedule, or refused at start because the broker was down (exit 3): again, a second later.
    this.restarts++;
    setTimeout(() => this.start(), 1_000);
  }

  kill(): void {
    this.child?.child.kill('SIGKILL');
  }

  async done(timeoutMs: number): Promise<RunResult> {
    const deadline = Date.now() + timeoutMs;
    while (!this.finished) {
      if (Date.now() > deadline) {
        this.stopped = true;
        this.kill();
        throw new Error(`gen did not finish within ${timeoutMs} ms`);
      }
      await sleep(250);
    }
    return this.finished;
  }
}

/** Holds accounts 2 then 1 from outside, again and again for `forMs`: deadlocks with the workers' ascending order. */
async function forceDeadlocks(db: Knex, forMs: number): Promise<void> {
  const until = Date.now() + forMs;
  while (Date.now() < until) {
    const trx = await db.transaction();
    try {
      await trx.raw('SET SESSION innodb_lock_wait_timeout = 2');
      await trx.raw('SELECT id FROM accounts WHERE id = 2 FOR UPDATE');
      await sleep(200);
      await trx.raw('SELECT id FROM accounts WHERE id = 1 FOR UPDATE');
    } catch {
      // This session may be the deadlock's victim, or the database may be down right now: either is fine.
    } finally {
      await trx.rollback().catch(() => {});
    }
    await sleep(100);
  }
}

async function inject(fault: ScheduledFault, s: Stage, gen: GenSupervisor): Promise<void> {
  const forMs = fault.forS * 1000;
  switch (fault.kind) {
    case 'worker-kill': {
      const worker = s.workers[fault.worker]!;
      await worker.kill();
      await sleep(forMs);
      s.startWorker(worker.id.slice(s.ns.name.length + 1));
      return;
    }
    case 'gen-kill':
      gen.kill();
      return;
    case 'broker-stop':
      await rabbit.stopApp();
      await sleep(forMs);
      await rabbit.startApp();
      return;
    case 'broker-kill':
      await rabbit.killServer();
      await sleep(forMs);
      await rabbit.startServer();
      return;
    case 'close-connections':
      await rabbit.closeConnections(s.ns.name);
      return;
    case 'disk-alarm':
      await rabbit.raiseDiskAlarm();
      await sleep(forMs);
      await rabbit.clearDiskAlarm();
      return;
    case 'memory-alarm':
      await rabbit.raiseMemoryAlarm();
      await sleep(forMs);
      await rabbit.clearMemoryAlarm();
      return;
    case 'db-stop':
      await database.stop();
      await sleep(forMs);
      await database.start();
      return;
    case 'db-kill':
      await database.kill();
      await sleep(forMs);
      await database.start();
      return;
    case 'deadlocks':
      await forceDeadlocks(s.ns.db, forMs);
      return;
  }
}

describe.skipIf(!canControlServices)(`chaos run (seed ${SEED}, ${DURATION_S} s)`, () => {
  it('ends with verify clean whatever the schedule broke', async () => {
    const schedule = drawSchedule(SEED, DURATION_S);
    const s = await stage(`chaos${SEED}`, { accounts: 50 });
    const count = RATE_PER_S * DURATION_S;
    const genSeed = `chaos-${SEED}`;
    const gen = new GenSupervisor(s, [
      'gen',
      String(count),
      '--seed',
      genSeed,
      '--rate',
      String(RATE_PER_S),
      // Every money movement: transfers, and card authorizations as flows (captures — some in two steps,
      // some refunded by captureId —, voids, and holds left for the workers' sweep to expire).
      '--mix',
      CHAOS_MIX,
      '--capture-share',
      '0.6',
      '--void-share',
      '0.2',
      '--partial-share',
      '0.2',
      '--refund-share',
      '0.2',
      '--json',
      '--reconnect-timeout',
      '300',
    ]);
    const startedAt = Date.now();
    const log: string[] = [];
    const note = (line: string) => log.push(`  t=${((Date.now() - startedAt) / 1000).toFixed(1).padStart(5)}s  ${line}`);
    try {
      gen.start();
      // Each fault runs on its own clock, so faults of different services overlap as drawn. Faults of one
      // service run one after the other: clearing one (a database start waits until it answers) may take
      // longer than the schedule allowed, and the next then begins once it is cleared, never on top of it.
      const busy = new Map<FaultTarget, Promise<void>>();
      await Promise.all(
        schedule.map(async (fault) => {
          await sleep(Math.max(0, startedAt + fault.atS * 1000 - Date.now()));
          const target = FAULT_KINDS[fault.kind];
          const previous = busy.get(target) ?? Promise.resolve();
          const run = previous.then(async () => {
            note(`${fault.kind} begins`);
            try {
              await inject(fault, s, gen);
              note(`${fault.kind} cleared`);
            } catch (err) {
              note(`${fault.kind} failed to inject: ${(err as Error).message.split('\n')[0]}`);
              throw err;
            }
          });
          busy.set(
            target,
            run.catch(() => {}),
          );
          await run;
        }),
      );
      await restoreServices();
      const r = await gen.done(600_000);
      expect(r.code, r.stderr).toBe(0);
      // A worker killed by the schedule was started again; one that died otherwise fails the run below.
      const result = await verifyScenario(
        s,
        `chaos seed ${SEED}, ${DURATION_S} s, ${schedule.length} faults`,
        runIdForSeed(genSeed),
        `gen restarted ${gen.restarts} times`,
      );
      console.log(
        `chaos seed ${SEED}, ${DURATION_S} s: schedule\n${timeline(schedule)}\nwhat happened\n${log.join('\n')}\n` +
          `verify: published ${result.published} → applied ${result.applied}, rejected ${result.rejected}, parked ${result.parked}; ` +
          `lost ${result.lost}, duplicated ${result.duplicated}, invariant violations ${result.invariantViolations}; gen restarted ${gen.restarts} times`,
      );
    } catch (err) {
      console.log(`chaos seed ${SEED} FAILED; schedule\n${timeline(schedule)}\nwhat happened\n${log.join('\n')}`);
      throw err;
    } finally {
      await restoreServices();
      await s.teardown();
    }
  });
});
