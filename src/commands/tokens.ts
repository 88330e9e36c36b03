import type { Command } from 'commander';
import { insertToken, listTokens, revokeToken } from '../db/api-tokens.js';
import { getAccount } from '../db/accounts.js';
import { parseIntFlag } from '../config/parse.js';
import { NotFoundError, UsageError } from '../errors.js';
import { newToken, parseTtlMs } from '../serve/credentials.js';
import { withDatabase } from './accounts.js';
import { contextFor, type CommandContext } from './context.js';
import { table, toJson } from './format.js';

export interface CreateTokenOptions {
  readonly admin: boolean;
  readonly accountId: number | null;
  readonly ttlMs: number | null;
  readonly label: string | null;
  readonly json: boolean;
}

/** Creates a token and prints it once; only its hash is stored. */
export async function handleTokensCreate(ctx: CommandContext, options: CreateTokenOptions): Promise<void> {
  const token = newToken();
  const now = new Date();
  const expiresAt = options.ttlMs === null ? null : new Date(now.getTime() + options.ttlMs);
  await withDatabase(ctx, async (db) => {
    if (options.accountId !== null) {
      const account = await getAccount(db, options.accountId);
      if (!account || account.kind !== 'customer') throw new NotFoundError(`customer account ${options.accountId} not found`);
    }
    await insertToken(db, {
      id: token.id,
      secretHash: token.secretHash,
      isAdmin: options.admin,
      accountId: options.accountId,
      label: options.label,
      createdAt: now,
      expiresAt,
    });
  });
  if (options.json)
    return ctx.out(
      toJson({
        id: token.id,
        token: token.token,
        admin: options.admin,
        accountId: options.accountId,
        expiresAt: expiresAt?.toISOString() ?? null,
      }),
    );
  ctx.out(token.token);
  process.stderr.write(
    `token ${token.id} (${options.admin ? 'admin' : `account ${options.accountId}`}${expiresAt ? `, expires ${expiresAt.toISOString()}` : ''}): shown once, stored only as a hash\n`,
  );
}

export async function handleTokensList(ctx: CommandContext, options: { json: boolean; limit: number }): Promise<void> {
  const tokens = await withDatabase(ctx, (db) => listTokens(db, options.limit));
  const rows = tokens.map((t) => ({
    id: t.id,
    scope: t.isAdmin ? 'admin' : `account ${t.accountId}`,
    label: t.label,
    createdAt: t.createdAt.toISOString(),
    expiresAt: t.expiresAt?.toISOString() ?? null,
    revokedAt: t.revokedAt?.toISOString() ?? null,
  }));
  if (options.json) return ctx.out(toJson(rows));
  ctx.out(
    table(
      ['id', 'scope', 'label', 'created', 'expires', 'revoked'],
      rows.map((r) => [r.id, r.scope, r.label, r.createdAt, r.expiresAt ?? '-', r.revokedAt ?? '-']),
    ),
  );
}

export async function handleTokensRevoke(ctx: CommandContext, id: string): Promise<void> {
  const revoked = await withDatabase(ctx, (db) => revokeToken(db, id));
  if (!revoked) throw new NotFoundError(`no active token ${id}`);
  ctx.out(`revoked token ${id}`);
}

/** `txsim tokens create | list | revoke`. */
export function registerTokens(program: Command): void {
  const tokens = program
    .command('tokens')
    .description('bearer tokens of the HTTP API (txsim serve)')
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim tokens create --admin\n  $ txsim tokens list\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    );
  tokens
    .command('create')
    .description('create a token and print it once (stored only as a hash)')
    .option('--admin', 'a token that may do everything')
    .option('--account <id>', 'a token that acts for this customer account only')
    .option('--ttl <duration>', 'lifetime, e.g. 30d, 12h, 15m (default: no expiry)')
    .option('--label <text>', 'a note shown by `tokens list`')
    .option('--json', 'print {"token": …} as JSON')
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim tokens create --account 42 --ttl 30d --json\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(async (opts: { admin?: boolean; account?: string; ttl?: string; label?: string; json?: boolean }, command: Command) => {
      if (Boolean(opts.admin) === (opts.account !== undefined))
        throw new UsageError('tokens create: give exactly one of --admin or --account <id>');
      const ttlMs = opts.ttl === undefined ? null : parseTtlMs(opts.ttl);
      if (opts.ttl !== undefined && ttlMs === null)
        throw new UsageError(`--ttl: "${opts.ttl}" is not a duration like 30d, 12h, 15m or 45s`);
      await handleTokensCreate(contextFor(command), {
        admin: Boolean(opts.admin),
        accountId: opts.account === undefined ? null : parseIntFlag('--account', opts.account, 0, 1),
        ttlMs,
        label: opts.label?.slice(0, 100) ?? null,
        json: Boolean(opts.json),
      });
    });
  tokens
    .command('list')
    .description('list tokens (never their secrets)')
    .option('--limit <n>', 'at most this many', '1000')
    .option('--json', 'as JSON')
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim tokens list --json\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(async (opts: { limit?: string; json?: boolean }, command: Command) => {
      await handleTokensList(contextFor(command), {
        json: Boolean(opts.json),
        limit: parseIntFlag('--limit', opts.limit, 1000, 1, 100_000),
      });
    });
  tokens
    .command('revoke <id>')
    .description('revoke a token: it gets 401 from then on')
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim tokens revoke 0f1e2d3c4b5a6978\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(async (id: string, _opts: unknown, command: Command) => {
      if (!/^[0-9a-f]{16}$/.test(id)) throw new UsageError(`tokens revoke: "${id}" is not a token id (16 hex characters, see tokens list)`);
      await handleTokensRevoke(contextFor(command), id);
    });
}
