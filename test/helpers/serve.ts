import type { FastifyInstance } from 'fastify';
import { insertToken } from '../../src/db/api-tokens.js';
import type { Knex } from '../../src/db/knex.js';
import { transactionIdFor } from '../../src/domain/ids.js';
import { createLogger, type Logger } from '../../src/log.js';
import { newToken } from '../../src/serve/credentials.js';
import { DerivedIds } from '../../src/serve/derived-ids.js';
import { FeedHub } from '../../src/serve/feed-hub.js';
import { SERVE_DEFAULTS, type ServeContext, type ServeOptions } from '../../src/serve/serve-context.js';
import { startServer, type RunningServer } from '../../src/serve/serve.js';
import { buildServer } from '../../src/serve/server.js';
import { TransactionPublisher } from '../../src/serve/transaction-publisher.js';
import { startTxsim, type TxsimProcess } from '../integration/accounting-helpers.js';
import { createTestNamespace, type TestNamespace } from './namespace.js';
import { runTxsim, startWorker, waitFor, type WorkerProcess } from './txsim.js';

/**
 * Options of a server started in-process (`startServer`) by a test: any free port, tokens checked, no
 * rate limits (every request of a test file comes from 127.0.0.1: a test of a limit sets its own).
 */
export const IN_PROCESS_SERVE_OPTIONS: ServeOptions = {
  ...SERVE_DEFAULTS,
  port: 0,
  host: '127.0.0.1',
  noAuth: false,
  heartbeatMs: 5_000,
  rateLimitPerS: 0,
  credentialRateLimitPerMin: 0,
  authFailureRateLimitPerMin: 0,
};

/**
 * What the in-process serve test files share: a namespace set up with three seeded accounts (1-3,
 * EUR), `txsim serve` started in-process, one worker applying what it accepts, and a token for each
 * role the tests play.
 */
export interface ServeFixture {
  readonly ns: TestNamespace;
  readonly server: RunningServer;
  readonly worker: WorkerProcess;
  readonly admin: string;
  /** Account 1's token. */
  readonly alice: string;
  /** Account 2's token. */
  readonly bob: string;
  /** Stops the worker and the server, then deletes the namespace; every step runs even if one before it throws. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts a ServeFixture in a namespace named after `prefix`, with a worker `workerId`; the server logs
 * to `log` (silent by default) with `options` (IN_PROCESS_SERVE_OPTIONS by default). What was started
 * before a failing step is stopped again before the error is thrown.
 */
export async function startServeFixture(
  prefix: string,
  workerId: string,
  { log = createLogger('silent'), options = IN_PROCESS_SERVE_OPTIONS }: { log?: Logger; options?: ServeOptions } = {},
): Promise<ServeFixture> {
  const ns = await createTestNamespace(prefix);
  let server: RunningServer | null = null;
  let worker: WorkerProcess | null = null;
  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      const errors: unknown[] = [];
      for (const step of [() => worker?.stop(), () => server?.close(), () => ns.cleanup()]) {
        try {
          await step();
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length > 0) throw errors[0];
    })());
  try {
    const setup = await runTxsim(['setup'], ns.env);
    if (setup.code !== 0) throw new Error(`txsim setup exited ${setup.code}: ${setup.stderr}`);
    await ns.seed(3);
    server = await startServer(ns.config, options, log);
    worker = startWorker(workerId, ns.env);
    const admin = (await insertTestToken(ns.db, { admin: true })).token;
    const alice = (await insertTestToken(ns.db, { accountId: 1 })).token;
    const bob = (await insertTestToken(ns.db, { accountId: 2 })).token;
    return { ns, server, worker, admin, alice, bob, close };
  } catch (err) {
    await close().catch(() => {});
    throw err;
  }
}

/** A deposit body for `POST /v1/transactions` (EUR), with `extra` fields over it. */
export const depositBody = (accountId: number, amountMinor: number, extra: Record<string, unknown> = {}) => ({
  type: 'deposit',
  accountId,
  amountMinor,
  currency: 'EUR',
  ...extra,
});

/** A `txsim serve` child on a free port, with where it listens. */
export interface ServeProcess extends TxsimProcess {
  readonly url: string;
}

/** Starts `txsim serve --port 0` (plus `args`) and waits until it listens. */
export async function startServe(env: NodeJS.ProcessEnv, args: readonly string[] = [], listenTimeoutMs = 30_000): Promise<ServeProcess> {
  const serve = startTxsim(['serve', '--port', '0', '--rate-limit', '0', ...args], env);
  const listening = /listening on (http:\/\/\S+) /;
  try {
    await waitFor(
      () => listening.test(serve.stdout()) || serve.child.exitCode !== null,
      listenTimeoutMs,
      `serve to listen: ${serve.stdout()}${serve.stderr()}`,
    );
  } catch (err) {
    await serve.kill();
    throw err;
  }
  const match = listening.exec(serve.stdout());
  if (!match) throw new Error(`serve exited ${serve.child.exitCode}: ${serve.stderr()}`);
  return { ...serve, url: match[1]! };
}

