import type { Knex } from '../db/knex.js';
import { validateTransaction } from '../domain/message-schema.js';
import { TOKEN_ENV } from '../config/config.js';
import { ServiceUnavailableError, UsageError } from '../errors.js';
import { saveRunFlowsPlanned } from '../db/runs.js';
import { countPlan, emptyPlannedFlows, followUpBody, type FollowUp } from './flows.js';
import { probeServer, probeToken, sendOverHttp, type HttpFollowUp, type HttpProgress } from './http-sender.js';
import { describeAccountsDist } from './account-choice.js';
import { prepareRun, type PublishRunHooks, type PublishRunOptions, type RunProgress, type RunSummary } from './publish-run.js';

/** How a run is sent through `txsim serve` (`gen --via`). */
export interface HttpRunOptions {
  /** The server's base URL, e.g. http://127.0.0.1:8080 (only its origin is used). */
  readonly baseUrl: string;
  /** Bearer token; an admin token, since only an admin may name the run (`X-Txsim-Run`). */
  readonly token: string | null;
  /** Requests in flight at once. */
  readonly concurrency: number;
  /** Longest one request may take before it counts as unanswered. */
  readonly requestTimeoutMs: number;
}

/** How long gen waits for the server's `/healthz` before it says the server is unreachable. */
const PROBE_TIMEOUT_MS = 5_000;

/**
 * A gen run sent through the HTTP API instead of AMQP: the same seeded stream (same ids, same bodies
 * as `publishRun` sends for the same seed and options), recorded in `runs` in the same way, so
 * `verify --run` accounts for it. What AMQP calls confirmed is an HTTP 202/200 here (the API answers
 * only after the broker's confirm). Ids the API did not accept — poison it refused (400), any other
 * status, no answer — are recorded in `run_refusals`: verify does not expect them to be applied.
 */
