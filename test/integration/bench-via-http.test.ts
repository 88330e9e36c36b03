import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BenchReport } from '../../src/bench/bench.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim } from '../helpers/txsim.js';
import { removeBenchNamespace } from './bench-helpers.js';

/**
 * `txsim bench --via http`: the bench starts its own `txsim serve` (with an admin token it creates)
 * and posts through it; the report carries requests/s and request latency beside the usual figures.
 * Small sizes only: this is a test, not a benchmark.
 */
describe('txsim bench --via http', () => {
  let ns: TestNamespace;
  let dir = '';

  beforeAll(async () => {
    ns = await createTestNamespace('benchhttp');
    dir = mkdtempSync(join(tmpdir(), 'txsim-bench-http-'));
  });

  afterAll(async () => {
    await removeBenchNamespace(ns);
    rmSync(dir, { recursive: true, force: true });
  });

  const bench = (args: string[]) =>
    runTxsim(['bench', '--via', 'http', '--seed', 'it-http', '--workers', '2', '--accounts', '200', ...args], ns.env, 180_000);

  it('JSON and HTML: every accepted request has its outcome, poison refused at the door, HTTP figures reported', async () => {
    const html = join(dir, 'report.html');
    const result = await bench(['--count', '2000', '--invalid', '0.05', '--concurrency', '20', '--json', '--html', html]);
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as BenchReport;
    expect(report).toMatchObject({ via: 'http', published: 2000, drained: true, verifyOk: true, lost: 0, duplicated: 0 });
    const http = report.http!;
    const refused = http.byStatus['400'] ?? 0;
    expect(refused).toBeGreaterThan(0);
    expect(report.confirmed + refused).toBe(2000);
    // The default mix's authorizations are card flows: each capture, void or refund is a request of its
    // own, accepted (a flow's poison is the worker's to reject, not the API's), and has its outcome.
    expect(report.followUps).toBeGreaterThan(0);
    expect(http.byStatus['202']).toBe(report.confirmed + report.followUps);
    expect(report.outcomes).toBe(report.confirmed + report.followUps);
    expect(http.concurrency).toBe(20);
    expect(http.noAnswer).toBe(0);
    expect(http.requestsPerS).toBeGreaterThan(0);
    expect(http.requestLatencyMs.count).toBe(2000 + report.followUps);
    expect(http.requestLatencyMs.p50).toBeGreaterThan(0);
    expect(http.requestLatencyMs.p50).toBeLessThanOrEqual(http.requestLatencyMs.p99);
    expect(report.cpuPctAvg.serve).toBeGreaterThan(0);
    const page = readFileSync(html, 'utf8');
    expect(page).toContain('HTTP req/s, request p50 / p99 ms');
    expect(page).toContain(`${http.requestsPerS}, ${http.requestLatencyMs.p50} / ${http.requestLatencyMs.p99}`);
  });

  it('text: the HTTP lines beside the usual ones', async () => {
    const result = await bench(['--count', '300', '--mix', 'v1']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/via http \(50 at once\)/);
    expect(result.stdout).toMatch(/http requests\s+\d+ req\/s, 50 at once via http:\/\/127\.0\.0\.1:\d+ \(202 ×300\)/);
    expect(result.stdout).toMatch(/request latency\s+p50 \d+/);
    expect(result.stdout).toMatch(/verify\s+OK/);
  });

  it('--via other than amqp or http is a usage error', async () => {
    const result = await runTxsim(['bench', '--via', 'grpc'], ns.env);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--via: "grpc" must be amqp or http');
  });
});
