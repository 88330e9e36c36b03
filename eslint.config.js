// ESLint flat config: typescript-eslint's type-checked rules over src/ and test/ (`npm run lint`, run by
// `npm test`). Formatting is Prettier's job (.prettierrc.json); nothing here is stylistic.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

// The few Node globals the plain .js/.mjs files use (the `globals` package is not a dependency).
const nodeGlobals = {
  process: 'readonly',
  console: 'readonly',
  URL: 'readonly',
  setTimeout: 'readonly',
  clearTimeout: 'readonly',
};

export default defineConfig(
  { ignores: ['dist/', 'node_modules/', 'coverage/', '.txsim/'] },
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        // One program for src/, test/ and vitest.config.ts: tsconfig.json alone leaves the tests out.
        project: './tsconfig.test.json',
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // An unawaited promise in a consume callback is a lost message (STYLE.md 17).
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // `return promise` inside try/catch/finally skips the catch and runs the finally (closing the channel)
      // before the promise settles; only that case, not `return await` as a style.
      '@typescript-eslint/return-await': ['error', 'error-handling-correctness-only'],
      // From the strict set: a deprecated amqplib/knex/Node API in use says so in the lint output.
      '@typescript-eslint/no-deprecated': 'error',
      // A new transaction kind or failure class must not fall through a switch unhandled: a switch over a
      // union names every member (a `default` does not excuse a missing one); one over a plain string or
      // number has a `default`.
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { requireDefaultForNonUnion: true }],
      // `_`-prefixed names mark a parameter or binding kept for its position (a callback's signature).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
    },
  },
  {
    // Tests read rows, JSON output and broker messages whose shape is exactly what they assert: an `any` there
    // is checked by the assertion that follows, and a cast before every `expect` would only restate it. The
    // rest of the type-checked rules (floating promises above all) apply to tests as to src/.
    files: ['test/**/*.{ts,tsx}'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
    },
  },
  {
    // Plain JavaScript (this file, scripts/*.mjs) is outside the TypeScript program: no type-aware rules.
    files: ['**/*.{js,mjs,cjs}'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: nodeGlobals },
  },
);
