// Dev fixture for connector/admin/status_page.html: a mock of the admin server's JSON API.
//
//   node tests/browser/mock-admin.mjs PORT [TOKEN]
//
// Serves the page at / and fake, clearly non-patient data under /api/*. With TOKEN, every /api/* call
// needs "Authorization: Bearer TOKEN" (else 401), like the real server with a token configured.
// /api/series: hourly figures for the charts since the (fake) start 9 h 25 min ago, the hours
// before it empty, as a daemon's in-memory series is; a replay's delivery counts in the last hour.
// State: two dead letters. POST /api/records/{id}/replay removes one, answers like the real server and
// logs a `replayed` event (followed a moment later by fake `sent` and `delivered` events).
// The second dead letter's id holds markup on purpose: if the page ever inserted data as HTML, the
// browser would request a nonexistent image and the browser test would fail on the console error.
import http from 'node:http';
import { readFileSync } from 'node:fs';

const port = Number(process.argv[2] ?? 8099);
const token = process.argv[3] ?? '';
const pageUrl = new URL('../../connector/admin/status_page.html', import.meta.url);

const startedAt = new Date(Date.now() - 9 * 3600e3 - 25 * 60e3).toISOString();
const iso = (msAgo) => new Date(Date.now() - msAgo).toISOString();
const FAKE_PATIENT = 'fa4e0000fa4e0000fa4e0000fa4e0000'; // fake keyed hash

const records = { pending: 3, in_flight: 0, retry_scheduled: 1, delivered: 120, dead: 0, superseded: 2, held: 0 };
const dead = [
  {
    record_id: 'demo-proc-0001', record_type: 'procedure', revision: 1, state: 'dead', attempts: 1,
    last_error: 'HTTP 422: the EHR refused the record',
    ehr_summary: 'error processing: Injected fault (mock data, not a patient)',
    patient: FAKE_PATIENT, updated_at: iso(5 * 60e3),
  },
  {
    record_id: 'demo-0002 <img src=x-not-here onerror=alert(1)>', record_type: 'encounter', revision: 3,
    state: 'dead', attempts: 7, last_error: 'HTTP 400: <b>not bold</b> & untrusted text',
    ehr_summary: '', patient: FAKE_PATIENT, updated_at: iso(50 * 60e3),
  },
];
records.dead = dead.length;

const events = [];
function addEvent(ev) {
  events.unshift({ time: new Date().toISOString(), ...ev });
  events.length = Math.min(events.length, 200);
}
// Seed history (oldest first, so the newest ends up first).
const seed = [
  { event: 'received', record_id: 'demo-enc-0100', record_type: 'encounter', revision: 1, detail: 'mock intake file' },
  { event: 'sent', record_id: 'demo-enc-0100', record_type: 'encounter', revision: 1, attempt: 1, correlation_id: 'demo-enc-0100/r1/a1' },
  { event: 'delivered', record_id: 'demo-enc-0100', record_type: 'encounter', revision: 1, attempt: 1, http_status: 200, latency_ms: 41, correlation_id: 'demo-enc-0100/r1/a1' },
  { event: 'retry_scheduled', record_id: 'demo-obs-0042', record_type: 'observation', revision: 2, attempt: 2, http_status: 503, latency_ms: 1204, detail: 'HTTP 503: will retry in 40 s' },
  { event: 'sent', record_id: 'demo-proc-0001', record_type: 'procedure', revision: 1, attempt: 1, correlation_id: 'demo-proc-0001/r1/a1' },
  { event: 'dead_lettered', record_id: 'demo-proc-0001', record_type: 'procedure', revision: 1, attempt: 1, http_status: 422, latency_ms: 35, correlation_id: 'demo-proc-0001/r1/a1', ehr_error: 'error processing: Injected fault (mock data)', patient: FAKE_PATIENT, detail: 'HTTP 422: the EHR refused the record' },
  { event: 'alert_opened', detail: 'dead_letters: 2 dead letters' },
];
seed.forEach((e, i) => events.unshift({ time: iso((seed.length - i) * 45e3), ...e }));

