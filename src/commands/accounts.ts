import type { Command } from 'commander';
import { parseCurrencyFlag, parseIntFlag, parseMinorFlag } from '../config/parse.js';
import {
  countAccounts,
  entrySumsOfAccounts,
  existingCurrenciesInRange,
  getAccount,
  listAccounts,
  seedAccounts,
  type AccountRow,
} from '../db/accounts.js';
import { checkDatabase, createDatabase, type Knex } from '../db/knex.js';
import { entrySummaryOfAccount } from '../db/ledger.js';
import { outcomeOfRow, recentPostingsOfAccount, recentTransactionsOfAccount, type RecentPosting } from '../db/transactions.js';
import { formatAmount, formatMinor } from '../domain/money.js';
import { NotFoundError } from '../errors.js';
import { contextFor, type CommandContext } from './context.js';
import { plural, table, toJson } from './format.js';

/** Opens the txsim database for a short command, checking it answers; closes it afterwards. */
export async function withDatabase<T>(ctx: CommandContext, work: (db: Knex) => Promise<T>): Promise<T> {
  const db = createDatabase({ databaseUrl: ctx.config.databaseUrl, databaseName: ctx.config.databaseName, poolMax: 2 });
  try {
    await checkDatabase(db, ctx.config.databaseUrl, ctx.config.databaseName);
    return await work(db);
  } finally {
    await db.destroy();
  }
}

export interface SeedOptions {
  readonly count: number;
  readonly firstId: number;
  readonly openingBalanceMinor: bigint;
  readonly currency: string;
  readonly json: boolean;
}

/** What `accounts seed` did (its `--json`). */
export interface SeedReport {
  readonly firstId: number;
  readonly lastId: number;
  readonly created: number;
  /** Accounts of the range that existed before: left exactly as they were. */
  readonly existing: number;
  /** The existing ones by currency (their currency and balance were not changed). */
  readonly existingByCurrency: Readonly<Record<string, number>>;
  readonly currency: string;
  /** The opening balance posted to each created account (none to the existing ones). */
  readonly openingBalanceMinor: bigint;
  readonly warnings: readonly string[];
}

/**
 * Seeds `firstId .. firstId+count-1`. Existing accounts are left alone, so a seed in another
 * currency over them changes nothing there: that is said, on stderr, instead of reporting an
 * opening balance in a currency those accounts do not have.
 */
export async function handleAccountsSeed(ctx: CommandContext, options: SeedOptions): Promise<SeedReport> {
  const lastId = options.firstId + options.count - 1;
  const { created, before } = await withDatabase(ctx, async (db) => {
    const before = await existingCurrenciesInRange(db, options.firstId, lastId);
    return { created: await seedAccounts(db, options), before };
  });
  const existing = options.count - created;
  const other = [...before].filter(([currency]) => currency !== options.currency);
  const warnings = other.map(
    ([currency, n]) =>
      `${plural(n, 'existing account')} of ${options.firstId}..${lastId} ${n === 1 ? 'is' : 'are'} ${currency}, not ${options.currency}: left as ${n === 1 ? 'it was' : 'they were'} (currency, balance and entries unchanged)${created > 0 ? `; only the ${created} created got ${options.currency}` : ''}`,
  );
  const report: SeedReport = {
    firstId: options.firstId,
    lastId,
    created,
    existing,
    existingByCurrency: Object.fromEntries(before),
    currency: options.currency,
    openingBalanceMinor: options.openingBalanceMinor,
    warnings,
  };
  for (const w of warnings) process.stderr.write(`txsim: warning: ${w}\n`);
  if (options.json) {
    ctx.out(toJson(report));
    return report;
  }
  const opening = created > 0 ? ` (opening balance ${formatMinor(options.openingBalanceMinor, options.currency)} each)` : '';
  const kept = existing > 0 ? `, ${existing} already existed (left unchanged)` : '';
  ctx.out(`accounts ${options.firstId}..${lastId}: ${created} created${opening}${kept}`);
  return report;
}

