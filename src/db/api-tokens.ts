import { ensureSystemAccounts } from './accounts.js';
import type { Knex } from './knex.js';
import { isDuplicateKey, withTransaction } from './with-transaction.js';

/** Storage of the API's bearer tokens and users (sql/003-serve-api.sql). */

export interface TokenRow {
  readonly id: string;
  readonly secretHash: string;
  readonly isAdmin: boolean;
  readonly accountId: number | null;
  readonly label: string | null;
  readonly createdAt: Date;
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
}

interface RawTokenRow {
  id: string;
  secret_hash: string;
  is_admin: number;
  account_id: string | null;
  label: string | null;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
}

function tokenOfRow(r: RawTokenRow): TokenRow {
  return {
    id: r.id,
    secretHash: r.secret_hash,
    isAdmin: Number(r.is_admin) === 1,
    accountId: r.account_id === null ? null : Number(r.account_id),
    label: r.label,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
  };
}

export async function insertToken(db: Knex | Knex.Transaction, token: Omit<TokenRow, 'revokedAt'>): Promise<void> {
  await db('api_tokens').insert({
    id: token.id,
    secret_hash: token.secretHash,
    is_admin: token.isAdmin ? 1 : 0,
    account_id: token.accountId,
    label: token.label,
    created_at: token.createdAt,
    expires_at: token.expiresAt,
  });
}

export async function findToken(db: Knex, id: string): Promise<TokenRow | undefined> {
  const row = (await db('api_tokens').where('id', id).first()) as RawTokenRow | undefined;
  return row ? tokenOfRow(row) : undefined;
}

/** Tokens in creation order, newest last; at most `limit`. */
export async function listTokens(db: Knex, limit: number): Promise<TokenRow[]> {
  const rows = (await db('api_tokens').orderBy('created_at', 'asc').limit(limit).select()) as RawTokenRow[];
  return rows.map(tokenOfRow);
}

/** Marks a token revoked; false when there is no such token (or it was already revoked). */
export async function revokeToken(db: Knex, id: string, now: Date = new Date()): Promise<boolean> {
  const changed = await db('api_tokens').where('id', id).whereNull('revoked_at').update({ revoked_at: now });
  return changed > 0;
}

export interface UserRow {
  readonly username: string;
  readonly passwordHash: string;
  readonly accountId: number;
}

export async function findUser(db: Knex, username: string): Promise<UserRow | undefined> {
  const row = await db('api_users')
    .where('username', username)
    .first<{ username: string; password_hash: string; account_id: string } | undefined>('username', 'password_hash', 'account_id');
  return row ? { username: row.username, passwordHash: row.password_hash, accountId: Number(row.account_id) } : undefined;
}

export class UsernameTakenError extends Error {
  constructor(readonly username: string) {
    super(`username ${username} is taken`);
    this.name = 'UsernameTakenError';
  }
}

/** Another registration took the account id this one chose (it committed first): a fresh try picks the next. */
class AccountIdTakenError extends Error {
  constructor(readonly accountId: number) {
    super(`account ${accountId} was taken by a concurrent registration`);
    this.name = 'AccountIdTakenError';
  }
}

/** Tries of one registration before its error goes to the client (a 500): every lost race lets another registration through. */
const REGISTER_TRIES_MAX = 20;

/**
 * Registers a user: a new customer account (balance 0, the next free id) and the user row, in one
 * transaction; the account id is chosen under a lock on the highest account row. Registrations at
 * once can still collide there (each also locks the gap after that row, so InnoDB may call it a
 * deadlock, or one inserts the id another just committed): the loser tries again from the start.
 * Throws UsernameTakenError when the name exists.
 */
export async function registerUser(
  db: Knex,
  user: { username: string; passwordHash: string; currency: string; token: Omit<TokenRow, 'revokedAt' | 'accountId'> },
  now: Date = new Date(),
): Promise<{ accountId: number }> {
  try {
    return await withTransaction(
      db,
      async (trx) => {
        // The worker posts against the currency's system accounts: a new currency needs them first.
        await ensureSystemAccounts(trx, user.currency);
        const [[top]] = (await trx.raw('SELECT COALESCE(MAX(id), 0) AS id FROM accounts WHERE id > 0 FOR UPDATE')) as [[{ id: string }]];
        const accountId = Number(top.id) + 1;
        try {
          await trx('accounts').insert({
            id: accountId,
            kind: 'customer',
            name: `User ${user.username}`.slice(0, 100),
            currency: user.currency,
            balance_minor: '0',
          });
        } catch (err) {
          throw isDuplicateKey(err) ? new AccountIdTakenError(accountId) : err;
        }
        await trx('api_users').insert({
          username: user.username,
          password_hash: user.passwordHash,
          account_id: accountId,
          created_at: now,
        });
        await insertToken(trx, { ...user.token, accountId });
        return { accountId };
      },
      { deadlockRetriesMax: REGISTER_TRIES_MAX - 1, retryWhen: (err) => err instanceof AccountIdTakenError },
    );
  } catch (err) {
    if (isDuplicateKey(err) && String((err as Error).message).includes('PRIMARY') && String((err as Error).message).includes('api_users')) {
      throw new UsernameTakenError(user.username);
    }
    // MariaDB names the key, not the table, in its duplicate message.
    if (isDuplicateKey(err) && (await findUser(db, user.username))) throw new UsernameTakenError(user.username);
    throw err;
  }
}

/** Token ids per query of readTokenLifetimes: bounds the statement however many sockets are open. */
const TOKEN_IDS_PER_QUERY_MAX = 1_000;

/** What decides whether a token still works, beside its secret. */
export type TokenLifetime = Pick<TokenRow, 'revokedAt' | 'expiresAt'>;

/**
 * When the given tokens were revoked and expire, by id; a deleted token is absent. One query per
 * TOKEN_IDS_PER_QUERY_MAX ids.
 */
export async function readTokenLifetimes(db: Knex, ids: readonly string[]): Promise<Map<string, TokenLifetime>> {
  const lifetimes = new Map<string, TokenLifetime>();
  for (let i = 0; i < ids.length; i += TOKEN_IDS_PER_QUERY_MAX) {
    const rows = await db('api_tokens')
      .whereIn('id', ids.slice(i, i + TOKEN_IDS_PER_QUERY_MAX))
      .select<{ id: string; revoked_at: Date | null; expires_at: Date | null }[]>('id', 'revoked_at', 'expires_at');
    for (const row of rows) lifetimes.set(row.id, { revokedAt: row.revoked_at, expiresAt: row.expires_at });
  }
  return lifetimes;
}
