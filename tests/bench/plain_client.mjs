// Benchmark baseline: a plain client posting ready-made transaction Bundles to the EHR sandbox
// with N keep-alive connections, each patient's bundles in order (the EHR needs that), no outbox.
// node plain_client.mjs BASE_URL CERT_DIR BUNDLES.ndjson CONNECTIONS  -> prints seconds elapsed
import https from 'node:https';
import fs from 'node:fs';

const [base, certs, file, connections] = process.argv.slice(2);
const agent = new https.Agent({
  keepAlive: true, maxSockets: Number(connections),
  ca: fs.readFileSync(`${certs}/ca.pem`), cert: fs.readFileSync(`${certs}/client.pem`), key: fs.readFileSync(`${certs}/client.key`),
});
const byPatient = new Map();
for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
  if (!line) continue;
  const patient = JSON.parse(line).entry.find((e) => e.resource?.resourceType === 'Patient').resource.identifier[0].value;
  if (!byPatient.has(patient)) byPatient.set(patient, []);
  byPatient.get(patient).push(line);
}
const post = (body) => new Promise((resolve, reject) => {
  const req = https.request(base, { method: 'POST', agent, headers: { 'content-type': 'application/fhir+json' } }, (res) => {
    res.resume();
    res.on('end', () => (res.statusCode < 300 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
  });
  req.on('error', reject);
  req.end(body);
});
const queue = [...byPatient.values()];
const start = process.hrtime.bigint();
await Promise.all(Array.from({ length: Number(connections) }, async () => {
  for (let bundles = queue.shift(); bundles; bundles = queue.shift()) for (const b of bundles) await post(b);
}));
console.log(Number(process.hrtime.bigint() - start) / 1e9);
agent.destroy();
