/**
 * The Node.js flags a worker process is best started with (bench starts its workers with them; the
 * compose file and scripts/demo.sh set them through NODE_OPTIONS).
 *
 * A worker's live heap under full load is 20–40 MB, but V8 lets the old generation grow to several
 * times its live size between full collections: flat out, a worker started without a cap reached
 * 156–194 MB of RSS, and with `--max-old-space-size=96` 134–135 MB at the same throughput and CPU per
 * transaction (BENCHMARKS.md, "Worker memory"). V8 collects harder as the cap nears and only fails when
 * live data exceeds it, which the default batch and prefetch sizes are far from; a worker run with a
 * much larger `--prefetch` or `--batch-size` should be given a larger cap.
 */
export const WORKER_NODE_OPTIONS: readonly string[] = ['--max-old-space-size=96'];
