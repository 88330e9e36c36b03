import type { AccountingEvent } from '../domain/accounting-event.js';
import type { AttemptEvent } from '../domain/attempt-event.js';
import type { StageEvent, StagePhase, StageResult } from '../domain/stage-event.js';
import { mayActFor, type Principal } from './principal.js';

/**
 * The live feed's subscriptions and fan-out, without sockets or brokers (so it is unit-tested as a
 * plain object). A client is anything with `send`, `bufferedBytes` and `close`; the WebSocket route
 * adapts a `ws` socket to it.
 */

/** The states a transaction goes through, as pushed to subscribers. */
export type FeedState = 'accepted' | 'queued' | 'retrying' | 'parked' | 'applied' | 'rejected';

/**
 * States after which nothing more happens by itself. `parked` is not one: an operator may replay
 * the message (`txsim replay-dead`), and it is then retried, applied or rejected like any other.
 */
export const FINAL_STATES: ReadonlySet<FeedState> = new Set(['applied', 'rejected']);

/**
 * One pushed event (money as strings of minor units, like the accounting event). `stage` is not a
 * state but a step of a worker's simulated processing stages (`worker --emit-stage-events`): it
 * carries `stage` and never ends a subscription.
 */
export interface FeedEvent {
  readonly event: FeedState | 'stage';
  readonly transactionId: string;
  readonly accountId: number | null;
  readonly type: string | null;
  readonly amountMinor: string | null;
  readonly currency: string | null;
  readonly balanceAfterMinor: string | null;
  readonly reason: string | null;
  readonly at: string;
  /** `retrying` and `parked` only: the attempt that failed and why (the worker's error code and first line). */
  readonly attempt?: number;
  readonly lastError?: { readonly code: string; readonly message: string };
  /** `stage` only: which stage (and its place in the walk), entered (`start`) or left (`end`, with result and time). */
  readonly stage?: {
    readonly name: string;
    readonly index: number;
    readonly phase: StagePhase;
    readonly result: StageResult | null;
    readonly durationMs: number | null;
    readonly workerId: string;
  };
}

export function feedEventOf(event: AccountingEvent): FeedEvent {
  return {
    event: event.outcome,
    transactionId: event.transactionId,
    accountId: event.accountId,
    type: event.type,
    amountMinor: event.amountMinor?.toString() ?? null,
    currency: event.currency,
    balanceAfterMinor: event.balanceAfterMinor?.toString() ?? null,
    reason: event.reason,
    at: event.occurredAt,
  };
}

/** The feed event of an attempt event: a retry scheduled, the message parked, or put back by `replay-dead` (`queued` again). */
export function feedEventOfAttempt(event: AttemptEvent): FeedEvent {
  const base: FeedEvent = {
    event: event.state === 'replayed' ? 'queued' : event.state,
    transactionId: event.transactionId,
    accountId: event.accountId,
    type: event.type,
    amountMinor: event.amountMinor,
    currency: event.currency,
    balanceAfterMinor: null,
    reason: null,
    at: event.at,
  };
  // A replay is no failed attempt: its `queued` carries neither.
  return event.state === 'replayed'
    ? base
    : { ...base, attempt: event.attempt, lastError: { code: event.errorCode, message: event.errorMessage } };
}

/** The feed event of a worker's stage event (one stage of one attempt entered or left). */
export function feedEventOfStage(event: StageEvent): FeedEvent {
  return {
    event: 'stage',
    transactionId: event.transactionId,
    accountId: event.accountId,
    type: event.type,
    amountMinor: null,
    currency: null,
    balanceAfterMinor: null,
    reason: null,
    at: event.at,
    attempt: event.attempt,
    stage: {
      name: event.stage,
      index: event.stageIndex,
      phase: event.phase,
      result: event.result,
      durationMs: event.durationMs,
      workerId: event.workerId,
    },
  };
}

export interface FeedClient {
  send(text: string): void;
  /** Bytes queued in the socket and not yet written. */
  readonly bufferedBytes: number;
  close(code: number, reason: string): void;
}

export type Subscription =
  { readonly kind: 'transaction'; readonly id: string } | { readonly kind: 'account'; readonly id: number } | { readonly kind: 'all' };

