// What this machine charges a process for being woken up, apart from any work: two Node processes pass
// a 64-byte message back and forth over loopback TCP (Nagle off), paced at each rate and then flat out,
// and each reads its own CPU time (getrusage, as /proc/<pid>/stat counts it). The work per round trip is
// the same at every rate; what changes is how often a process sleeps and is woken. Flat out, a round trip
// finds both processes awake; paced, each one is woken from idle — and on a virtual machine a wake-up can
// cost far more than the work. A paced `txsim bench` hands every message from process to process several
// times (gen → broker → worker → database → worker → broker → gen), so its CPU per transaction at a
// moderate rate follows this figure, not the pipeline's code.
//   node scripts/wakeup-cost.mjs [seconds=8] [rates=250,1000,4000,0]     (0 = flat out)
// Run it on an otherwise idle machine; it needs nothing else.
import { Buffer } from 'node:buffer';
import { fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import net from 'node:net';
import { parseIntFlag } from '../dist/config/parse.js';

const SELF = new URL(import.meta.url).pathname;

if (process.argv[2] === '--echo') {
  // The other side: echoes every chunk, reports its CPU time from the connection on when asked.
  let start = process.cpuUsage();
  const server = net.createServer((socket) => {
    start = process.cpuUsage();
    socket.setNoDelay(true);
    socket.on('data', (chunk) => socket.write(chunk));
  });
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
  process.on('message', () => {
    const used = process.cpuUsage(start);
    process.send({ cpuUs: used.user + used.system }, () => process.exit(0));
  });
} else {
  let seconds, rates;
  try {
    seconds = parseIntFlag('seconds', process.argv[2], 8, 2, 120);
    rates = (process.argv[3] ?? '250,1000,4000,0').split(',').map((r) => parseIntFlag('rates', r, 0, 0, 100_000));
  } catch (err) {
    console.error(`wakeup-cost: ${err.message}`);
    console.error(
      'usage: node scripts/wakeup-cost.mjs [seconds=8] [rates=250,1000,4000,0]   (rates in round trips a second, 0 = flat out)',
    );
    process.exit(2);
  }
  const results = [];
  for (const rate of rates) results.push(await measure(rate, seconds));
  const flat = results.find((r) => r.rate === 0);
  console.log(`CPU µs per round trip of a 64-byte message between two processes over loopback, ${seconds} s at each rate:`);
  for (const r of results) {
    const total = r.clientUs + r.echoUs;
    console.log(
      `  ${(r.rate === 0 ? 'flat out' : `${r.rate}/s`).padEnd(9)} ${String(r.perS).padStart(6)} round trips/s: ` +
        `sender ${r.clientUs.toFixed(1)}, echo ${r.echoUs.toFixed(1)}, both ${total.toFixed(1)}` +
        (flat && r !== flat ? ` (${(total / (flat.clientUs + flat.echoUs)).toFixed(1)} × flat out)` : ''),
    );
  }
}

/** Round trips at `rate` a second (0: each as soon as the last returns) for `seconds`; CPU µs per round trip of each side. */
async function measure(rate, seconds) {
  const echo = fork(SELF, ['--echo']);
  const { port } = await new Promise((resolve) => echo.once('message', resolve));
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise((resolve) => socket.once('connect', resolve));
  const message = Buffer.alloc(64, 1);
  let answered = null;
  socket.on('data', () => answered?.());
  const roundTrip = () =>
    new Promise((resolve) => {
      answered = resolve;
      socket.write(message);
    });
  let n = 0;
  const started = performance.now();
  const cpuAtStart = process.cpuUsage();
  while (performance.now() - started < seconds * 1000) {
    if (rate > 0) {
      const waitMs = started + (n * 1000) / rate - performance.now();
      if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
    await roundTrip();
    n++;
  }
  const own = process.cpuUsage(cpuAtStart);
  const elapsedS = (performance.now() - started) / 1000;
  echo.send('cpu');
  const { cpuUs } = await new Promise((resolve) => echo.once('message', resolve));
  socket.destroy();
  return { rate, perS: Math.round(n / elapsedS), clientUs: (own.user + own.system) / n, echoUs: cpuUs / n };
}
