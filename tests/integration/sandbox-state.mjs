// Test helper: what an EHR sandbox holds, saved and put back, because the sandbox keeps nothing
// across restarts and an upgrade test needs the EHR as the previous release left it.
// node sandbox-state.mjs BASE_URL CERT_DIR dump FILE     every resource, as a transaction of PUT Type/id
// node sandbox-state.mjs BASE_URL CERT_DIR restore FILE  posts that transaction; the ids stay as they were
// The ids are the sandbox's own, so the literal references between the resources hold after a restore;
// versions start again at 1 (meta.versionId and lastUpdated are the server's and are left out).
import https from 'node:https';
import fs from 'node:fs';

const [base, certs, command, file] = process.argv.slice(2);
const url = new URL(base);
const tls = {
  ca: fs.readFileSync(`${certs}/ca.pem`),
  cert: fs.readFileSync(`${certs}/client.pem`),
  key: fs.readFileSync(`${certs}/client.key`),
};

function request(method, path, body) {
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': 'application/fhir+json' };
    const req = https.request(`${url.origin}${path}`, { method, ...tls, headers }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, body: text }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

const fhirPath = url.pathname.replace(/\/$/, '');
if (command === 'dump') {
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
  fs.writeFileSync(file, `{"resourceType":"Bundle","type":"transaction","entry":[\n${lines}\n]}\n`);
  console.log(JSON.stringify({ resources: entry.length }));
} else if (command === 'restore') {
  const r = await request('POST', fhirPath, fs.readFileSync(file));
  if (r.status !== 200) throw new Error(`restore: ${r.status} ${r.body.slice(0, 2000)}`);
  console.log(JSON.stringify({ restored: JSON.parse(r.body).entry.length }));
} else {
  throw new Error('usage: sandbox-state.mjs BASE CERT_DIR (dump FILE | restore FILE)');
}