function status() {
  const alerts = dead.length
    ? [{ alert: 'dead_letters', since: iso(5 * 60e3), detail: `${dead.length} dead letter${dead.length === 1 ? '' : 's'}` }]
    : [];
  return {
    version: '0.4.0-mock', started_at: startedAt, records: { ...records, dead: dead.length }, quarantined: 4,
    oldest_pending_age_s: 12, last_error: 'HTTP 503: will retry', delivered_per_minute: 4.5, maybe_at_ehr: 1,
    store: { degraded: false },
    processes: [{ id: 7, kind: 'daemon', pid: 4242, host: 'app1', since: startedAt, alive: true, this: true, in_flight: 2,
                  lease_until: startedAt, leads: ['alerts'], conditions: [] }],
    ehr: { base_url: 'https://ehr.example/fhir', reached: true, seconds_ago: 3, detail: 'HTTP 200' },
    write: {
      configured: 'auto', mode: 'single', why: 'the EHR advertises neither transaction nor batch', deliverable: true,
      ehr_software: 'Epic-like', capabilities_read_at: '2026-12-02T10:00:00Z',
      types: [
        { type: 'Patient', sent: true, how: 'one request: found by identifier, never created', why: 'the EHR does not allow create of Patient' },
        { type: 'Observation', sent: true, how: 'one request: created once' },
        { type: 'MedicationAdministration', sent: false, how: 'not sent', why: 'the EHR does not allow create of MedicationAdministration' },
      ],
    },
    certificates: [
      { setting: 'ehr.client_cert_file', file: '/etc/migraine-connector/client.pem', days_left: 300 },
      { setting: 'ehr.ca_file', file: '/etc/migraine-connector/ehr-ca.pem', days_left: 21 },
    ],
    alerts, intake: { inbox: '/var/spool/migraine-connector/inbox', ingest_api: null },
  };
}

// Per hour since the start, oldest first; the newest hour is the current one. One hour is quiet, in
// one the EHR was down (retries, no delivery), two had a dead letter. Latencies are bucket bounds.
const HOURS = [
  { delivered: 6, retries: 0, dead: 0, measured: 2, p50: 1200, p95: 2500 },
  { delivered: 14, retries: 3, dead: 0, measured: 14, p50: 800, p95: 4000 },
  { delivered: 0, retries: 6, dead: 0, measured: 0, p50: null, p95: null },  // the EHR down for an hour
  { delivered: 22, retries: 9, dead: 1, measured: 22, p50: 1500, p95: 12000 },
  { delivered: 18, retries: 0, dead: 0, measured: 18, p50: 1000, p95: 3000 },
  { delivered: 0, retries: 0, dead: 0, measured: 0, p50: null, p95: null },
  { delivered: 9, retries: 1, dead: 1, measured: 9, p50: 600, p95: 1500 },
  { delivered: 31, retries: 0, dead: 0, measured: 31, p50: 400, p95: 1200 },
  { delivered: 12, retries: 0, dead: 0, measured: 12, p50: 500, p95: 2000 },
  { delivered: 5, retries: 2, dead: 0, measured: 5, p50: 300, p95: 800 },
];
let replayDeliveries = 0;
function series() {
  const hour = 3600e3;
  const now = Date.now();
  const from = Math.floor(now / hour) * hour - 23 * hour;
  const col = (f) => Array.from({ length: 24 }, (_, i) => {
    const h = HOURS[i - (24 - HOURS.length)];
    return h ? f(h, i === 23) : f({ delivered: 0, retries: 0, dead: 0, measured: 0, p50: null, p95: null }, false);
  });
  const delivered = col((h, last) => h.delivered + (last ? replayDeliveries : 0));
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  const retries = col((h) => h.retries);
  const dead = col((h) => h.dead);
  const measured = col((h) => h.measured);
  return {
    width_s: 3600, from: new Date(from).toISOString(), to: new Date(from + 24 * hour).toISOString(),
    now: new Date(now).toISOString(), since: startedAt,
    delivered, retries, dead_lettered: dead, latency_measured: measured,
    latency_p50_ms: col((h) => h.p50), latency_p95_ms: col((h) => h.p95),
    total: { delivered: sum(delivered), retries: sum(retries), dead_lettered: sum(dead), latency_measured: sum(measured),
      latency_p50_ms: 800, latency_p95_ms: 4000 },
  };
}

