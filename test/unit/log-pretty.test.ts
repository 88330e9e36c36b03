import { Writable } from 'node:stream';
import { pino } from 'pino';
import { PinoPretty } from 'pino-pretty';
import { describe, expect, it } from 'vitest';
import { prettyOptions } from '../../src/log.js';

/** Renders one entry through pino-pretty with txsim's options and returns what a terminal would show. */
async function render(env: NodeJS.ProcessEnv, fields: Record<string, unknown>, msg: string): Promise<string> {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString('utf8');
      done();
    },
  });
  const pretty = PinoPretty({ ...prettyOptions(env), destination: sink, sync: true });
  const log = pino({ level: 'info' }, pretty);
  log.info(fields, msg);
  log.flush();
  await new Promise((resolve) => setTimeout(resolve, 20));
  return text;
}

describe('pretty logs on a terminal', () => {
  const fields = {
    workerId: 'w1',
    id: '0d9a8c1e-54f2-5b7c-9e21-3c4d5e6f7a8b',
    type: 'deposit',
    account: 42,
    amountMinor: 1299,
    outcome: 'applied',
    latencyMs: 12,
  };

  it('print one line per transaction, fields included', async () => {
    const text = await render({}, fields, 'applied');
    expect(text.trimEnd().split('\n')).toHaveLength(1);
    expect(text).toContain('applied');
    expect(text).toContain('"account":42');
  });

  it('carry no colour codes when NO_COLOR is set', async () => {
    const text = await render({ NO_COLOR: '1' }, fields, 'applied');
    expect(text).not.toContain('\u001b[');
  });
});