/** One account as every `--json` prints it (money as a decimal string of minor units). */
export interface AccountJson {
  readonly id: number;
  readonly kind: 'customer' | 'system';
  readonly code: string | null;
  readonly name: string;
  readonly currency: string;
  /** A customer's stored balance; a system account's entry sum (its stored balance is never updated). */
  readonly balanceMinor: bigint;
  readonly eventSeq: number;
}

function accountJson(a: AccountRow, entrySumMinor: bigint | undefined): AccountJson {
  const balanceMinor = a.kind === 'system' ? (entrySumMinor ?? 0n) : a.balanceMinor;
  return { id: a.id, kind: a.kind, code: a.code, name: a.name, currency: a.currency, balanceMinor, eventSeq: Number(a.eventSeq) };
}

export async function handleAccountsList(ctx: CommandContext, options: { limit: number; system: boolean; json: boolean }): Promise<void> {
  const kind = options.system ? 'system' : 'customer';
  const { accounts, total } = await withDatabase(ctx, async (db) => {
    const rows = await listAccounts(db, { kind, limit: options.limit });
    const sums =
      kind === 'system'
        ? await entrySumsOfAccounts(
            db,
            rows.map((a) => a.id),
          )
        : new Map<number, bigint>();
    return { accounts: rows.map((a) => accountJson(a, sums.get(a.id))), total: await countAccounts(db, kind) };
  });
  if (options.json) return ctx.out(toJson({ kind, total, shown: accounts.length, accounts }));
  ctx.out(
    table(
      ['id', 'name', 'currency', 'balance'],
      accounts.map((a) => [a.id, a.name, a.currency, formatAmount(a.balanceMinor, a.currency)]),
    ),
  );
  if (accounts.length < total) ctx.out(`showing ${accounts.length} of ${total} ${kind} accounts; --limit ${total} shows all`);
}

/** One entry posted to a system account, shown like a customer's transaction: the customer on the other side, the entry's amount. */
function shownPosting(t: RecentPosting) {
  const o = outcomeOfRow(t);
  const entryMinor = BigInt(t.entry_minor);
  return {
    id: o.id,
    type: o.type,
    direction: entryMinor < 0n ? ('out' as const) : ('in' as const),
    counterpartyAccountId: o.accountId,
    amountMinor: entryMinor < 0n ? -entryMinor : entryMinor,
    currency: o.currency,
    status: o.status,
    reason: o.reason,
    detail: o.detail,
    balanceAfterMinor: null,
    workerId: o.workerId,
    processedAt: o.processedAt.toISOString(),
  };
}

