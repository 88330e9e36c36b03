import type { Command } from 'commander';
import { parseCurrencyFlag, parseIntFlag } from '../config/parse.js';
import { getAccount, listAccounts, seedAccounts } from '../db/accounts.js';
import { checkDatabase, createDatabase, type Knex } from '../db/knex.js';
import { formatMinor, parseMinor } from '../domain/money.js';
import { NotFoundError } from '../errors.js';
import { contextFor, type CommandContext } from './context.js';
import { table, toJson } from './format.js';

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
}

export async function handleAccountsSeed(ctx: CommandContext, options: SeedOptions): Promise<number> {
  const created = await withDatabase(ctx, (db) => seedAccounts(db, options));
  const last = options.firstId + options.count - 1;
  ctx.out(`accounts ${options.firstId}..${last}: ${created} created, ${options.count - created} already existed (opening balance ${formatMinor(options.openingBalanceMinor, options.currency)})`);
  return created;
}

export async function handleAccountsList(ctx: CommandContext, options: { limit: number; system: boolean; json: boolean }): Promise<void> {
  const rows = await withDatabase(ctx, (db) => listAccounts(db, { kind: options.system ? 'system' : 'customer', limit: options.limit }));
  if (options.json) return ctx.out(toJson(rows));
  ctx.out(table(['id', 'name', 'currency', 'balance'], rows.map((a) => [a.id, a.name, a.currency, a.kind === 'system' ? '(sum of entries)' : formatMinor(a.balanceMinor)])));
}

export async function handleAccountsShow(ctx: CommandContext, id: number, options: { limit: number; json: boolean }): Promise<void> {
  await withDatabase(ctx, async (db) => {
    const account = await getAccount(db, id);
    if (!account) throw new NotFoundError(`account ${id} does not exist`);
    const [[entries]] = (await db.raw('SELECT COALESCE(SUM(amount_minor), 0) AS s, COUNT(*) AS n FROM ledger_entries WHERE account_id = ?', [id])) as [[{ s: string; n: string }]];
    const recent: Record<string, string | null>[] = await db('transactions')
      .where('account_id', id)
      .orderBy('processed_at', 'desc')
      .limit(options.limit)
      .select('id', 'type', 'amount_minor', 'status', 'reason', 'balance_after_minor', 'processed_at', 'worker_id');
    if (options.json) return ctx.out(toJson({ account, entriesSumMinor: entries.s, entries: Number(entries.n), recent }));
    ctx.out(`account ${account.id} — ${account.name} (${account.kind}, ${account.currency})`);
    ctx.out(`balance ${formatMinor(account.balanceMinor, account.currency)}; ${entries.n} ledger entries summing to ${formatMinor(parseMinor(entries.s), account.currency)}`);
    ctx.out('');
    ctx.out(
      table(
        ['processed', 'id', 'type', 'amount', 'outcome', 'balance after', 'worker'],
        recent.map((t) => [new Date(t.processed_at!).toISOString(), t.id, t.type, t.amount_minor ? formatMinor(BigInt(t.amount_minor)) : '', t.status === 'rejected' ? `rejected: ${t.reason}` : t.status, t.balance_after_minor ? formatMinor(BigInt(t.balance_after_minor)) : '', t.worker_id]),
      ),
    );
  });
}

export function registerAccounts(program: Command): void {
  const accounts = program.command('accounts').description('create and read customer accounts');
  accounts
    .command('seed')
    .description('create customer accounts with an opening balance posted to the ledger (idempotent)')
    .requiredOption('--count <n>', 'how many accounts')
    .option('--first-id <id>', 'id of the first account', '1')
    .option('--opening-balance <minor>', 'opening balance in minor units (cents)', '100000')
    .option('--currency <code>', 'currency of the accounts', 'EUR')
    .addHelpText('after', '\nExample:\n  $ txsim accounts seed --count 100\n  $ txsim accounts seed --count 50 --first-id 1001 --currency USD --opening-balance 0')
    .action(async (opts: { count: string; firstId: string; openingBalance: string; currency: string }, command: Command) => {
      await handleAccountsSeed(contextFor(command), {
        count: parseIntFlag('--count', opts.count, 0, 1, 10_000_000),
        firstId: parseIntFlag('--first-id', opts.firstId, 1, 1, 1_000_000_000),
        openingBalanceMinor: BigInt(parseIntFlag('--opening-balance', opts.openingBalance, 0, 0, 1_000_000_000_000_000)),
        currency: parseCurrencyFlag('--currency', opts.currency, 'EUR'),
      });
    });
  accounts
    .command('list')
    .description('list accounts with their balances')
    .option('--limit <n>', 'most rows', '50')
    .option('--system', 'list the system accounts instead')
    .option('--json', 'JSON output')
    .addHelpText('after', '\nExample:\n  $ txsim accounts list --limit 10')
    .action(async (opts: { limit: string; system?: boolean; json?: boolean }, command: Command) => {
      await handleAccountsList(contextFor(command), { limit: parseIntFlag('--limit', opts.limit, 50, 1, 100_000), system: Boolean(opts.system), json: Boolean(opts.json) });
    });
  accounts
    .command('show <id>')
    .description('balance and recent transactions of one account, with outcome and reason')
    .option('--limit <n>', 'recent transactions to show', '20')
    .option('--json', 'JSON output')
    .addHelpText('after', '\nExample:\n  $ txsim accounts show 7')
    .action(async (id: string, opts: { limit: string; json?: boolean }, command: Command) => {
      await handleAccountsShow(contextFor(command), parseIntFlag('<id>', id, 0, -10_000_000, Number.MAX_SAFE_INTEGER), { limit: parseIntFlag('--limit', opts.limit, 20, 1, 10_000), json: Boolean(opts.json) });
    });
}
