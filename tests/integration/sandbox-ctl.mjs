// Test helper: talks to the EHR sandbox's control API and FHIR search over mutual TLS.
// node sandbox-ctl.mjs BASE_URL CERT_DIR (stats | faults JSON | clear-faults | reset | auth JSON | profile NAME |
//                                         count TYPE | get PATH | dump FILE | restore FILE | preload FILE)
// preload: the EHR's own resources (NDJSON) stored now, "the patient exists now".
// With SANDBOX_TOKEN set, FHIR requests carry it (a sandbox that enforces tokens, e.g. --static-token-file).
// dump and restore: what the sandbox holds, saved and put back (it keeps nothing across restarts, and
// the upgrade test needs the EHR as the previous release left it), as a transaction of PUT Type/id:
// the ids stay the sandbox's own, so literal references hold; versions start again at 1.
import https from 'node:https';
import fs from 'node:fs';

const [base, certs, command, arg] = process.argv.slice(2);
const origin = new URL(base).origin;
const tls = {
  ca: fs.readFileSync(`${certs}/ca.pem`),
  cert: fs.readFileSync(`${certs}/client.pem`),
  key: fs.readFileSync(`${certs}/client.key`),
};

function request(method, path, body, contentType = 'application/json') {
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': contentType };
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
} else if (command === 'profile') {
  // The EHR changes what it takes (tests/sandbox/README.md, Profiles): from the next request on.
  const r = await request('POST', '/_sandbox/profile', JSON.stringify({ profile: arg }));
  if (r.status >= 300) throw new Error(`profile: ${r.status} ${r.body}`);
} else if (command === 'preload') {
  const r = await request('POST', '/_sandbox/preload', fs.readFileSync(arg, 'utf8'), 'application/x-ndjson');
  if (r.status >= 300) throw new Error(`preload: ${r.status} ${r.body}`);
  process.stdout.write(r.body + '\n');
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
} else if (command === 'dump') {
  const fhirPath = new URL(base).pathname.replace(/\/$/, '');
  const stats = JSON.parse((await request('GET', '/_sandbox/stats')).body);
  const entry = [];
  for (const type of Object.keys(stats.resources).sort()) {
    const r = await request('GET', `${fhirPath}/${type}?_count=100000`);
    if (r.status !== 200) throw new Error(`search ${type}: ${r.status} ${r.body}`);
    const found = (JSON.parse(r.body).entry ?? []).map((e) => e.resource);
    if (found.length !== stats.resources[type]) {
      throw new Error(`${type}: the search gave ${found.length}, the sandbox holds ${stats.resources[type]}`);
    }
    for (const resource of found.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
      if (resource.meta) {
        const { versionId, lastUpdated, ...meta } = resource.meta;
        if (Object.keys(meta).length) resource.meta = meta;
        else delete resource.meta;
      }
      entry.push({ resource, request: { method: 'PUT', url: `${type}/${resource.id}` } });
    }
  }
  // One entry a line: small, and a regenerated fixture diffs by resource.
  const lines = entry.map((e) => JSON.stringify(e)).join(',\n');
  fs.writeFileSync(arg, `{"resourceType":"Bundle","type":"transaction","entry":[\n${lines}\n]}\n`);
  console.log(JSON.stringify({ resources: entry.length }));
} else if (command === 'restore') {
  const fhirPath = new URL(base).pathname.replace(/\/$/, '');
  const r = await request('POST', fhirPath, fs.readFileSync(arg), 'application/fhir+json');
  if (r.status !== 200) throw new Error(`restore: ${r.status} ${r.body.slice(0, 2000)}`);
  console.log(JSON.stringify({ restored: JSON.parse(r.body).entry.length }));
} else {
  throw new Error('usage: sandbox-ctl.mjs BASE CERT_DIR (stats | faults JSON | clear-faults | reset | auth JSON | profile NAME | count TYPE | get PATH | dump FILE | restore FILE)');
}
