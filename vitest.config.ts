import { defineConfig } from 'vitest/config';

// Unit tests are pure and run in parallel; integration and browser tests talk to the real RabbitMQ
// and database, share those two servers, and therefore run one file at a time.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.{ts,tsx}'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 60_000,
          globalSetup: ['test/helpers/global-setup.ts'],
        },
      },
      {
        // The dashboard and the bench HTML report in a real Chromium (Debian's /usr/bin/chromium, driven by
        // playwright-core) against the real services, one file at a time like integration.
        test: {
          name: 'browser',
          include: ['test/browser/**/*.test.ts'],
          environment: 'node',
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 90_000,
          globalSetup: ['test/helpers/global-setup.ts'],
        },
      },
      {
        // The fault suite breaks the real services on purpose (needs root): `npm run test:faults`.
        test: {
          name: 'faults',
          include: ['test/faults/**/*.test.ts'],
          environment: 'node',
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 180_000,
          globalSetup: ['test/helpers/global-setup.ts'],
        },
      },
      {
        // A seeded chaos run (`npm run test:chaos -- --seed S --duration 120`): breaks the real services on a
        // schedule drawn from the seed (needs root); scripts/chaos.sh sets CHAOS_SEED and CHAOS_DURATION_S.
        test: {
          name: 'chaos',
          include: ['test/chaos/**/*.test.ts'],
          environment: 'node',
          fileParallelism: false,
          // The chaos test sets its own timeout from the run's duration (test/chaos/schedule.ts chaosBudget).
          testTimeout: 1_800_000,
          hookTimeout: 180_000,
          globalSetup: ['test/helpers/global-setup.ts'],
        },
      },
    ],
  },
});