export async function handleAccountsShow(ctx: CommandContext, id: number, options: { limit: number; json: boolean }): Promise<void> {
  await withDatabase(ctx, async (db) => {
    const row = await getAccount(db, id);
    if (!row) throw new NotFoundError(`account ${id} does not exist`);
    const entries = await entrySummaryOfAccount(db, id);
    const account = accountJson(row, entries.sumMinor);
    // A system account owns no transactions (they are filed under their customer account): what it
    // shows is what was posted to it, each with the customer account on the other side.
    const recent =
      row.kind === 'system'
        ? (await recentPostingsOfAccount(db, id, options.limit)).map(shownPosting)
        : (await recentTransactionsOfAccount(db, id, options.limit)).map((t) => {
            const o = outcomeOfRow(t);
            // A transfer this account received: its row is the source's, the balance after is the credit's.
            const incoming = o.type === 'transfer' && o.accountId !== id;
            return {
              id: o.id,
              type: o.type,
              direction: incoming ? ('in' as const) : ('out' as const),
              counterpartyAccountId: o.type === 'transfer' ? (incoming ? o.accountId : o.toAccountId) : null,
              amountMinor: o.amountMinor,
              currency: o.currency,
              status: o.status,
              reason: o.reason,
              detail: o.detail,
              balanceAfterMinor: incoming ? o.toBalanceAfterMinor : o.balanceAfterMinor,
              workerId: o.workerId,
              processedAt: o.processedAt.toISOString(),
            };
          });
    const funds =
      row.kind === 'customer'
        ? { balanceMinor: row.balanceMinor, heldMinor: row.heldMinor, availableMinor: row.balanceMinor - row.heldMinor }
        : null;
    if (options.json) return ctx.out(toJson({ account, funds, entries: { count: entries.count, sumMinor: entries.sumMinor }, recent }));
    ctx.out(`account ${account.id} — ${account.name} (${account.kind}, ${account.currency})`);
    ctx.out(
      account.kind === 'system'
        ? `balance ${formatMinor(account.balanceMinor, account.currency)} (a system account's balance is the sum of its ${plural(entries.count, 'ledger entry', 'ledger entries')})`
        : `balance ${formatMinor(account.balanceMinor, account.currency)}; ${plural(entries.count, 'ledger entry', 'ledger entries')} summing to ${formatMinor(entries.sumMinor, account.currency)}`,
    );
    if (funds)
      ctx.out(
        `held ${formatMinor(funds.heldMinor, account.currency)} by open card authorizations; available ${formatMinor(funds.availableMinor, account.currency)}`,
      );
    ctx.out('');
    ctx.out(
      table(
        ['processed', 'id', 'type', 'amount', 'outcome', 'balance after', 'worker'],
        recent.map((t) => [
          t.processedAt,
          t.id,
          t.counterpartyAccountId === null ? t.type : `${t.type} ${t.direction === 'in' ? 'from' : 'to'} ${t.counterpartyAccountId}`,
          t.amountMinor === null ? '' : `${t.direction === 'in' ? '+' : ''}${formatAmount(t.amountMinor, account.currency)}`,
          t.status === 'rejected' ? `rejected: ${t.reason}` : t.status,
          t.balanceAfterMinor === null ? '' : formatAmount(t.balanceAfterMinor, account.currency),
          t.workerId,
        ]),
      ),
    );
  });
}

export function registerAccounts(program: Command): void {
  const accounts = program
    .command('accounts')
    .description('create and read customer accounts')
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim accounts seed --count 100\n  $ txsim accounts list --limit 10\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    );
  accounts
    .command('seed')
    .description('create customer accounts with an opening balance posted to the ledger (idempotent)')
    .requiredOption('--count <n>', 'how many accounts')
    .option('--first-id <id>', 'id of the first account', '1')
    .option('--opening-balance <minor>', 'opening balance in minor units (cents)', '100000')
    .option('--currency <code>', 'currency of the accounts', 'EUR')
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim accounts seed --count 100\n  $ txsim accounts seed --count 50 --first-id 1001 --currency USD --opening-balance 0\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(
      async (opts: { count: string; firstId: string; openingBalance: string; currency: string; json?: boolean }, command: Command) => {
        await handleAccountsSeed(contextFor(command), {
          count: parseIntFlag('--count', opts.count, 0, 1, 10_000_000),
          firstId: parseIntFlag('--first-id', opts.firstId, 1, 1, 1_000_000_000),
          openingBalanceMinor: parseMinorFlag('--opening-balance', opts.openingBalance, 0n, 0n, 10n ** 18n),
          currency: parseCurrencyFlag('--currency', opts.currency, 'EUR'),
          json: Boolean(opts.json),
        });
      },
    );
  accounts
    .command('list')
    .description('list accounts with their balances')
    .option('--limit <n>', 'most rows', '50')
    .option('--system', 'list the system accounts instead')
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim accounts list --limit 10\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(async (opts: { limit: string; system?: boolean; json?: boolean }, command: Command) => {
      await handleAccountsList(contextFor(command), {
        limit: parseIntFlag('--limit', opts.limit, 50, 1, 100_000),
        system: Boolean(opts.system),
        json: Boolean(opts.json),
      });
    });
  accounts
    .command('show <id>')
    .description('balance and recent transactions of one account, with outcome and reason')
    .option('--limit <n>', 'recent transactions to show', '20')
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim accounts show 7\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(async (id: string, opts: { limit: string; json?: boolean }, command: Command) => {
      await handleAccountsShow(contextFor(command), parseIntFlag('<id>', id, 0, -10_000_000, Number.MAX_SAFE_INTEGER), {
        limit: parseIntFlag('--limit', opts.limit, 20, 1, 10_000),
        json: Boolean(opts.json),
      });
    });
}
