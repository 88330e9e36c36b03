// What RabbitMQ's CPU per message depends on, apart from txsim: the same traffic as `bench --ceiling`
// (163-byte persistent messages, publisher confirms with 1,000 in flight, one quorum queue, three
// consumers with prefetch 300 acking every 50) published four ways, alternated over several rounds:
//   base       the default exchange straight to the queue, no headers (the ceiling's publish)
//   headers    + gen's properties: a timestamp and its five x-txsim-* headers
//   topic      through a topic exchange bound on `tx.*` (txsim's transactions exchange)
//   txsim      both, and mandatory, into a queue with txsim's delivery limit and dead-letter target
// It prints the broker's (beam.smp's) CPU µs per message of each, from /proc, so it must run on the
// broker's host. Run it on an otherwise idle machine:
//   npm run build && node scripts/broker-cost.mjs [rounds=3] [messages=60000]
// Needs AMQP_URL (default amqp://guest:guest@127.0.0.1:5672); declares and deletes its own queue and
// exchange (`txsim.broker-cost.*`).
import { Buffer } from 'node:buffer';
import amqp from 'amqplib';
import { pidsNamed, CpuSampler } from '../dist/bench/cpu-sampler.js';
import { parseIntFlag } from '../dist/config/parse.js';
import { medianOf as median } from '../dist/stats/median.js';

let rounds, count;
try {
  rounds = parseIntFlag('rounds', process.argv[2], 3, 1, 20);
  count = parseIntFlag('messages', process.argv[3], 60_000, 1_000, 1_000_000);
} catch (err) {
  console.error(`broker-cost: ${err.message}`);
  console.error('usage: node scripts/broker-cost.mjs [rounds=3] [messages=60000]');
  process.exit(2);
}
const url = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const QUEUE = 'txsim.broker-cost.q';
const EXCHANGE = 'txsim.broker-cost.x';
const VARIANTS = {
  base: { headers: false, topic: false, txsim: false },
  headers: { headers: true, topic: false, txsim: false },
  topic: { headers: false, topic: true, txsim: false },
  txsim: { headers: true, topic: true, txsim: true },
};

const brokerPids = pidsNamed(['beam.smp']);
if (brokerPids.length === 0) {
  console.error('broker-cost: no beam.smp process on this host (RabbitMQ must run here to read its CPU)');
  process.exit(1);
}
const connection = await amqp.connect(url).catch((err) => {
  console.error(`broker-cost: RabbitMQ unreachable at ${url.replace(/\/\/[^@]*@/, '//***@')}: ${err.message}`);
  process.exit(1);
});

/** One run of `count` messages published the variant's way and consumed at once; broker µs per message. */
async function runOnce(variant) {
  const v = VARIANTS[variant];
  const setup = await connection.createChannel();
  await setup.deleteQueue(QUEUE);
  await setup.assertQueue(QUEUE, {
    durable: true,
    arguments: {
      'x-queue-type': 'quorum',
      ...(v.txsim ? { 'x-delivery-limit': 20, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': `${QUEUE}.dead` } : {}),
    },
  });
  await setup.assertExchange(EXCHANGE, 'topic', { durable: true });
  await setup.bindQueue(QUEUE, EXCHANGE, 'tx.*');
  let consumed = 0;
  let allConsumed;
  const done = new Promise((resolve) => (allConsumed = resolve));
  const consumers = [];
  for (let i = 0; i < 3; i++) {
    const channel = await connection.createChannel();
    await channel.prefetch(300);
    let mine = 0;
    await channel.consume(QUEUE, (m) => {
      mine++;
      consumed++;
      if (mine % 50 === 0 || consumed >= count) channel.ack(m, true);
      if (consumed >= count) allConsumed();
    });
    consumers.push(channel);
  }
  const publisher = await connection.createConfirmChannel();
  const body = Buffer.alloc(163, 'x');
  const runId = '6f1c2b3a-0000-4000-8000-000000000000';
  const cpu = new CpuSampler(brokerPids);
  const startedMs = Date.now();
  let inFlight = 0;
  const room = [];
  for (let i = 0; i < count; i++) {
    while (inFlight >= 1_000) await new Promise((resolve) => room.push(resolve));
    inFlight++;
    const options = { persistent: true, contentType: 'application/json', messageId: `m-${i}` };
    if (v.headers) {
      options.timestamp = Math.floor(Date.now() / 1000);
      options.headers = {
        'x-txsim-run': runId,
        'x-txsim-published-at': Date.now(),
        'x-txsim-account': String((i % 10_000) + 1),
        'x-txsim-account-seq': Math.floor(i / 10_000) + 1,
        'x-txsim-seq-stream': 1,
      };
    }
    if (v.txsim) options.mandatory = true;
    const confirmed = () => {
      inFlight--;
      room.shift()?.();
    };
    const writable = v.topic
      ? publisher.publish(EXCHANGE, 'tx.deposit', body, options, confirmed)
      : publisher.publish('', QUEUE, body, options, confirmed);
    if (!writable) await new Promise((resolve) => publisher.once('drain', resolve));
  }
  await done;
  const elapsedMs = Date.now() - startedMs;
  cpu.sample();
  const cpuMs = cpu.cpuSecondsSinceStart() * 1000;
  for (const c of [...consumers, publisher]) await c.close();
  await setup.deleteQueue(QUEUE);
  await setup.deleteExchange(EXCHANGE);
  await setup.close();
  return { usPerMessage: (cpuMs * 1000) / count, perS: Math.round((count * 1000) / elapsedMs) };
}

const results = Object.fromEntries(Object.keys(VARIANTS).map((k) => [k, []]));
for (let r = 1; r <= rounds; r++) {
  for (const variant of Object.keys(VARIANTS)) {
    const res = await runOnce(variant);
    results[variant].push(res);
    console.log(`round ${r} ${variant.padEnd(8)} broker ${res.usPerMessage.toFixed(1).padStart(5)} µs/message  ${res.perS} messages/s`);
  }
}
console.log(`\nmedian of ${rounds} rounds, ${count} messages each:`);
const base = median(results.base.map((x) => x.usPerMessage));
for (const [variant, rs] of Object.entries(results)) {
  const m = median(rs.map((x) => x.usPerMessage));
  console.log(`${variant.padEnd(8)} ${m.toFixed(1).padStart(5)} µs/message (${m >= base ? '+' : ''}${(m - base).toFixed(1)} against base)`);
}
await connection.close();