/** WebSocket close codes the feed uses. */
export const CLOSE = {
  /** A transaction subscription reached its final state. */
  normal: 1000,
  /** The client fell too far behind: it is disconnected rather than slowing anyone down. */
  tooSlow: 1013,
  goingAway: 1001,
  /** The client's token stopped working (revoked or expired) while it was connected. */
  policy: 1008,
} as const;

/**
 * One transaction a client follows. Its final state can come two ways — a live event, and the read
 * made when the client subscribed — and goes out once: the watch stays until both the read has
 * answered and the final state was sent, then it is forgotten (a later subscribe to the same id is a
 * new watch, answered anew).
 */
interface TransactionWatch {
  /** The subscribe-time read has not answered yet. */
  reading: boolean;
  /** The final state went out (live, while the read was running); the read's answer is then dropped. */
  finalSent: boolean;
}

interface ClientState {
  readonly principal: Principal;
  readonly transactions: Map<string, TransactionWatch>;
  readonly accounts: Set<number>;
  all: boolean;
  closed: boolean;
}

/** What a subscribe did: registered, already there (nothing more to do), or refused over the bound. */
export type SubscribeResult = 'ok' | 'already' | 'too_many';

export interface FeedHubOptions {
  /** A client with more than this many bytes unsent is told and disconnected. */
  readonly sendBufferBytesMax: number;
  /** Most subscriptions one client may hold. */
  readonly subscriptionsMax: number;
}

export class FeedHub {
  private readonly clients = new Map<FeedClient, ClientState>();
  private readonly byTransaction = new Map<string, Set<FeedClient>>();
  private readonly byAccount = new Map<number, Set<FeedClient>>();
  private readonly allClients = new Set<FeedClient>();

  constructor(private readonly options: FeedHubOptions) {}

  get clientCount(): number {
    return this.clients.size;
  }

  add(client: FeedClient, principal: Principal): void {
    this.clients.set(client, { principal, transactions: new Map(), accounts: new Set(), all: false, closed: false });
  }

  remove(client: FeedClient): void {
    const state = this.clients.get(client);
    if (!state) return;
    state.closed = true;
    for (const id of state.transactions.keys()) this.unindex(this.byTransaction, id, client);
    for (const id of state.accounts) this.unindex(this.byAccount, id, client);
    this.allClients.delete(client);
    this.clients.delete(client);
  }

  /**
   * Registers a subscription (authorization is the caller's: it knows the transaction's account).
   * Registered before the caller reads the current state, so an event between the two is not lost;
   * the caller then hands the read's result to `answerSubscribe`. A subscription the client holds
   * already is `already`: nothing to read again, and it does not count twice against the bound.
   */
  subscribe(client: FeedClient, subscription: Subscription): SubscribeResult {
    const state = this.clients.get(client);
    if (!state) return 'ok';
    if (subscription.kind === 'transaction' && state.transactions.has(subscription.id)) return 'already';
    if (subscription.kind === 'account' && state.accounts.has(subscription.id)) return 'already';
    if (subscription.kind !== 'all' && state.transactions.size + state.accounts.size >= this.options.subscriptionsMax) return 'too_many';
    if (subscription.kind === 'transaction') {
      state.transactions.set(subscription.id, { reading: true, finalSent: false });
      this.index(this.byTransaction, subscription.id, client);
    } else if (subscription.kind === 'account') {
      state.accounts.add(subscription.id);
      this.index(this.byAccount, subscription.id, client);
    } else {
      state.all = true;
      this.allClients.add(client);
    }
    return 'ok';
  }

  /**
   * The subscribe-time read of a transaction answered: `event` is its current state, or null when
   * the client may not know of it (never seen, or another account's — answered alike, so the feed
   * does not tell which ids exist). Null is acknowledged as `status: unknown` and the watch waits.
   */
  answerSubscribe(client: FeedClient, id: string, event: FeedEvent | null): void {
    const state = this.clients.get(client);
    const watch = state?.transactions.get(id);
    if (!state || !watch) return;
    watch.reading = false;
    if (watch.finalSent) {
      state.transactions.delete(id); // its final state went out live meanwhile: said once is enough
      return;
    }
    if (event === null) {
      if (!state.closed) client.send(JSON.stringify({ subscribed: { kind: 'transaction', id }, status: 'unknown' }));
      return;
    }
    this.deliver(client, event);
  }

