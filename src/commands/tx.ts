import type { Command } from 'commander';
import { connectOnce } from '../amqp/connect.js';
import { topologyOf } from '../amqp/topology.js';
import { entriesOfTransaction } from '../db/ledger.js';
import { attemptsAfter, findFailures, lastFailedAttempt, stateAfter, type FailureRecord } from '../db/transaction-failures.js';
import { getHold } from '../db/holds.js';
import { getTransaction, outcomeOfRow } from '../db/transactions.js';
import { peekDeadIds } from '../verify/broker-counts.js';
import { formatMinor } from '../domain/money.js';
import { NotFoundError, UsageError } from '../errors.js';
import { withDatabase } from './accounts.js';
import { contextFor, type CommandContext } from './context.js';
import { table, toJson } from './format.js';

/** A failed attempt in the JSON convention. */
function failureJson(f: FailureRecord) {
  return { state: f.state, attempt: f.attempt, code: f.errorCode, message: f.errorMessage, workerId: f.workerId, at: f.failedAt };
}

function failuresTable(failures: readonly FailureRecord[]): string {
  return table(
    ['attempt', 'state', 'at', 'worker', 'error'],
    failures.map((f) => [f.attempt, f.state, f.failedAt.toISOString(), f.workerId, `${f.errorCode}: ${f.errorMessage}`]),
  );
}

/**
 * Outcome of one transaction, or where it still is: retrying or parked (the failed attempts the
 * workers recorded), queued again (replay-dead's record), parked without a record (read from the
 * dead queue), or not seen yet.
 */
export async function handleTxShow(ctx: CommandContext, id: string, options: { json: boolean }): Promise<void> {
  if (!/^[0-9a-f-]{36}$/i.test(id)) throw new UsageError(`<id>: "${id}" is not a UUID`);
  const txId = id.toLowerCase();
  const { found, failures } = await withDatabase(ctx, async (db) => {
    const [row, failures] = await Promise.all([getTransaction(db, txId), findFailures(db, txId)]);
    const entries = row ? await entriesOfTransaction(db, txId) : [];
    // A card transaction's hold: its own for an authorization, the one it acted on otherwise.
    const holdId = row?.type === 'card_authorization' ? row.id : (row?.authorization_id ?? null);
    const hold = holdId ? ((await getHold(db, holdId)) ?? null) : null;
    return { found: row ? { row, entries, hold } : null, failures };
  });
  if (found) {
    if (options.json) {
      // The outcome in the JSON convention (camelCase, account ids as numbers, money as strings).
      const entries = found.entries.map((e) => ({ accountId: Number(e.account_id), amountMinor: BigInt(e.amount_minor) }));
      return ctx.out(
        toJson({
          ...outcomeOfRow(found.row),
          entries,
          hold: found.hold,
          ...(failures.length > 0 ? { failures: failures.map(failureJson) } : {}),
        }),
      );
    }
    const r = found.row;
    ctx.out(`${r.id}: ${r.status}${r.reason ? ` (${r.reason}: ${r.detail})` : ''}`);
    const amount = r.amount_minor ? formatMinor(BigInt(r.amount_minor), r.currency ?? undefined) : '?';
    const currency = r.currency ?? undefined;
    const balance = (v: string | null) => (v ? formatMinor(BigInt(v), currency) : '-');
    ctx.out(
      r.to_account_id === null
        ? `  ${r.type ?? '?'} of ${amount} on account ${r.account_id ?? '?'}; balance after ${balance(r.balance_after_minor)}`
        : `  ${r.type ?? '?'} of ${amount} from account ${r.account_id ?? '?'} to account ${r.to_account_id}; balances after ${balance(r.balance_after_minor)} and ${balance(r.to_balance_after_minor)}`,
    );
    ctx.out(
      `  worker ${r.worker_id}, attempt ${r.attempts}, created ${r.created_at ? new Date(r.created_at).toISOString() : '-'}, processed ${new Date(r.processed_at).toISOString()}`,
    );
    const h = found.hold;
    if (h)
      ctx.out(
        `  hold ${h.id} (${h.merchant}): ${h.state}; authorized ${formatMinor(h.authorizedMinor, currency)}, captured ${formatMinor(h.capturedMinor, currency)}, refunded ${formatMinor(h.refundedMinor, currency)}, still held ${formatMinor(h.heldMinor, currency)}; expires ${h.expiresAt.toISOString()}`,
      );
    if (found.entries.length > 0)
      ctx.out(
        table(
          ['account', 'amount'],
          found.entries.map((e) => [e.account_id, formatMinor(BigInt(e.amount_minor), currency)]),
        ),
      );
    if (failures.length > 0) ctx.out(`failed attempts before the outcome:\n${failuresTable(failures)}`);
    return;
  }
  const last = failures.at(-1);
  if (last) {
    // Where the last record sent it: a delay queue, the parking queue, or back to the workers (replay-dead).
    const deadQueue = topologyOf(ctx.config).deadQueue;
    const lastFailed = lastFailedAttempt(failures);
    if (options.json)
      return ctx.out(
        toJson({
          id: txId,
          status: stateAfter(last),
          ...(last.state === 'parked' ? { queue: deadQueue } : {}),
          attempts: attemptsAfter(last),
          lastError: lastFailed ? { code: lastFailed.errorCode, message: lastFailed.errorMessage, at: lastFailed.failedAt } : null,
          failures: failures.map(failureJson),
        }),
      );
    ctx.out(
      last.state === 'parked'
        ? `${txId}: parked in ${deadQueue} after attempt ${last.attempt} (see txsim inspect-errors --dead; txsim replay-dead --id ${txId})`
        : last.state === 'replayed'
          ? `${txId}: queued — replayed from ${deadQueue} at ${last.failedAt.toISOString()} after attempt ${last.attempt}; no attempt recorded since`
          : `${txId}: retrying — attempt ${last.attempt} failed, the next one waits in a delay queue`,
    );
    ctx.out(failuresTable(failures));
    return;
  }
  const connection = await connectOnce(ctx.config.amqpUrl, ctx.log, 'txsim tx show');
  try {
    const parked = await peekDeadIds({ connection, topology: topologyOf(ctx.config) }, 100_000);
    if (parked.has(txId)) {
      if (options.json) return ctx.out(toJson({ id: txId, status: 'parked', queue: topologyOf(ctx.config).deadQueue }));
      return ctx.out(`${txId}: parked in ${topologyOf(ctx.config).deadQueue} (see txsim inspect-errors --dead)`);
    }
  } finally {
    await connection.close().catch(() => {});
  }
  throw new NotFoundError(`${txId}: no outcome yet and not parked — still queued, being retried, or never published`);
}

export function registerTx(program: Command): void {
  const tx = program
    .command('tx')
    .description('look up transactions')
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim tx show 3f0b6c1e-2a4d-5e8f-9a0b-1c2d3e4f5a6b\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    );
  tx.command('show <id>')
    .description('outcome of one transaction, its ledger entries, or where it still is')
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim tx show 3f0b6c1e-2a4d-5e8f-9a0b-1c2d3e4f5a6b\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(async (id: string, opts: { json?: boolean }, command: Command) =>
      handleTxShow(contextFor(command), id, { json: Boolean(opts.json) }),
    );
}
