// Turns the JSON reports of scripts/bench.sh (and the workers' CPU profiles) into BENCHMARKS.md.
// Usage (after npm run build): node scripts/bench-report.mjs <bench-json-dir> <cpu-profile-dir>
import { execSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { medianOf as median } from '../dist/stats/median.js';

const [benchDir = '.txsim/bench', profileDir = '.txsim/profiles'] = process.argv.slice(2);
const runs = readdirSync(benchDir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => ({ name: f.replace(/\.json$/, ''), ...JSON.parse(readFileSync(join(benchDir, f), 'utf8')) }))
  .sort((a, b) => order(a.name) - order(b.name));

function order(name) {
  // Repeats (`batched-3w-r2`) sort right after their first run.
  const [, base, repeat] = /^(.*?)(?:-r(\d+))?$/.exec(name);
  const at = [
    'per-message-3w',
    'batched-1w',
    'batched-2w',
    'batched-3w',
    'batched-3w-full-mix',
    'batched-3w-100acc',
    'batched-3w-hot',
    'paced-2000',
    'paced-2000-linger20',
    'profiled-3w',
    'soak-5000-5min',
  ].indexOf(base);
  return (at === -1 ? 99 : at) * 100 + Number(repeat ?? 1);
}
const sh = (cmd) => {
  try {
    return execSync(cmd, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
};

/** A second's hop latency as the bench prints it: `  p50/p99 queue 3/9 proc 5/6 commit 12/20 relay 40/90 e2e 30/61 ms`. */
function hopsText(hops) {
  if (!hops) return '';
  const names = [
    ['queue_wait', 'queue'],
    ['processing', 'proc'],
    ['commit', 'commit'],
    ['relay', 'relay'],
    ['end_to_end', 'e2e'],
  ];
  const parts = names.filter(([h]) => hops[h]).map(([h, n]) => `${n} ${hops[h].p50}/${hops[h].p99}`);
  return parts.length ? `  p50/p99 ${parts.join(' ')} ms` : '';
}

const out = [];
const p = (l = '') => out.push(l);
p('# txsim benchmarks');
p();
p(`Written by \`scripts/bench.sh\` on ${new Date().toISOString().slice(0, 10)}. Every figure below comes from a \`txsim bench\` run`);
p('on the machine described here; none is a timed assertion in a test.');
p();
p('## The machine');
p();
p(`- ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${sh('uname -sr')}`);
p(
  `- Node ${process.version}; ${sh("rabbitmqctl version 2>/dev/null | sed 's/^/RabbitMQ /'")}; ${sh("mariadb --version | sed -E 's/.*Distrib ([^,]+),.*/MariaDB \\1/'")}`,
);
p(
  `- MariaDB \`innodb_flush_log_at_trx_commit\` = ${sh("mariadb -uroot -N -e 'SELECT @@innodb_flush_log_at_trx_commit'")} (durable commits), \`innodb_buffer_pool_size\` = ${sh("mariadb -uroot -N -e 'SELECT @@innodb_buffer_pool_size DIV 1048576'")} MiB`,
);
p('- Broker, database, gen and workers all on this one box, over loopback. Messages persistent, publisher confirms on, quorum queues.');
p();
p('## Results');
p();
p('![End-to-end outcomes per second of the headline runs](docs/bench-headline.png)');
p();
p(
  'The headline chart (`docs/bench-headline.png`) and every run with its charts in `.txsim/bench/report.html` are written by the same `scripts/bench.sh` run (`txsim bench report … --html`, `scripts/bench-chart.mjs`).',
);
p();
p(
  '| run | workers | batch × in flight | accounts | hot share | rate asked | published | publish msg/s | end-to-end tx/s | confirm p99 ms | created→committed p50 / p99 / max ms | CPU % of one core: workers / broker / DB / gen | RSS of all workers first→last (max) MB; largest one worker max | verify |',
);
p('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of runs) {
  const o = r.options;
  p(
    `| ${r.name} | ${o.workers} | ${o.batchSizeMax} × ${o.transactionsMax} | ${o.accounts} | ${o.hotShare} | ${o.ratePerS || 'max'} | ${r.published} | ${r.publishRatePerS} | **${r.endToEndRatePerS}** | ${r.confirmLatencyMs.p99} | ${r.endToEndLatencyMs.p50} / ${r.endToEndLatencyMs.p99} / ${r.endToEndLatencyMs.max} | ${r.cpuPctAvg ? `${r.cpuPctAvg.workers} / ${r.cpuPctAvg.broker} / ${r.cpuPctAvg.database} / ${r.cpuPctAvg.gen}` : r.workerCpuPctAvg} | ${r.workerRssMbFirst}→${r.workerRssMbLast} (${r.workerRssMbMax}); ${r.workerRssMbPerWorker?.max ?? '–'} | ${r.verifyOk ? `OK, ${r.lost} lost, ${r.duplicated} dup` : 'FAILED'} |`,
  );
}
p();
// The cost of txsim's guarantees and where the CPU went: runs written before these fields show "–".
const ceilingCpu = (run) => {
  const c = run?.cpuUsPerTx;
  if (!c || c.total === null) return '–';
  const us = (k) => c.components[k] ?? '–';
  return `${c.total} (${us('consumers')} / ${us('broker')} / ${us('database')} / ${us('gen')})`;
};
const pct = (x) => (typeof x === 'number' ? `${(x * 100).toFixed(1)} %` : '–');
const mixOf = (o) =>
  o.mix
    ? Object.entries(o.mix)
        .filter(([, w]) => w > 0)
        .map(([t, w]) => `${t}=${w}`)
        .join(' ')
    : 'v1';
p('### Ceiling, efficiency and CPU per transaction');
p();
p(
  "ceiling: the same messages and rows through the same broker and database with no txsim logic (`bench --ceiling`); efficiency = end to end ÷ ceiling. CPU per applied transaction in µs, measured over the run per process (the relay runs inside the workers and is counted there); idle: the machine's idle share over the run (/proc/stat); disk: a 4 KiB write and fdatasync every 50 ms beside the run (`bench --disk-probe`), so a slow disk shows apart from a slow pipeline.",
);
p();
p(
  '| run | mix | relay | end-to-end tx/s | ceiling tx/s | efficiency | CPU µs/tx total | workers / broker / DB / gen µs | machine idle | disk fdatasync p50 / p99 / max ms | ceiling CPU µs/tx total (consumers / broker / DB / gen) |',
);
p('|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of runs) {
  const c = r.cpuUsPerAppliedTx?.components ?? {};
  const us = (k) => c[k] ?? '–';
  p(
    `| ${r.name} | ${mixOf(r.options)} | ${r.options.relay === false ? 'off' : r.options.relay ? 'on' : 'off (before relay in bench)'} | ${r.endToEndRatePerS} | ${r.ceiling ?? '–'} | ${pct(r.efficiency)} | ${r.cpuUsPerAppliedTx?.total ?? '–'} | ${us('workers')} / ${us('broker')} / ${us('database')} / ${us('gen')} | ${pct(r.idleShare)} | ${r.diskSync ? `${r.diskSync.p50Ms} / ${r.diskSync.p99Ms} / ${r.diskSync.maxMs}` : '–'} | ${ceilingCpu(r.ceilingRun)} |`,
  );
}
p();
const per = runs.find((r) => r.name === 'per-message-3w');
const batchedRuns = runs.filter((r) => /^batched-3w(-r\d+)?$/.test(r.name));
const batched = batchedRuns[0];
const pacedRuns = runs.filter((r) => /^paced-2000(-r\d+)?$/.test(r.name));
if (batchedRuns.length > 0) {
  const rates = batchedRuns.map((r) => r.endToEndRatePerS);
  p(
    `End to end, batched, 3 workers: ${rates.join(', ')} tx/s in ${rates.length} run${rates.length > 1 ? 's' : ''} of the same bench (median **${median(rates)}**).`,
  );
  const effs = batchedRuns.map((r) => r.efficiency).filter((e) => typeof e === 'number');
  if (effs.length > 0)
    p(
      `Efficiency of those runs (end to end ÷ the ceiling measured right after each): ${effs.map(pct).join(', ')} (median **${pct(median(effs))}**).`,
    );
  if (per)
    p(
      `Batched vs one commit per message (3 workers, median batched run): **${(median(rates) / Math.max(1, per.endToEndRatePerS)).toFixed(1)}×** (${median(rates)} vs ${per.endToEndRatePerS} tx/s).`,
    );
}
if (pacedRuns.length > 0) {
  const p99s = pacedRuns.map((r) => r.endToEndLatencyMs.p99);
  p(
    `Paced at 2,000 tx/s: p99 created → committed ${p99s.join(', ')} ms in ${p99s.length} run${p99s.length > 1 ? 's' : ''} (median **${median(p99s)} ms**); the broker's own confirm p99 in the same runs: ${pacedRuns.map((r) => r.confirmLatencyMs.p99).join(', ')} ms.`,
  );
}
const lingerRuns = runs.filter((r) => /^paced-2000-linger20(-r\d+)?$/.test(r.name));
if (lingerRuns.length > 0) {
  const cpu = (rs) => rs.map((r) => r.cpuUsPerAppliedTx?.total).filter((v) => typeof v === 'number');
  p(
    `The same, gen sending in 20 ms groups (\`--linger 20\`, latency still from each due time): p99 ${lingerRuns.map((r) => r.endToEndLatencyMs.p99).join(', ')} ms (median **${median(lingerRuns.map((r) => r.endToEndLatencyMs.p99))} ms**); CPU per transaction ${cpu(lingerRuns).join(', ')} µs against ${cpu(pacedRuns).join(', ')} µs without.`,
  );
}
for (const soak of runs.filter((r) => r.name.startsWith('soak'))) {
  const rss = soak.seconds.map((s) => s.workerRssMb).filter((v) => v > 0);
  const tail = rss.slice(Math.floor(rss.length / 5));
  const lo = Math.min(...tail);
  const hi = Math.max(...tail);
  // The largest single worker in each second (reports from before bench measured it have only the sum).
  const one = soak.seconds.map((s) => s.workerRssMbLargest ?? 0).filter((v) => v > 0);
  const oneTail = one.slice(Math.floor(one.length / 5));
  p(
    `\`${soak.name}\` (${soak.endToEndRatePerS} tx/s end to end): worker RSS after warm-up (last 80 % of the run), summed over the ${soak.options.workers} workers, between ${lo} and ${hi} MB (±${(((hi - lo) / 2 / ((hi + lo) / 2)) * 100).toFixed(1)} %)` +
      (oneTail.length
        ? `; the largest single worker between ${Math.min(...oneTail)} and ${Math.max(...oneTail)} MB (max over the whole run ${Math.max(...one)} MB)`
        : '') +
      `; ${soak.lost} lost, ${soak.duplicated} duplicated.`,
  );
}
p();
p('## Per-second lines');
p();
p('Each run prints PerfTest-style lines (sent / confirmed / applied / rejected per second, worker CPU and RSS); the');
p('JSON reports in `.txsim/bench/` keep all of them. The 3-worker batched run:');
p();
p('```');
for (const s of (batched?.seconds ?? []).slice(0, 30))
  p(
    `t=${Number(s.t).toFixed(1).padStart(5)}s  sent ${String(s.sent).padStart(6)}/s  confirmed ${String(s.confirmed).padStart(6)}/s  applied ${String(s.applied).padStart(6)}/s  rejected ${String(s.rejected).padStart(5)}/s  cpu ${s.workerCpuPct}%  rss ${s.workerRssMb} MB${hopsText(s.hopsMs)}`,
  );
p('```');
p();
p('## Where the time goes (worker CPU profile)');
p();
if (existsSync(profileDir)) {
  const self = new Map();
  let total = 0;
  let idle = 0;
  for (const f of readdirSync(profileDir).filter((x) => x.endsWith('.cpuprofile'))) {
    const prof = JSON.parse(readFileSync(join(profileDir, f), 'utf8'));
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    const dt = new Map();
    prof.samples.forEach((id, i) => dt.set(id, (dt.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
    for (const [id, us] of dt) {
      const n = byId.get(id);
      const url = n.callFrame.url || '';
      const where = url.includes('node_modules/')
        ? url.split('node_modules/')[1].split('/')[0]
        : url.includes('/dist/')
          ? `txsim ${url.split('/dist/')[1]}`
          : url
            ? 'node internals'
            : n.callFrame.functionName || '(native)';
      if (where === '(idle)') {
        idle += us;
        continue;
      }
      self.set(where, (self.get(where) ?? 0) + us);
      total += us;
    }
  }
  p(
    `Self time of the three worker processes in the \`profiled-3w\` run, grouped by package (\`node --cpu-prof\`). The workers were idle (waiting for the broker or the database) ${((idle / (idle + total)) * 100).toFixed(0)} % of the time; the shares below are of their busy time:`,
  );
  p();
  p('| where | share of worker busy time |');
  p('|---|---|');
  for (const [k, us] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12)) p(`| ${k} | ${((us / total) * 100).toFixed(1)} % |`);
  p();
} else p('(no profiles found)');
// The analysis (what bounds the result, what was tried) is written by people, kept beside the numbers.
if (existsSync('docs/bench-analysis.md')) {
  p(readFileSync('docs/bench-analysis.md', 'utf8').trim());
  p();
}
p('## How to reproduce');
p();
p('```sh');
p('bash scripts/bench.sh                       # the whole matrix (~45 min), rewrites this file');
p('BENCH_POOL_MB=2048 bash scripts/bench.sh    # the same, plus a soak with a 2 GiB InnoDB buffer pool (set and restored by the script)');
p('npx txsim bench --workers 3 --count 100000  # one run; --json / --csv for machine-readable output');
p('```');
p();
// Dated notes of earlier sessions, by hand; kept when this file is rewritten.
if (existsSync('docs/bench-history.md')) {
  p(readFileSync('docs/bench-history.md', 'utf8').trim());
  p();
}
process.stdout.write(out.join('\n'));