const SECURITY_HEADERS = {
  // Same policy the real server can use: inline script/style only, API calls to this origin only.
  'Content-Security-Policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; " +
    "img-src data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

function send(res, code, body, type = 'application/json') {
  const text = type === 'application/json' ? JSON.stringify(body) : body;
  res.writeHead(code, { 'Content-Type': `${type}; charset=utf-8`, ...SECURITY_HEADERS });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://mock.invalid');
  const path = url.pathname;
  if (req.method === 'GET' && path === '/') {
    // Re-read on every request so page edits show on reload.
    return send(res, 200, readFileSync(pageUrl, 'utf8'), 'text/html');
  }
  if (!path.startsWith('/api/')) return send(res, 404, { error: 'not found' });
  if (token && req.headers.authorization !== `Bearer ${token}`) return send(res, 401, { error: 'token required' });

  if (req.method === 'GET' && path === '/api/status') return send(res, 200, status());
  if (req.method === 'GET' && path === '/api/series') return send(res, 200, series());
  if (req.method === 'GET' && path === '/api/records') {
    const state = url.searchParams.get('state');
    const limit = Number(url.searchParams.get('limit') ?? 100);
    if (state !== 'dead') return send(res, 400, { error: 'mock supports only state=dead' });
    return send(res, 200, { state, records: dead.slice(0, limit) });
  }
  if (req.method === 'GET' && path === '/api/events') {
    const limit = Number(url.searchParams.get('limit') ?? 50);
    return send(res, 200, { events: events.slice(0, limit) });
  }
  const m = /^\/api\/records\/([^/]+)\/replay$/.exec(path);
  if (m) {
    if (req.method !== 'POST') return send(res, 405, { error: 'use POST' });
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      return send(res, 415, { error: 'Content-Type must be application/json' });
    }
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { raw += c; });
    req.on('end', () => {
      let id;
      try { id = decodeURIComponent(m[1]); } catch { return send(res, 400, { error: 'bad record id' }); }
      let reason = '';
      try { reason = String(JSON.parse(raw).reason ?? '').trim(); } catch { return send(res, 400, { error: 'body is not JSON' }); }
      if (!reason) return send(res, 400, { error: 'a reason is required' });
      const i = dead.findIndex((d) => d.record_id === id);
      if (i < 0) return send(res, 404, { error: `no dead letter for record ${id}` });
      const [d] = dead.splice(i, 1);
      records.pending += 1;
      addEvent({ event: 'replayed', record_id: d.record_id, record_type: d.record_type, revision: d.revision,
        detail: `replayed by admin: ${reason}` });
      setTimeout(() => {
        addEvent({ event: 'sent', record_id: d.record_id, record_type: d.record_type, revision: d.revision, attempt: 1 });
        addEvent({ event: 'delivered', record_id: d.record_id, record_type: d.record_type, revision: d.revision,
          attempt: 1, http_status: 201, latency_ms: 52 });
        records.pending -= 1;
        records.delivered += 1;
        replayDeliveries += 1;
      }, 1500);
      send(res, 200, { replayed: [{ record_id: d.record_id, revision: d.revision, was: d.last_error }] });
    });
    return;
  }
  send(res, 404, { error: 'not found' });
});

server.listen(port, '127.0.0.1', () => {
  console.log(`mock admin server on http://127.0.0.1:${server.address().port}/${token ? ' (token required)' : ''}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