/** A new admin token of the namespace (`txsim tokens create --admin --json`). */
export async function createAdminToken(env: NodeJS.ProcessEnv): Promise<string> {
  const created = await runTxsim(['tokens', 'create', '--admin', '--json'], env);
  if (created.code !== 0) throw new Error(`tokens create: ${created.stderr}`);
  return (JSON.parse(created.stdout) as { token: string }).token;
}

/** A new token written straight into the namespace's database: an admin's or one account's, expiring at `expiresAt` (never when null). */
export async function insertTestToken(
  db: Knex,
  scope: { admin: true } | { accountId: number },
  expiresAt: Date | null = null,
): Promise<{ id: string; token: string }> {
  const t = newToken();
  await insertToken(db, {
    id: t.id,
    secretHash: t.secretHash,
    isAdmin: 'admin' in scope,
    accountId: 'accountId' in scope ? scope.accountId : null,
    label: 'test',
    createdAt: new Date(),
    expiresAt,
  });
  return { id: t.id, token: t.token };
}

/** Where the ids of a run sent with `gen --via` ended up, read from the database. */
export interface HttpRunOutcomes {
  /** Ids answered 202/200 (every id of the run not in `run_refusals`). */
  readonly accepted: string[];
  /** Ids with an applied outcome. */
  readonly applied: Set<string>;
  /** Accepted ids without an applied outcome: acknowledged, then lost. Must be empty. */
  readonly acceptedNotApplied: string[];
  /** Ids neither applied nor refused (non-2xx or no answer): not applied, and nobody was told. Must be empty. */
  readonly notAppliedNotRefused: string[];
  /** Ids refused (non-2xx or no answer) that are not applied. */
  readonly refusedNotApplied: number;
}

/**
 * Reads a `gen --via` run's outcomes, waiting (up to `waitMs`) until every accepted id is applied.
 * A lost one would wait forever: the wait gives up and the result names it.
 */
export async function httpRunOutcomes(db: Knex, runId: string, count: number, waitMs = 60_000): Promise<HttpRunOutcomes> {
  const refused = new Set(
    (await db('run_refusals').where('run_id', runId).select<{ transaction_id: string }[]>('transaction_id')).map((r) => r.transaction_id),
  );
  const ids = Array.from({ length: count }, (_, i) => transactionIdFor(runId, i));
  const accepted = ids.filter((id) => !refused.has(id));
  const appliedIds = async () =>
    new Set((await db('transactions').where({ run_id: runId, status: 'applied' }).select<{ id: string }[]>('id')).map((r) => r.id));
  let applied = new Set<string>();
  await waitFor(
    async () => {
      applied = await appliedIds();
      return accepted.every((id) => applied.has(id));
    },
    waitMs,
    'every accepted id applied',
    500,
  ).catch(() => {});
  return {
    accepted,
    applied,
    acceptedNotApplied: accepted.filter((id) => !applied.has(id)),
    notAppliedNotRefused: ids.filter((id) => !applied.has(id) && !refused.has(id)),
    refusedNotApplied: [...refused].filter((id) => !applied.has(id)).length,
  };
}

/**
 * `txsim serve`'s app over the namespace `ns`, not listening (requests by `inject`, from any
 * `remoteAddress`), with `options` over IN_PROCESS_SERVE_OPTIONS and `hooks` in its context. Its
 * publisher connects on the first POST and is closed with the app.
 */
export async function buildTestApp(
  ns: TestNamespace,
  options: Partial<ServeOptions> = {},
  hooks: Pick<ServeContext, 'onTokenCheck'> = {},
): Promise<FastifyInstance> {
  const log = createLogger('silent');
  const publisher = new TransactionPublisher(
    { amqpUrl: ns.config.amqpUrl, topology: ns.topology, clientName: 'test app', windowMax: 10, confirmTimeoutMs: 5_000 },
    log,
  );
  try {
    const app = await buildServer({
      db: ns.db,
      publisher,
      hub: new FeedHub({ sendBufferBytesMax: 1_000_000, subscriptionsMax: 10 }),
      log,
      namespace: ns.name,
      ids: new DerivedIds(ns.db, ns.name),
      options: { ...IN_PROCESS_SERVE_OPTIONS, ...options },
      ...hooks,
    });
    app.addHook('onClose', () => publisher.close());
    return app;
  } catch (err) {
    await publisher.close();
    throw err;
  }
}
