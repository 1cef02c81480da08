// Load generator for the ingest API benchmark: POSTs records over keep-alive HTTPS connections
// and reports throughput and latency percentiles as one JSON line.
// node ingest_api_load.mjs URL RECORDS.ndjson --ca F --cert F --key F --token T
//                          --batch N (records per request; 1: one application/json record each)
//                          --concurrency C
import https from 'node:https';
import fs from 'node:fs';

const [url, file, ...rest] = process.argv.slice(2);
const option = (name, fallback) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : fallback;
};
const batch = Number(option('--batch', '1'));
const concurrency = Number(option('--concurrency', '4'));
const agent = new https.Agent({
  keepAlive: true,
  maxSockets: concurrency,
  ca: fs.readFileSync(option('--ca')),
  cert: option('--cert') ? fs.readFileSync(option('--cert')) : undefined,
  key: option('--key') ? fs.readFileSync(option('--key')) : undefined,
});
const token = option('--token');
const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim());
const bodies = [];
for (let i = 0; i < lines.length; i += batch) bodies.push(lines.slice(i, i + batch).join('\n') + '\n');

function post(body) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = https.request(url, {
      method: 'POST', agent,
      headers: {
        'content-type': batch === 1 ? 'application/json' : 'application/x-ndjson',
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
    }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode !== 202) return reject(new Error(`HTTP ${res.statusCode}`));
        resolve(Number(process.hrtime.bigint() - started) / 1e6);
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const latencies = [];
let next = 0;
const started = process.hrtime.bigint();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < bodies.length) latencies.push(await post(bodies[next++]));
}));
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
latencies.sort((a, b) => a - b);
const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))];
console.log(JSON.stringify({
  records: lines.length, requests: bodies.length, seconds: +seconds.toFixed(3),
  records_per_s: +(lines.length / seconds).toFixed(1),
  p50_ms: +pct(50).toFixed(2), p95_ms: +pct(95).toFixed(2), p99_ms: +pct(99).toFixed(2),
}));
agent.destroy();