export async function sendRunOverHttp(
  db: Knex,
  options: PublishRunOptions,
  http: HttpRunOptions,
  hooks: Omit<PublishRunHooks, 'onRecover'> = {},
): Promise<RunSummary> {
  const origin = new URL(http.baseUrl).origin;
  // Before the run is recorded: an unreachable server is one line and exit 3, not an empty run.
  const probeTimeoutMs = Math.min(PROBE_TIMEOUT_MS, http.requestTimeoutMs);
  const unreachable = await probeServer(origin, probeTimeoutMs);
  if (unreachable !== null) throw new ServiceUnavailableError('txsim-serve', origin, new Error(unreachable));
  // And a token it takes: with a missing or bad one every request would be refused, after the run was recorded.
  const refused = await probeToken(origin, http.token, probeTimeoutMs);
  if (refused !== null)
    throw new UsageError(
      `${TOKEN_ENV}: ${origin} ${refused}${http.token === null ? ` and ${TOKEN_ENV} is empty` : ''}; gen --via needs an admin token (txsim tokens create --admin) in ${TOKEN_ENV}; no run was recorded`,
    );

  const { runId, generator, record, tracker, instance } = await prepareRun(db, options, hooks, {
    via: 'http',
    url: origin,
    concurrency: http.concurrency,
    requestTimeoutMs: http.requestTimeoutMs,
  });
  let progress: HttpProgress = { sent: 0, accepted: 0, refused: 0, failed: 0 };
  const asRunProgress = (p: HttpProgress): RunProgress => ({ published: p.sent, confirmed: p.accepted, returned: 0, failed: p.failed });
  // Progress is saved every second, as over AMQP, so verify can tell a killed run's unsent tail from lost messages.
  // Over HTTP the schedule is --rate's alone (gen refuses --profile, --drop-late and --instance with --via): lateness
  // shows in the request latency, which counts from each request's intended send time.
  const saveTimer = setInterval(
    () => void record.saveProgress({ published: progress.sent, confirmed: progress.accepted, late: 0, dropped: 0 }),
    1_000,
  );
  let invalid = 0;
  const planned = emptyPlannedFlows();
  /** A card flow's follow-up as a request: its body made when it goes out, recorded with the run as over AMQP. */
  const followUpRequest = (followUp: FollowUp): HttpFollowUp => ({
    delayMs: followUp.delayMs,
    messageAt: (createdAt) => {
      const { body, message } = followUpBody(followUp, createdAt);
      if (!validateTransaction(message)) {
        throw new Error(`flow produced an invalid ${followUp.type} ${followUp.id}: ${JSON.stringify(validateTransaction.errors)}`);
      }
      if (followUp.kind !== 'valid') invalid++;
      record.addFollowUp(followUp.id);
      // A flow's poison (a capture of an unknown authorization, or over the hold) is a valid request: the workers reject it.
      return { id: followUp.id, body, contentType: 'application/json' };
    },
  });
  let sent;
  try {
    sent = await sendOverHttp(
      (index, createdAt) => {
        const generated = generator.at(index, createdAt);
        if (generated.kind === 'valid' && !validateTransaction(generated.message)) {
          throw new Error(`generator produced an invalid message at index ${index}: ${JSON.stringify(validateTransaction.errors)}`);
        }
        if (generated.kind !== 'valid') invalid++;
        if (generated.flow) countPlan(planned, generated.flow);
        return {
          id: generated.id,
          body: generated.body,
          contentType: generated.contentType,
          poison: generated.kind !== 'valid',
          ...(generated.flow ? { followUps: generated.flow.followUps.map(followUpRequest) } : {}),
        };
      },
      {
        baseUrl: origin,
        token: http.token,
        runId,
        count: options.count,
        concurrency: http.concurrency,
        ratePerS: options.ratePerS,
        requestTimeoutMs: http.requestTimeoutMs,
      },
      {
        ...(hooks.signal ? { signal: hooks.signal } : {}),
        onProgress: (p) => {
          progress = p;
          hooks.onProgress?.(asRunProgress(p));
        },
      },
    );
  } finally {
    clearInterval(saveTimer);
  }
  // As over AMQP, a follow-up that was not accepted leaves the run incomplete.
  const completed = sent.sent === options.count && sent.failed === 0 && sent.followUps.accepted === sent.followUps.sent;
  await record.finish(
    [],
    {
      published: sent.sent,
      confirmed: sent.accepted,
      returned: 0,
      nacked: sent.failed,
      invalid,
      status: completed ? 'completed' : 'incomplete',
      finishedAt: new Date(),
      late: 0,
      dropped: 0,
    },
    options.reconnectTimeoutMs,
    { refusals: sent.refusals, acceptedIds: sent.acceptedIds },
  );
  // What the flows were planned to do, for verify --run (a run over HTTP is always one gen: no --instance).
  if (options.flows) await saveRunFlowsPlanned(db, runId, JSON.stringify(planned));
  const answered = Object.values(sent.byStatus).reduce((a, b) => a + b, 0);
  return {
    flows: options.flows ? { planned, published: sent.followUps.sent, confirmed: sent.followUps.accepted } : null,
    runId,
    seed: options.seed,
    via: 'http',
    requested: options.count,
    published: sent.sent,
    confirmed: sent.accepted,
    returned: 0,
    failed: sent.failed,
    invalid,
    notPublished: options.count - sent.sent,
    interrupted: hooks.signal?.aborted === true && !completed,
    elapsedMs: sent.elapsedMs,
    // As over AMQP: the run's own messages over the span they took, without the follow-ups after them.
    ratePerS: sent.primarySpanMs > 0 ? Math.round((sent.accepted * 1000) / sent.primarySpanMs) : 0,
    publishSpanMs: Math.round(sent.primarySpanMs),
    // The API answers 202 only after the broker's confirm: its request latency is this run's confirm latency.
    confirmLatencyMs: sent.requestLatencyMs,
    completed,
    firstError: sent.firstError,
    ...tracker.summary(sent.elapsedMs),
    profile: null,
    instance,
    accountsDist: describeAccountsDist(options.accountsDist),
    refused: sent.refused,
    http: {
      url: origin,
      concurrency: http.concurrency,
      byStatus: sent.byStatus,
      noAnswer: sent.noAnswer,
      throttled: sent.throttled,
      requestsPerS: sent.elapsedMs > 0 ? Math.round((answered * 1000) / sent.elapsedMs) : 0,
      requestLatencyMs: sent.requestLatencyMs,
    },
  };
}