  /** Takes back a transaction subscription (its subscribe-time read failed: the client may simply subscribe again). */
  unsubscribeTransaction(client: FeedClient, id: string): void {
    const state = this.clients.get(client);
    if (!state) return;
    state.transactions.delete(id);
    this.unindex(this.byTransaction, id, client);
  }

  /** The tokens of the open clients (`--no-auth` clients have none): the server re-checks them while they are connected. */
  tokenIds(): Set<string> {
    const ids = new Set<string>();
    for (const { principal, closed } of this.clients.values()) if (!closed && principal.tokenId !== null) ids.add(principal.tokenId);
    return ids;
  }

  /**
   * Closes every client of a token that stopped working with 1008 (policy violation) and forgets them
   * at once, so nothing more is delivered while the close handshake runs. Returns how many it closed.
   */
  closeToken(tokenId: string, reason: string): number {
    let count = 0;
    for (const [client, state] of this.clients) {
      if (state.principal.tokenId !== tokenId) continue;
      if (!state.closed) {
        client.close(CLOSE.policy, reason);
        count++;
      }
      this.remove(client);
    }
    return count;
  }

  /** Transaction ids some client waits on (re-read from the database after the feed reconnects). */
  openTransactions(): string[] {
    return [...this.byTransaction.keys()];
  }

  /** Pushes one event to everyone subscribed to it: its transaction, its account, or everything. */
  publish(event: FeedEvent): void {
    const targets = new Set<FeedClient>(this.allClients);
    if (event.accountId !== null) for (const c of this.byAccount.get(event.accountId) ?? []) targets.add(c);
    for (const c of this.byTransaction.get(event.transactionId) ?? []) targets.add(c);
    for (const client of targets) this.deliver(client, event);
  }

  private deliver(client: FeedClient, event: FeedEvent): void {
    const state = this.clients.get(client);
    if (!state || state.closed) return;
    // Scope is checked per event, not only at subscribe: a subscription to an id not seen yet must
    // not deliver another account's transaction that later turns up under it.
    if (!mayActFor(state.principal, event.accountId)) return;
    const final = event.event !== 'stage' && FINAL_STATES.has(event.event);
    const watch = state.transactions.get(event.transactionId);
    if (watch?.finalSent) return; // its final state went out already
    if (client.bufferedBytes > this.options.sendBufferBytesMax) {
      this.drop(client, state);
      return;
    }
    client.send(JSON.stringify(event));
    if (watch && final) this.finish(client, state, event.transactionId, watch);
  }

  /** A watched transaction's final state went out: the watch ends (once its read, if running, has answered). */
  private finish(client: FeedClient, state: ClientState, id: string, watch: TransactionWatch): void {
    watch.finalSent = true;
    this.unindex(this.byTransaction, id, client);
    if (!watch.reading) state.transactions.delete(id);
    // A connection made for one transaction ends with it; one that follows more stays open.
    const waiting = [...state.transactions.values()].some((w) => !w.finalSent);
    if (!waiting && state.accounts.size === 0 && !state.all) {
      state.closed = true;
      client.close(CLOSE.normal, 'final state sent');
    }
  }

  private drop(client: FeedClient, state: ClientState): void {
    state.closed = true;
    try {
      client.send(
        JSON.stringify({
          error: { code: 'too_slow', message: `more than ${this.options.sendBufferBytesMax} bytes unsent: disconnecting`, details: null },
        }),
      );
    } catch {
      // The socket is going anyway.
    }
    client.close(CLOSE.tooSlow, 'client too slow');
    this.remove(client);
  }

  private index<K>(map: Map<K, Set<FeedClient>>, key: K, client: FeedClient): void {
    const set = map.get(key);
    if (set) set.add(client);
    else map.set(key, new Set([client]));
  }

  private unindex<K>(map: Map<K, Set<FeedClient>>, key: K, client: FeedClient): void {
    const set = map.get(key);
    set?.delete(client);
    if (set?.size === 0) map.delete(key);
  }
}
