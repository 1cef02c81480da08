// Test helper: talks to the EHR sandbox's control API and FHIR search over mutual TLS.
// node sandbox-ctl.mjs BASE_URL CERT_DIR (stats | faults JSON | clear-faults | reset | auth JSON | count TYPE | get PATH)
// With SANDBOX_TOKEN set, FHIR requests carry it (a sandbox that enforces tokens, e.g. --static-token-file).
import https from 'node:https';
import fs from 'node:fs';

const [base, certs, command, arg] = process.argv.slice(2);
const origin = new URL(base).origin;
const tls = {
  ca: fs.readFileSync(`${certs}/ca.pem`),
  cert: fs.readFileSync(`${certs}/client.pem`),
  key: fs.readFileSync(`${certs}/client.key`),
};

function request(method, path, body) {
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': 'application/json' };
    if (process.env.SANDBOX_TOKEN && !path.startsWith('/_sandbox')) headers.authorization = `Bearer ${process.env.SANDBOX_TOKEN}`;
    const req = https.request(`${origin}${path}`, { method, ...tls, headers }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, body: text }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

if (command === 'stats') {
  process.stdout.write((await request('GET', '/_sandbox/stats')).body + '\n');
} else if (command === 'faults') {
  const r = await request('POST', '/_sandbox/faults', arg);
  if (r.status >= 300) throw new Error(`faults: ${r.status} ${r.body}`);
} else if (command === 'auth') {
  const r = await request('POST', '/_sandbox/auth', arg);
  if (r.status >= 300) throw new Error(`auth: ${r.status} ${r.body}`);
} else if (command === 'clear-faults') {
  await request('DELETE', '/_sandbox/faults');
} else if (command === 'reset') {
  await request('POST', '/_sandbox/reset');
} else if (command === 'get') {
  // A FHIR read or search, printed as JSON: get 'AdverseEvent?_tag=...'
  const r = await request('GET', `${new URL(base).pathname.replace(/\/$/, '')}/${arg}`);
  if (r.status >= 300) throw new Error(`get ${arg}: ${r.status} ${r.body}`);
  process.stdout.write(r.body + '\n');
} else if (command === 'count') {
  // Resources of a type: how many the EHR holds (searchset total).
  const r = await request('GET', `/fhir/${arg}?_summary=count`);
  process.stdout.write(String(JSON.parse(r.body).total) + '\n');
} else {
  throw new Error('usage: sandbox-ctl.mjs BASE CERT_DIR (stats | faults JSON | clear-faults | reset | count TYPE | get PATH)');
}
