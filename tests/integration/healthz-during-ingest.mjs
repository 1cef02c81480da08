// Test helper: POSTs a large NDJSON body to the ingest API and, while that request is outstanding,
// asks the admin server's /healthz again and again. Prints one JSON line:
//   {"ingest_status":202,"healthz_answers_during_ingest":N,"healthz_failures":0}
// node healthz-during-ingest.mjs INGEST_URL TOKEN BODY_FILE ADMIN_URL
import http from 'node:http';
import fs from 'node:fs';

const [ingestUrl, token, bodyFile, adminUrl] = process.argv.slice(2);
const body = fs.readFileSync(bodyFile);

function request(url, options, payload) {
  return new Promise((resolve) => {
    const req = http.request(url, options, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', () => resolve(0));
    if (payload) req.write(payload);
    req.end();
  });
}

let ingestDone = false;
const ingest = request(ingestUrl, {
  method: 'POST',
  headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson', 'content-length': body.length },
}, body).then((status) => {
  ingestDone = true;
  return status;
});

let during = 0;
let failures = 0;
while (!ingestDone) {
  const status = await request(`${adminUrl}/healthz`, { method: 'GET', agent: false });
  if (ingestDone) break;  // answered after the ingest: does not count
  if (status === 200) during++;
  else failures++;
}
console.log(JSON.stringify({ ingest_status: await ingest, healthz_answers_during_ingest: during, healthz_failures: failures }));
