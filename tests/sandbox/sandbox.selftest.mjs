#!/usr/bin/env node
// Self-test of the EHR sandbox (tests/sandbox/ehr-sandbox.mjs) and of the development certificates
// (certs/make-dev-certs.sh). Generates certificates into a temporary directory, starts the sandbox with
// mutual TLS required and talks to it over HTTPS with the dev client certificate.
//
//   node tests/sandbox/sandbox.selftest.mjs [--verbose]
//
// The connector's bundles come from the built CLI (build/bin/migraine-connector, or $MIGRAINE_CONNECTOR)
// when it exists; otherwise from the golden expected bundles, which are the CLI's output for the same
// records. Prints "ok - ..." / "not ok - ..." per check and "N passed, M failed" last; exit 1 on failure.
// Needs: node 20, openssl, bash, `cd tests/node && npm ci`.

import { spawn, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createServer as createTlsServer, connect as tlsConnect } from 'node:tls';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const verbose = process.argv.includes('--verbose');
const started = performance.now();
const DEADLINE_MS = 90_000; // three sandboxes start side by side; a loaded 2-CPU machine takes 15 s for that

let passed = 0;
let failed = 0;
function check(name, condition, detail = '') {
  if (condition) {
    passed++;
    console.log(`ok - ${name}`);
  } else {
    failed++;
    console.log(`not ok - ${name}${detail ? `\n    ${String(detail).split('\n').join('\n    ')}` : ''}`);
  }
  return !!condition;
}
const note = (msg) => console.log(`# ${msg}`);

const tmp = mkdtempSync(join(tmpdir(), 'ehr-sandbox-selftest-'));
let sandbox; // child process
const others = []; // further sandboxes (profiles)
let finished = false;

function finish() {
  if (finished) return;
  finished = true;
  for (const child of [sandbox, ...others]) {
    try {
      child?.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(tmp, { recursive: true, force: true });
  note(`${((performance.now() - started) / 1000).toFixed(1)} s`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed > 0 ? 1 : 0);
}

const watchdog = setTimeout(() => {
  check(`self-test finished within ${DEADLINE_MS / 1000} s`, false);
  finish();
}, DEADLINE_MS);
watchdog.unref();

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

let port;
const certDir = join(tmp, 'certs');
const pem = (name) => readFileSync(join(certDir, name));
const agents = [];
function agent({ cert = 'client', keepAlive = true } = {}) {
  const a = new Agent({
    keepAlive,
    maxSockets: 1,
    ca: pem('ca.pem'),
    ...(cert ? { cert: pem(`${cert}.pem`), key: pem(`${cert}.key`) } : {}),
  });
  agents.push(a);
  return a;
}

/** One HTTPS request to the sandbox; resolves {status, headers, body (parsed JSON or text)}; rejects on socket errors. */
function request(method, path, { body, headers = {}, via, timeoutMs = 15_000, at = port } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req = httpsRequest({
      host: 'localhost',
      port: at,
      method,
      path,
      agent: via ?? main,
      headers: {
        Accept: 'application/fhir+json',
        ...(data ? { 'Content-Type': 'application/fhir+json', 'Content-Length': data.length } : {}),
        ...headers,
      },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed = text;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode, headers: res.headers, body: parsed });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}
const postBundle = (bundle, opts = {}) => request('POST', '/fhir', { body: bundle, ...opts });
const stats = async () => (await request('GET', '/_sandbox/stats')).body;
const reset = () => request('POST', '/_sandbox/reset');
const faults = (spec) => request('POST', '/_sandbox/faults', { body: spec, headers: { 'Content-Type': 'application/json' } });

async function searchAll(type, query = '') {
  const r = await request('GET', `/fhir/${type}${query ? `?${query}` : ''}`);
  if (r.status !== 200) throw new Error(`search ${type} -> ${r.status}`);
  return (r.body.entry ?? []).map((e) => e.resource);
}

async function allResources() {
  const out = [];
  for (const type of Object.keys((await stats()).resources)) out.push(...(await searchAll(type)));
  return out;
}

function references(node, out = []) {
  if (Array.isArray(node)) node.forEach((v) => references(v, out));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === 'reference' && typeof v === 'string') out.push(v);
      else references(v, out);
    }
  }
  return out;
}

const statuses = (resp) => (resp.body?.entry ?? []).map((e) => e.response?.status);
const countOf = (list, s) => list.filter((x) => x === s).length;
const ooText = (oo) => JSON.stringify(oo?.issue ?? oo ?? null);
const clone = (x) => structuredClone(x);
const entryIndex = (bundle, pred) => bundle.entry.findIndex((e) => pred(e.resource ?? {}, e));
const identifierValue = (r) => r.identifier?.[0]?.value ?? r.meta?.tag?.[0]?.code;

/** Expects a request to fail at the socket / TLS level (no HTTP response). */
async function expectNoResponse(promise) {
  try {
    const r = await promise;
    return { ok: false, detail: `got HTTP ${r.status}` };
  } catch (err) {
    return { ok: true, detail: err.code ?? err.message };
  }
}

// ---------------------------------------------------------------------------------------------------------
// 1. Development certificates
// ---------------------------------------------------------------------------------------------------------

function makeCerts() {
  return spawnSync('bash', [join(root, 'certs', 'make-dev-certs.sh'), certDir], { encoding: 'utf8' });
}

async function tlsProbe(serverCert, { servername = 'localhost', host = '127.0.0.1' } = {}) {
  const server = createTlsServer({ cert: pem(`${serverCert}.pem`), key: pem(`${serverCert}.key`) }, (s) => s.end());
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  try {
    return await new Promise((resolve) => {
      const sock = tlsConnect({ host, port: server.address().port, ca: pem('ca.pem'), ...(servername ? { servername } : {}) }, () => {
        sock.end();
        resolve('ok');
      });
      sock.on('error', (err) => resolve(err.code ?? err.message));
    });
  } finally {
    server.close();
  }
}

async function testCerts() {
  let t0 = performance.now();
  const first = makeCerts();
  const firstMs = performance.now() - t0;
  check('make-dev-certs.sh generates the set and prints nothing', first.status === 0 && first.stdout === '' && first.stderr === '',
    `status ${first.status}\n${first.stdout}${first.stderr}`);
  if (first.status !== 0) return false;
  const files = ['ca', 'server', 'client', 'other-ca', 'other-server', 'other-client', 'wrong-host', 'expired'];
  const missing = files.flatMap((f) => [`${f}.pem`, `${f}.key`]).filter((f) => !existsSync(join(certDir, f)));
  check('all certificate and key files exist', missing.length === 0, `missing: ${missing.join(', ')}`);
  const keyModes = files.map((f) => statSync(join(certDir, `${f}.key`)).mode & 0o777);
  check('private keys are mode 0600', keyModes.every((m) => m === 0o600), keyModes.map((m) => m.toString(8)).join(' '));
  const before = readFileSync(join(certDir, 'server.key'), 'utf8');
  t0 = performance.now();
  const second = makeCerts();
  const secondMs = performance.now() - t0;
  check('make-dev-certs.sh is idempotent (second run silent, keys unchanged)',
    second.status === 0 && second.stdout === '' && second.stderr === '' && readFileSync(join(certDir, 'server.key'), 'utf8') === before,
    `status ${second.status} ${second.stderr}`);
  note(`certificates: generated in ${Math.round(firstMs)} ms, re-run ${Math.round(secondMs)} ms`);

  const x = (f) => new X509Certificate(pem(`${f}.pem`));
  const ca = x('ca');
  const otherCa = x('other-ca');
  check('client.pem: signed by the dev CA, extendedKeyUsage clientAuth',
    x('client').verify(ca.publicKey) && (x('client').keyUsage ?? []).includes('1.3.6.1.5.5.7.3.2'), x('client').keyUsage);
  check('other-client.pem: signed by the other CA only', x('other-client').verify(otherCa.publicKey) && !x('other-client').verify(ca.publicKey));
  check('expired.pem: from the dev CA, localhost, validTo in the past',
    x('expired').verify(ca.publicKey) && new Date(x('expired').validTo) < new Date() && x('expired').checkHost('localhost') === 'localhost');

  const probes = {
    'server.pem accepted for localhost': [await tlsProbe('server'), 'ok'],
    'server.pem accepted for IP 127.0.0.1': [await tlsProbe('server', { servername: null }), 'ok'],
    'other-server.pem refused (unknown CA)': [await tlsProbe('other-server'), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
    'wrong-host.pem refused (host name)': [await tlsProbe('wrong-host'), 'ERR_TLS_CERT_ALTNAME_INVALID'],
    'expired.pem refused (expired)': [await tlsProbe('expired'), 'CERT_HAS_EXPIRED'],
  };
  for (const [name, [got, want]] of Object.entries(probes)) check(`TLS client trusting ca.pem: ${name}`, got === want, `got ${got}, want ${want}`);
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// 2. Bundles: from the built CLI, or the golden expected bundles
// ---------------------------------------------------------------------------------------------------------

function loadBundles() {
  const cli = process.env.MIGRAINE_CONNECTOR ?? join(root, 'build', 'bin', 'migraine-connector');
  const golden = (c) => JSON.parse(readFileSync(join(root, 'tests', 'golden', 'cases', c, 'expected-bundle.json'), 'utf8'));
  const amendCase = join(root, 'tests', 'golden', 'cases', 'procedure-amended-revision-2');
  if (existsSync(cli)) {
    const map = (...args) => {
      const r = spawnSync(cli, ['map', ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
      if (r.status !== 0) throw new Error(`migraine-connector map ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
      return r.stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
    };
    const pathwayFile = join(tmp, 'pathway.ndjson');
    writeFileSync(pathwayFile, ['consultation', 'procedure', 'follow_up']
      .map((k) => JSON.stringify(JSON.parse(readFileSync(join(root, 'mappings', 'examples', `${k}.json`), 'utf8')))).join('\n') + '\n');
    note(`bundles from the CLI ${cli}`);
    return {
      source: 'cli',
      pathway: map(pathwayFile),
      history: map(join(amendCase, 'history.ndjson')),
      amendment: map('--history', join(amendCase, 'history.ndjson'), join(amendCase, 'record.json')),
    };
  }
  note('CLI not built: bundles from the golden expected-bundle.json files');
  const pathway = ['consultation-recommend-botox', 'procedure-preempt-follow-the-pain', 'follow-up-response'].map(golden);
  return { source: 'golden', pathway, history: pathway.slice(0, 2), amendment: [golden('procedure-amended-revision-2')] };
}

// ---------------------------------------------------------------------------------------------------------
// 3. Sandbox
// ---------------------------------------------------------------------------------------------------------

function startSandbox(extraArgs = []) {
  const child = spawn(process.execPath, [join(here, 'ehr-sandbox.mjs'),
    '--cert', join(certDir, 'server.pem'), '--key', join(certDir, 'server.key'),
    '--client-ca', join(certDir, 'ca.pem'), '--require-client-cert', '--port', '0',
    ...extraArgs, ...(verbose ? ['--verbose'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (verbose) process.stderr.write(d);
  });
  const ready = new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no ready line within 45 s; stderr: ${stderr}`)), 45_000);
    child.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve({ line: out.slice(0, nl), rest: () => out.slice(nl + 1) });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sandbox exited with ${code} before ready; stderr: ${stderr}`));
    });
  });
  return { child, ready, stderr: () => stderr };
}

let main;

async function run() {
  // ---- certificates
  if (!(await testCerts())) return;

  // ---- bundles
  let bundles;
  try {
    bundles = loadBundles();
    check(`connector bundles available (${bundles.source})`, bundles.pathway.length === 3 && bundles.history.length === 2 && bundles.amendment.length === 1);
  } catch (err) {
    check('connector bundles available', false, err.message);
    return;
  }
  const [consultation, procedure, followUp] = bundles.pathway;

  // ---- start (the "single" sandbox and a bad --profile start meanwhile; see testProfiles)
  const t0 = performance.now();
  const sb = startSandbox();
  sandbox = sb.child;
  writeFileSync(join(tmp, 'preload.ndjson'), PRELOAD);
  const singleSb = startSandbox(['--profile', 'single', '--preload', join(tmp, 'preload.ndjson')]);
  others.push(singleSb.child);
  const badProfile = spawnExit([join(here, 'ehr-sandbox.mjs'), '--cert', join(certDir, 'server.pem'), '--key', join(certDir, 'server.key'),
    '--profile', 'no-such-profile']);
  let readyLine;
  try {
    readyLine = await sb.ready;
  } catch (err) {
    check('sandbox starts and prints its ready line', false, err.message);
    return;
  }
  const m = /^\{"ready":true,"port":(\d+),"base":"https:\/\/localhost:(\d+)\/fhir"\}$/.exec(readyLine.line);
  check('ready line is exactly {"ready":true,"port":N,"base":"https://localhost:N/fhir"}', m && m[1] === m[2], readyLine.line);
  if (!m) return;
  port = Number(m[1]);
  note(`sandbox ready in ${Math.round(performance.now() - t0)} ms on port ${port}`);
  main = agent();

  const meta = await request('GET', '/fhir/metadata');
  check('GET /fhir/metadata: CapabilityStatement, FHIR 4.0.1, transaction', meta.status === 200
    && meta.body?.resourceType === 'CapabilityStatement' && meta.body.fhirVersion === '4.0.1'
    && meta.body.rest?.[0]?.interaction?.some((i) => i.code === 'transaction'), `${meta.status}`);

  // ---- mutual TLS
  const noCert = await expectNoResponse(request('GET', '/fhir/metadata', { via: agent({ cert: null }) }));
  check('--require-client-cert: a client without a certificate gets no response', noCert.ok, noCert.detail);
  const otherCert = await expectNoResponse(request('GET', '/fhir/metadata', { via: agent({ cert: 'other-client' }) }));
  check('--require-client-cert: a client certificate from another CA gets no response', otherCert.ok, otherCert.detail);
  const s0 = await stats();
  check('refused handshakes are counted (tlsFailures)', s0.tlsFailures >= 2, JSON.stringify(s0));

  // ---- the pathway, in order
  await reset();
  let tPathway = performance.now();
  const responses = [];
  for (const b of bundles.pathway) responses.push(await postBundle(b));
  tPathway = performance.now() - tPathway;
  const names = ['consultation', 'procedure', 'follow-up'];
  responses.forEach((r, i) => {
    const st = statuses(r);
    check(`pathway ${names[i]} (${bundles.pathway[i].entry.length} entries) accepted: 200 transaction-response`,
      r.status === 200 && r.body?.type === 'transaction-response' && st.length === bundles.pathway[i].entry.length
      && st.every((s) => s === '201 Created' || s === '200 OK'), `${r.status} ${ooText(r.body)}`);
  });
  check('consultation: every entry 201 Created on an empty server', statuses(responses[0]).every((s) => s === '201 Created'));
  check('procedure: the 4 shared resources (Organization, Device, Practitioner, Patient) matched by ifNoneExist, 200 OK',
    countOf(statuses(responses[1]), '200 OK') === 4, statuses(responses[1]).join(','));
  const e0 = responses[0].body.entry[0].response;
  check('response entries carry location Type/id/_history/1 and etag W/"1"',
    /^Organization\/[A-Za-z0-9\-.]+\/_history\/1$/.test(e0.location) && e0.etag === 'W/"1"' && !!e0.lastModified, JSON.stringify(e0));
  note(`pathway: 3 transactions in ${Math.round(tPathway)} ms`);

  const afterPathway = await stats();
  const stored = await allResources();
  const index = new Map(stored.map((r) => [`${r.resourceType}/${r.id}`, r]));
  const refs = stored.flatMap((r) => references(r));
  check('no urn:uuid or conditional reference is left in the store',
    refs.length > 0 && !refs.some((x) => x.startsWith('urn:') || x.includes('?')), refs.filter((x) => x.startsWith('urn:') || x.includes('?')).slice(0, 5).join('\n'));
  check('every stored reference resolves to a stored resource', refs.every((x) => index.has(x)), refs.filter((x) => !index.has(x)).slice(0, 5).join('\n'));
  const ae = stored.find((r) => r.resourceType === 'AdverseEvent' && (r.suspectEntity ?? []).some((s) => s.instance?.reference?.startsWith('MedicationAdministration/')));
  check('conditional references to resources created in the same transaction are resolved (AdverseEvent.suspectEntity -> MedicationAdministration)', !!ae);
  const fuObs = stored.find((r) => r.resourceType === 'Observation' && (r.focus ?? []).some((f) => f.reference?.startsWith('Procedure/')));
  check('conditional references to earlier transactions are resolved (follow-up Observation.focus -> Procedure)', !!fuObs);

  // ---- resend: nothing new
  const resend = [];
  for (const b of bundles.pathway) resend.push(await postBundle(b));
  const afterResend = await stats();
  check('resending the pathway: 200, every entry 200 OK', resend.every((r) => r.status === 200 && statuses(r).every((s) => s === '200 OK')),
    resend.map((r) => `${r.status} ${[...new Set(statuses(r))]}`).join('; '));
  check('resending the pathway creates nothing (resource counts by type unchanged)',
    JSON.stringify(afterResend.resources) === JSON.stringify(afterPathway.resources),
    `${JSON.stringify(afterPathway.resources)}\n${JSON.stringify(afterResend.resources)}`);
  check('stats count transactions and requests', afterResend.transactions === afterPathway.transactions + 3 && afterResend.requests > afterPathway.requests);

  // ---- the amendment updates in place
  await reset();
  for (const b of bundles.history) {
    const r = await postBundle(b);
    if (r.status !== 200) check('amendment history accepted', false, `${r.status} ${ooText(r.body)}`);
  }
  const beforeAmend = await stats();
  const idsBefore = new Map((await allResources()).map((r) => [`${r.resourceType}|${identifierValue(r)}`, r]));
  const amend = await postBundle(bundles.amendment[0]);
  const afterAmend = await stats();
  const amendStatuses = statuses(amend);
  check('amendment (procedure-amended-revision-2) accepted: updates 200 OK, only its Provenance 201 Created',
    amend.status === 200 && countOf(amendStatuses, '201 Created') === 1 && countOf(amendStatuses, '200 OK') === amendStatuses.length - 1,
    `${amend.status} ${ooText(amend.body).slice(0, 500)} ${amendStatuses.join(',')}`);
  const expectedCounts = { ...beforeAmend.resources, Provenance: (beforeAmend.resources.Provenance ?? 0) + 1 };
  check('amendment creates no duplicates (counts unchanged but one Provenance)',
    JSON.stringify(afterAmend.resources) === JSON.stringify(expectedCounts), `${JSON.stringify(beforeAmend.resources)}\n${JSON.stringify(afterAmend.resources)}`);
  const after = new Map((await allResources()).map((r) => [`${r.resourceType}|${identifierValue(r)}`, r]));
  const putEntries = bundles.amendment[0].entry.filter((e) => e.request.method === 'PUT');
  const updatedInPlace = putEntries.every((e) => {
    const key = `${e.resource.resourceType}|${identifierValue(e.resource)}`;
    return idsBefore.get(key)?.id === after.get(key)?.id && after.get(key)?.meta?.versionId === '2';
  });
  check(`amendment: all ${putEntries.length} conditional updates kept their ids and are at version 2`, updatedInPlace);
  const discarded = [...after.values()].find((r) => r.resourceType === 'ChargeItem' && /discarded/.test(identifierValue(r)));
  check('amendment: the discarded-units ChargeItem is now entered-in-error', discarded?.status === 'entered-in-error', discarded?.status);
  const amendAgain = await postBundle(bundles.amendment[0]);
  const afterAmendAgain = await stats();
  check('resending the amendment: 200, nothing new', amendAgain.status === 200
    && JSON.stringify(afterAmendAgain.resources) === JSON.stringify(afterAmend.resources));

  // ---- invalid resource: 422, nothing stored
  await reset();
  await postBundle(consultation);
  const beforeInvalid = (await stats()).resources;
  const badProcedure = clone(procedure);
  const maIndex = entryIndex(badProcedure, (r) => r.resourceType === 'MedicationAdministration');
  badProcedure.entry[maIndex].resource.status = 'given';
  const invalid = await postBundle(badProcedure);
  check('invalid resource (MedicationAdministration.status "given"): 422 OperationOutcome naming the element',
    invalid.status === 422 && invalid.body?.resourceType === 'OperationOutcome'
    && invalid.body.issue.some((i) => (i.expression ?? []).includes(`Bundle.entry[${maIndex}].resource.status`)
      && (i.expression ?? []).includes('MedicationAdministration.status')), `${invalid.status} ${ooText(invalid.body)}`);
  check('nothing of the invalid transaction is stored', JSON.stringify((await stats()).resources) === JSON.stringify(beforeInvalid));

  // ---- conditional references that do not resolve
  await reset();
  const noMatch = await postBundle(followUp);
  check('conditional reference with no match (follow-up before its procedure): 400, names the reference',
    noMatch.status === 400 && /Conditional reference/.test(ooText(noMatch.body))
    && noMatch.body.issue.some((i) => (i.expression ?? []).some((x) => /^Bundle\.entry\[\d+\]\.resource\..*reference$/.test(x))),
    `${noMatch.status} ${ooText(noMatch.body)}`);
  const afterNoMatch = await stats();
  check('... and the whole transaction is rolled back (its earlier creates too)',
    Object.keys(afterNoMatch.resources).length === 0 && afterNoMatch.failedTransactions >= 1, JSON.stringify(afterNoMatch.resources));

  const dupSystem = 'https://sandbox.example/dup';
  const dupPatient = (id) => ({ resourceType: 'Patient', id, identifier: [{ system: dupSystem, value: 'same' }] });
  await request('PUT', '/fhir/Patient/dup-a', { body: dupPatient('dup-a') });
  await request('PUT', '/fhir/Patient/dup-b', { body: dupPatient('dup-b') });
  const several = await postBundle({
    resourceType: 'Bundle', type: 'transaction', entry: [{
      fullUrl: 'urn:uuid:0b2c5a8e-7c1d-4c59-9a51-2f0f6f1f0001',
      resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient?identifier=${dupSystem}|same` } },
      request: { method: 'POST', url: 'Observation' },
    }],
  });
  check('conditional reference with several matches: 412', several.status === 412 && /matches 2/.test(ooText(several.body)), `${several.status} ${ooText(several.body)}`);
  const condPut = await postBundle({
    resourceType: 'Bundle', type: 'transaction', entry: [{
      resource: { resourceType: 'Patient', identifier: [{ system: dupSystem, value: 'same' }], active: true },
      request: { method: 'PUT', url: `Patient?identifier=${dupSystem}|same` },
    }],
  });
  check('conditional update with several matches: 412', condPut.status === 412, `${condPut.status} ${ooText(condPut.body)}`);

  // ---- strictness a real server has
  const aeIdentifier = clone(procedure);
  const aeIndex = entryIndex(aeIdentifier, (r) => r.resourceType === 'AdverseEvent');
  if (aeIndex >= 0) {
    aeIdentifier.entry[aeIndex].request.ifNoneExist = 'identifier=https://clinic.example/fhir/resource|x';
    const r = await postBundle(aeIdentifier);
    check('unknown search parameter (AdverseEvent?identifier is not R4): 400', r.status === 400 && /identifier/.test(ooText(r.body)), `${r.status} ${ooText(r.body)}`);
  }
  const many = {
    resourceType: 'Bundle', type: 'transaction',
    entry: Array.from({ length: 60 }, (_, i) => ({
      resource: { resourceType: 'Basic', identifier: [{ system: 'https://sandbox.example/basic', value: `b${i}` }], code: { text: 'test' } },
      request: { method: 'PUT', url: `Basic?identifier=https://sandbox.example/basic|b${i}` },
    })),
  };
  const manyR = await postBundle(many);
  check('no entry-count limit: 60 conditional updates in one transaction', manyR.status === 200 && countOf(statuses(manyR), '201 Created') === 60,
    `${manyR.status} ${ooText(manyR.body).slice(0, 300)}`);

  // ---- processing order and the other interactions inside a transaction
  const orderSystem = 'https://sandbox.example/order';
  const ordered = await postBundle({
    resourceType: 'Bundle', type: 'transaction', entry: [
      { request: { method: 'GET', url: `Patient?identifier=${orderSystem}|o1` } },
      { resource: { resourceType: 'Patient', identifier: [{ system: orderSystem, value: 'o1' }] }, request: { method: 'POST', url: 'Patient' } },
      { request: { method: 'DELETE', url: 'Patient/dup-b' } },
    ],
  });
  check('transaction order DELETE, POST, PUT/PATCH, GET: the GET (first entry) sees the POST, the DELETE is done',
    ordered.status === 200 && ordered.body.entry[0].resource?.total === 1 && statuses(ordered)[2].startsWith('204')
    && (await request('GET', '/fhir/Patient/dup-b')).status === 404, `${ordered.status} ${JSON.stringify(ordered.body).slice(0, 400)}`);

  // ---- plain REST
  const created = await request('POST', '/fhir/Patient', { body: { resourceType: 'Patient', identifier: [{ system: 'https://sandbox.example/rest', value: 'r1' }], gender: 'female' } });
  const loc = created.headers.location ?? '';
  const id = /\/Patient\/([^/]+)\/_history\/1$/.exec(loc)?.[1];
  check('REST create: 201, Location .../Patient/id/_history/1, ETag W/"1"', created.status === 201 && !!id && created.headers.etag === 'W/"1"', `${created.status} ${loc}`);
  const read = await request('GET', `/fhir/Patient/${id}`);
  check('REST read: 200 with meta.versionId 1', read.status === 200 && read.body?.meta?.versionId === '1');
  const upd = await request('PUT', `/fhir/Patient/${id}`, { body: { ...read.body, gender: 'other' }, headers: { 'If-Match': 'W/"1"' } });
  check('REST update with matching If-Match: 200, ETag W/"2"', upd.status === 200 && upd.headers.etag === 'W/"2"', `${upd.status} ${ooText(upd.body)}`);
  const stale = await request('PUT', `/fhir/Patient/${id}`, { body: { ...read.body, gender: 'male' }, headers: { 'If-Match': 'W/"1"' } });
  check('REST update with a stale If-Match: 412', stale.status === 412, `${stale.status}`);
  const txStale = await postBundle({ resourceType: 'Bundle', type: 'transaction', entry: [{
    resource: { ...read.body, gender: 'male' }, request: { method: 'PUT', url: `Patient/${id}`, ifMatch: 'W/"1"' } }] });
  check('transaction PUT with a stale ifMatch: 412', txStale.status === 412, `${txStale.status}`);
  const patch = (ops) => request('PATCH', `/fhir/Patient/${id}`, { body: ops, headers: { 'Content-Type': 'application/json-patch+json' } });
  const patched = await patch([{ op: 'replace', path: '/gender', value: 'unknown' }]);
  check('REST JSON Patch: 200, version 3', patched.status === 200 && patched.body?.meta?.versionId === '3' && patched.body.gender === 'unknown', `${patched.status} ${ooText(patched.body)}`);
  const badPatch = await patch([{ op: 'replace', path: '/gender', value: 'zzz' }]);
  check('REST JSON Patch producing an invalid resource: 422', badPatch.status === 422 && /Patient\.gender/.test(ooText(badPatch.body)), `${badPatch.status}`);
  const badRest = await request('POST', '/fhir/Patient', { body: { resourceType: 'Patient', gender: 'f' } });
  check('REST create of an invalid resource: 422 naming Patient.gender', badRest.status === 422 && /Patient\.gender/.test(ooText(badRest.body)), `${badRest.status} ${ooText(badRest.body)}`);
  const search = await request('GET', '/fhir/Patient?identifier=https://sandbox.example/rest|r1');
  check('REST search: searchset with the match and fullUrl', search.status === 200 && search.body?.type === 'searchset'
    && search.body.entry?.length === 1 && search.body.entry[0].fullUrl === `https://localhost:${port}/fhir/Patient/${id}`);
  // FHIR search escaping: "\," is a comma inside the value, a bare "," means "or", "%2B" is a plus.
  const escSystem = 'https://sandbox.example/escaping';
  for (const value of ['MRN-100', 'MRN-100,234', 'MRN+1', 'MRN-100|x']) {
    await request('POST', '/fhir/Patient', { body: { resourceType: 'Patient', identifier: [{ system: escSystem, value }], gender: 'female' } });
  }
  const total = async (query) => (await request('GET', `/fhir/Patient?${query}&_count=10`)).body.total;
  const enc = encodeURIComponent;
  check('search escaping: "MRN-100\\,234" matches only that MRN', await total(`identifier=${enc(escSystem)}|${enc('MRN-100\\,234')}`) === 1);
  check('search escaping: "MRN-100,234" unescaped means MRN-100 or 234', await total(`identifier=${enc(escSystem)}|${enc('MRN-100,234')}`) === 1);
  check('search escaping: an escaped "|" is part of the value', await total(`identifier=${enc(escSystem)}|${enc('MRN-100\\|x')}`) === 1);
  check('search escaping: "%2B" is a plus, a raw "+" a space', await total(`identifier=${enc(escSystem)}|MRN%2B1`) === 1
    && await total(`identifier=${enc(escSystem)}|MRN+1`) === 0);
  const dangling = await request('GET', `/fhir/Patient?identifier=${enc(escSystem)}|MRN${enc('\\')}`);
  check('search escaping: a lone trailing backslash is refused: 400', dangling.status === 400, `${dangling.status}`);
  const unknownParam = await request('GET', '/fhir/Patient?colour=blue');
  check('REST search with an unknown parameter: 400', unknownParam.status === 400);
  const wrongType = await request('POST', '/fhir/Patient', { body: '{}', headers: { 'Content-Type': 'text/plain' } });
  check('unsupported Content-Type: 415', wrongType.status === 415);

  // ---- faults
  await reset();
  await faults({ status: 503, count: 2, retryAfter: 1 });
  const f1 = await postBundle(consultation);
  const f2 = await postBundle(consultation);
  const f3 = await postBundle(consultation);
  check('fault 503 x2: two 503 with Retry-After and an OperationOutcome, then success',
    f1.status === 503 && f2.status === 503 && f1.headers['retry-after'] === '1' && f1.body?.resourceType === 'OperationOutcome' && f3.status === 200,
    `${f1.status} ${f2.status} ${f3.status} retry-after=${f1.headers['retry-after']}`);
  const sf = await stats();
  check('faulted requests are counted but change nothing', sf.requests === 3 && sf.faultsApplied === 2 && sf.transactions === 1
    && sf.resources.Patient === 1, JSON.stringify(sf));
  await faults([{ status: 429, retryAfter: 2 }, { status: 500 }]);
  const q1 = await request('GET', '/fhir/metadata');
  const q2 = await request('GET', '/fhir/metadata');
  const q3 = await request('GET', '/fhir/metadata');
  check('queued faults apply in order (429 with Retry-After 2, then 500, then normal)',
    q1.status === 429 && q1.headers['retry-after'] === '2' && q2.status === 500 && q3.status === 200, `${q1.status} ${q2.status} ${q3.status}`);
  await faults({ delayMs: 300 });
  let td = performance.now();
  const delayed = await request('GET', '/fhir/metadata');
  td = performance.now() - td;
  check('delayMs fault delays the response', delayed.status === 200 && td >= 290, `${delayed.status} after ${Math.round(td)} ms`);

  await reset();
  await faults({ reset: true });
  const dropped = await expectNoResponse(postBundle(consultation));
  check('reset fault: the socket is closed without a response', dropped.ok, dropped.detail);
  check('... and nothing was stored', Object.keys((await stats()).resources).length === 0);
  const afterDrop = await postBundle(consultation);
  check('... the next request succeeds', afterDrop.status === 200);
  await faults({ reset: 'after-commit' });
  const droppedAfter = await expectNoResponse(postBundle(procedure));
  const committed = await stats();
  const retried = await postBundle(procedure);
  const afterRetry = await stats();
  check('reset "after-commit": no response but committed; the retry creates nothing new',
    droppedAfter.ok && committed.resources.Procedure === 1 && retried.status === 200
    && JSON.stringify(afterRetry.resources) === JSON.stringify(committed.resources), JSON.stringify(afterRetry.resources));

  // ---- concurrent deliveries are serialised: no duplicates
  await reset();
  const [c1, c2] = await Promise.all([postBundle(consultation), postBundle(consultation, { via: agent() })]);
  const sc = await stats();
  check('two concurrent identical transactions: both 200, no duplicates', c1.status === 200 && c2.status === 200
    && sc.resources.Patient === 1 && sc.resources.Observation === consultation.entry.filter((e) => e.resource.resourceType === 'Observation').length,
    JSON.stringify(sc.resources));

  // ---- keep-alive and handshake counting
  await reset();
  const ka = agent();
  for (let i = 0; i < 3; i++) await request('GET', '/fhir/metadata', { via: ka });
  const sKa = await stats(); // over the main agent: one more handshake at most
  const noKa = agent({ keepAlive: false });
  for (let i = 0; i < 3; i++) await request('GET', '/fhir/metadata', { via: noKa, headers: { Connection: 'close' } });
  const sNoKa = await stats();
  check('keep-alive: 3 requests on one connection cost one TLS handshake', sKa.tlsHandshakes <= 2 && sKa.requests === 3, JSON.stringify(sKa));
  check('without keep-alive every request costs a handshake', sNoKa.tlsHandshakes - sKa.tlsHandshakes >= 3, `${sKa.tlsHandshakes} -> ${sNoKa.tlsHandshakes}`);

  await testProfiles({ consultation, singleSb, badProfile });

  // ---- stop
  for (const a of agents) a.destroy();
  const exit = new Promise((resolve) => sandbox.once('exit', (code, signal) => resolve({ code, signal })));
  sandbox.kill('SIGTERM');
  const res = await Promise.race([exit, new Promise((r) => setTimeout(() => r({ code: 'timeout' }), 5000))]);
  check('SIGTERM: the sandbox exits with status 0', res.code === 0, JSON.stringify(res));
  sandbox = undefined;
}

// ---------------------------------------------------------------------------------------------------------
// 4. Profiles: the kinds of EHR the sandbox plays (--profile, /_sandbox/profile), --preload, the stats
// ---------------------------------------------------------------------------------------------------------

const MRN = 'https://clinic.example/fhir/mrn';
const NPI = 'http://hl7.org/fhir/sid/us-npi';
// For "single", where patients cannot be created: MRN-1 once, MRN-2 twice (an ambiguous match), MRN-3 not at all.
// NDJSON, one line a Bundle, to cover both forms.
const PRELOAD = [
  { resourceType: 'Bundle', type: 'collection', entry: [
    { resource: { resourceType: 'Organization', id: 'org-1', identifier: [{ system: 'https://clinic.example/fhir/organization', value: 'clinic' }], name: 'Clinic' } },
    { resource: { resourceType: 'Practitioner', id: 'prac-1', identifier: [{ system: NPI, value: '1234567893' }] } },
  ] },
  { resourceType: 'Patient', id: 'pat-1', identifier: [{ system: MRN, value: 'MRN-1' }], managingOrganization: { reference: 'Organization/org-1' } },
  { resourceType: 'Patient', id: 'pat-2a', identifier: [{ system: MRN, value: 'MRN-2' }] },
  { resourceType: 'Patient', id: 'pat-2b', identifier: [{ system: MRN, value: 'MRN-2' }] },
].map((r) => JSON.stringify(r)).join('\n') + '\n';

/** Runs a node script; resolves {code, stderr} when it exits. */
function spawnExit(args) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  others.push(child);
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
}

let validator;
async function validCapabilityStatement(cs) {
  validator ??= await import(pathToFileURL(join(root, 'tests', 'node', 'validate-fhir.mjs')).href);
  const result = validator.validateSingleResource(cs);
  return { ok: result.ok, detail: result.issues.filter((i) => i.severity === 'error').slice(0, 3).map((i) => `${i.path}: ${i.message}`).join('\n') };
}

const ooCode = (r) => r.body?.resourceType === 'OperationOutcome' ? r.body.issue?.[0]?.code : undefined;
/** A refusal as the profile should give it: status, OperationOutcome code not-supported, Allow on a 405. */
function refused(r, status, allow) {
  return r.status === status && ooCode(r) === 'not-supported' && (allow === undefined || r.headers.allow === allow);
}
const show = (r) => `${r.status} allow=${JSON.stringify(r.headers?.allow)} ${ooText(r.body).slice(0, 300)}`;
const csResource = (cs, type) => cs.rest?.[0]?.resource?.find((r) => r.type === type);
const codes = (x) => (x?.interaction ?? []).map((i) => i.code).sort().join(',');
const sameMap = (a, b) => JSON.stringify(Object.entries(a ?? {}).sort()) === JSON.stringify(Object.entries(b ?? {}).sort());
const observation = (extra = {}) => ({ resourceType: 'Observation', status: 'final', code: { text: 'headache days' }, ...extra });

async function testProfiles({ consultation, singleSb, badProfile }) {
  const ctl = (path, body, at) => request('POST', path, { body, headers: { 'Content-Type': 'application/json' }, at });
  const setProfile = (spec) => ctl('/_sandbox/profile', spec);

  // ---- full (the default): what it advertises, the new counters
  await reset();
  const fullMeta = (await request('GET', '/fhir/metadata')).body;
  const fullPatient = csResource(fullMeta, 'Patient');
  check('profile full: metadata advertises transaction and every R4 resource type with conditional create/update and identifier search',
    JSON.stringify(fullMeta.rest[0].interaction) === '[{"code":"transaction"}]' && fullMeta.rest[0].resource.length > 140
    && fullPatient?.conditionalCreate === true && fullPatient.conditionalUpdate === true && fullPatient.updateCreate === true
    && fullPatient.searchParam.some((p) => p.name === 'identifier') && fullMeta.name === 'EhrSandboxFull', JSON.stringify(fullPatient).slice(0, 300));
  const fullValid = await validCapabilityStatement(fullMeta);
  check('profile full: the CapabilityStatement is a valid R4 resource', fullValid.ok, fullValid.detail);
  await request('POST', '/fhir/Patient', { body: { resourceType: 'Patient', identifier: [{ system: MRN, value: 'S1' }] } });
  await request('GET', `/fhir/Patient?identifier=${MRN}|S1`);
  const batchOnFull = await postBundle({ resourceType: 'Bundle', type: 'batch', entry: [] });
  const sFull = await stats();
  check('profile full: a batch is refused with 400 not-supported, as before profiles', refused(batchOnFull, 400), show(batchOnFull));
  check('stats: interactions, interactionsByType and refused count what was asked', sFull.profile === 'full'
    && sFull.interactions.create === 1 && sFull.interactions['search-type'] === 1 && sFull.interactions.batch === 1
    && sFull.interactions.capabilities === 1 && sameMap(sFull.interactionsByType.Patient, { create: 1, 'search-type': 1 })
    && sameMap(sFull.refused, { batch: 1 }) && sameMap(sFull.refusedByReason, { batch: 1 }) && sameMap(sFull.ignored, {}),
    JSON.stringify({ i: sFull.interactions, t: sFull.interactionsByType, r: sFull.refused }));

  // ---- runtime switch to "batch": the EHR starts refusing transactions
  const toBatch = await setProfile({ profile: 'batch' });
  check('POST /_sandbox/profile {"profile":"batch"}: 200, now batch', toBatch.status === 200 && toBatch.body?.profile === 'batch'
    && toBatch.body.startProfile === 'full' && toBatch.body.available.includes('single'), JSON.stringify(toBatch.body));
  const batchMeta = (await request('GET', '/fhir/metadata')).body;
  check('profile batch: metadata advertises batch and no transaction', JSON.stringify(batchMeta.rest[0].interaction) === '[{"code":"batch"}]'
    && csResource(batchMeta, 'Observation')?.conditionalCreate === true);
  const before = (await stats()).resources;
  const txRefused = await postBundle(consultation);
  check('profile batch: the connector\'s transaction is refused: 405 not-supported, Allow: POST', refused(txRefused, 405, 'POST'), show(txRefused));
  check('... and nothing of it is stored', sameMap((await stats()).resources, before));
  const bSystem = 'https://sandbox.example/batch';
  const batch = await postBundle({
    resourceType: 'Bundle', type: 'batch', entry: [
      { resource: { resourceType: 'Patient', identifier: [{ system: bSystem, value: 'b1' }] }, request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${bSystem}|b1` } },
      { resource: { resourceType: 'Patient', gender: 'f' }, request: { method: 'POST', url: 'Patient' } },
      { fullUrl: 'urn:uuid:0b2c5a8e-7c1d-4c59-9a51-2f0f6f1f0002', resource: observation({ subject: { reference: 'urn:uuid:0b2c5a8e-7c1d-4c59-9a51-2f0f6f1f0003' } }), request: { method: 'POST', url: 'Observation' } },
      { resource: observation({ subject: { reference: `Patient?identifier=${MRN}|S1` } }), request: { method: 'POST', url: 'Observation' } },
      { request: { method: 'GET', url: `Patient?identifier=${MRN}|S1` } },
    ],
  }, { headers: { Prefer: 'return=minimal' } });
  const bs = statuses(batch);
  check('profile batch: a batch answers each entry on its own (201, 422, 400 urn:uuid, 400 conditional reference, 200 search)',
    batch.status === 200 && batch.body?.type === 'batch-response'
    && JSON.stringify(bs) === JSON.stringify(['201 Created', '422 Unprocessable Entity', '400 Bad Request', '400 Bad Request', '200 OK'])
    && /^Patient\/[^/]+\/_history\/1$/.test(batch.body.entry[0].response.location) && batch.body.entry[0].response.etag === 'W/"1"'
    && !!batch.body.entry[0].response.lastModified && !batch.body.entry[0].resource
    && batch.body.entry[1].response.outcome?.issue?.some((i) => (i.expression ?? []).includes('Patient.gender'))
    && batch.body.entry[4].resource?.total === 1, `${batch.status} ${JSON.stringify(bs)} ${JSON.stringify(batch.body?.entry?.[0]?.response)}`);
  const again = await postBundle({ resourceType: 'Bundle', type: 'batch', entry: [
    { resource: { resourceType: 'Patient', identifier: [{ system: bSystem, value: 'b1' }] }, request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${bSystem}|b1` } }] });
  const sBatch = await stats();
  check('profile batch: conditional create in a batch is honoured (200 OK the second time; one Patient)',
    statuses(again)[0] === '200 OK' && (await searchAll('Patient', `identifier=${bSystem}|b1`)).length === 1, JSON.stringify(statuses(again)));
  check('profile batch: refusals counted (transaction, urn:uuid and conditional references)', sameMap(sBatch.refused,
    { batch: 1, transaction: 1, 'urn-uuid-reference:Observation': 1, 'conditional-reference:Observation': 1 }), JSON.stringify(sBatch.refused));

  // ---- runtime switch to "ignore-if-none-exist": the silent duplicate
  await setProfile({ profile: 'ignore-if-none-exist' });
  const ignoreMeta = (await request('GET', '/fhir/metadata')).body;
  check('profile ignore-if-none-exist: metadata has no transaction or batch and conditionalCreate false',
    !ignoreMeta.rest[0].interaction && csResource(ignoreMeta, 'Observation')?.conditionalCreate === false
    && !csResource(ignoreMeta, 'Observation').searchParam.some((p) => p.name === 'identifier')
    && csResource(ignoreMeta, 'Patient').searchParam.some((p) => p.name === 'identifier'));
  const dupId = { identifier: [{ system: 'https://clinic.example/fhir/resource', value: 'obs-dup' }] };
  const d1 = await request('POST', '/fhir/Observation', { body: observation(dupId), headers: { 'If-None-Exist': 'identifier=https://clinic.example/fhir/resource|obs-dup' } });
  const d2 = await request('POST', '/fhir/Observation', { body: observation(dupId), headers: { 'If-None-Exist': 'identifier=https://clinic.example/fhir/resource|obs-dup' } });
  const sIgnore = await stats();
  check('profile ignore-if-none-exist: If-None-Exist is ignored silently: 201 twice, two Observations with the same identifier',
    d1.status === 201 && d2.status === 201 && d1.headers.location !== d2.headers.location && sIgnore.resources.Observation === 2
    && sIgnore.ignored['if-none-exist:Observation'] === 2 && sameMap(sIgnore.refused, sBatch.refused), `${d1.status} ${d2.status} ${JSON.stringify(sIgnore.ignored)}`);
  const byIdentifier = await request('GET', '/fhir/Observation?identifier=https://clinic.example/fhir/resource|obs-dup');
  const patientByMrn = await request('GET', `/fhir/Patient?identifier=${MRN}|S1`);
  check('profile ignore-if-none-exist: Observation?identifier is not advertised (400), Patient?identifier is (200)',
    refused(byIdentifier, 400) && patientByMrn.status === 200 && patientByMrn.body.total === 1, `${show(byIdentifier)} / ${patientByMrn.status}`);
  const txIgnore = await postBundle(consultation);
  check('profile ignore-if-none-exist: transaction refused 405', refused(txIgnore, 405, ''), show(txIgnore));

  // ---- an inline profile: versioned-update (If-Match required), no update-as-create, one type only
  const custom = {
    name: 'strict-patient',
    capabilityStatement: { resourceType: 'CapabilityStatement', status: 'active', date: '2026-01-01', kind: 'instance', fhirVersion: '4.0.1', format: ['json'],
      rest: [{ mode: 'server', interaction: [{ code: 'transaction' }], resource: [{ type: 'Patient',
        interaction: [{ code: 'read' }, { code: 'create' }, { code: 'update' }, { code: 'search-type' }],
        versioning: 'versioned-update', updateCreate: false, conditionalCreate: true, conditionalUpdate: false,
        searchParam: [{ name: 'identifier', type: 'token' }] }] }] },
  };
  const toCustom = await setProfile({ definition: custom });
  check('POST /_sandbox/profile {"definition": {...}}: an inline profile', toCustom.status === 200 && toCustom.body.profile === 'strict-patient', JSON.stringify(toCustom.body));
  const cp = await request('POST', '/fhir/Patient', { body: { resourceType: 'Patient', identifier: [{ system: MRN, value: 'C1' }] } });
  const cpId = /\/Patient\/([^/]+)\//.exec(cp.headers.location ?? '')?.[1];
  const noIfMatch = await request('PUT', `/fhir/Patient/${cpId}`, { body: { resourceType: 'Patient', id: cpId, gender: 'other' } });
  const withIfMatch = await request('PUT', `/fhir/Patient/${cpId}`, { body: { resourceType: 'Patient', id: cpId, gender: 'other' }, headers: { 'If-Match': 'W/"1"' } });
  check('versioning versioned-update: an update without If-Match is refused with 400, with If-Match it is 200',
    cp.status === 201 && refused(noIfMatch, 400) && withIfMatch.status === 200, `${cp.status} ${show(noIfMatch)} ${withIfMatch.status}`);
  const upCreate = await request('PUT', '/fhir/Patient/client-chosen', { body: { resourceType: 'Patient', id: 'client-chosen' } });
  check('updateCreate false: PUT of a new id is refused with 405, Allow: GET, HEAD, PUT', refused(upCreate, 405, 'GET, HEAD, PUT'), show(upCreate));
  const condUpd = await request('PUT', `/fhir/Patient?identifier=${MRN}|C1`, { body: { resourceType: 'Patient', identifier: [{ system: MRN, value: 'C1' }] } });
  check('conditionalUpdate false: PUT Patient?identifier is refused with 400', refused(condUpd, 400), show(condUpd));
  const countBefore = (await stats()).resources;
  const txMixed = await postBundle({ resourceType: 'Bundle', type: 'transaction', entry: [
    { resource: { resourceType: 'Patient', identifier: [{ system: MRN, value: 'C2' }] }, request: { method: 'POST', url: 'Patient' } },
    { resource: observation(), request: { method: 'POST', url: 'Observation' } }] });
  const txNoIfMatch = await postBundle({ resourceType: 'Bundle', type: 'transaction', entry: [
    { resource: { resourceType: 'Patient', id: cpId }, request: { method: 'PUT', url: `Patient/${cpId}` } }] });
  check('a transaction entry the profile does not allow fails the whole transaction (404 for a type not offered, nothing stored)',
    refused(txMixed, 404) && txMixed.body.issue[0].expression?.[0] === 'Bundle.entry[1].request' && sameMap((await stats()).resources, countBefore), show(txMixed));
  check('... and If-Match is required on transaction PUT entries too (400)', refused(txNoIfMatch, 400), show(txNoIfMatch));
  const txRefSearch = await postBundle({ resourceType: 'Bundle', type: 'transaction', entry: [
    { resource: { resourceType: 'Patient', link: [{ other: { reference: 'Patient?family=x' }, type: 'seealso' }] }, request: { method: 'POST', url: 'Patient' } }] });
  check('a conditional reference is a search: a parameter the profile does not offer is refused (400, search-param:Patient.family)',
    refused(txRefSearch, 400) && txRefSearch.body.issue[0].expression?.[0] === 'Bundle.entry[0].resource.link[0].other.reference'
    && (await stats()).refused['search-param:Patient.family'] === 1, show(txRefSearch));
  const badDefs = await Promise.all([
    setProfile({ definition: { ...custom, capabilityStatement: { ...custom.capabilityStatement, rest: [{ mode: 'server', resource: [{ type: 'Patient', interaction: [{ code: 'teleport' }] }] }] } } }),
    setProfile({ definition: { ...custom, capabilityStatement: { ...custom.capabilityStatement, rest: [{ mode: 'server', resource: [{ type: 'Patient', searchParam: [{ name: 'legal-sex', type: 'token' }] }] }] } } }),
    setProfile({ profile: 'no-such-profile' }),
    setProfile({ profile: 'batch', extra: 1 }),
  ]);
  check('POST /_sandbox/profile refuses an unknown interaction, a non-R4 search parameter, an unknown name, a malformed body: 400',
    badDefs.every((r) => r.status === 400 && r.body?.error) && /unknown profile "no-such-profile"/.test(badDefs[2].body.error)
    && (await request('GET', '/_sandbox/profile')).body.profile === 'strict-patient', badDefs.map((r) => `${r.status} ${r.body?.error}`).join('\n'));
  await reset();
  const afterReset = await request('GET', '/_sandbox/profile');
  check('POST /_sandbox/reset puts the start profile back (full)', afterReset.body.profile === 'full' && (await stats()).profile === 'full');

  // ---- "single" (Epic-like), started with --profile single --preload
  const bad = await badProfile;
  check('--profile no-such-profile: exit status 2, naming the available profiles', bad.code === 2 && /unknown profile "no-such-profile"/.test(bad.stderr)
    && /single/.test(bad.stderr), `${bad.code} ${bad.stderr.slice(0, 200)}`);
  let line;
  try {
    line = await singleSb.ready;
  } catch (err) {
    check('--profile single --preload FILE: the sandbox starts', false, err.message);
    return;
  }
  const p2 = Number(/"port":(\d+)/.exec(line.line)?.[1]);
  const s2 = (method, path, opts = {}) => request(method, path, { ...opts, at: p2 });
  const stats2 = async () => (await s2('GET', '/_sandbox/stats')).body;
  const meta2 = (await s2('GET', '/fhir/metadata')).body;
  const types2 = meta2.rest[0].resource.map((r) => r.type);
  check('profile single: metadata like Epic\'s: no transaction or batch, no conditional create/update, no update-as-create',
    meta2.name === 'EhrSandboxSingle' && !meta2.rest[0].interaction && meta2.rest[0].resource.every((r) => r.conditionalCreate === false
      && r.conditionalUpdate === false && r.updateCreate === false && r.conditionalDelete === 'not-supported'), JSON.stringify(meta2.rest[0].interaction));
  check('profile single: creates only Condition, Observation, Procedure, DocumentReference, AllergyIntolerance, ServiceRequest',
    meta2.rest[0].resource.filter((r) => codes(r).includes('create')).map((r) => r.type).sort().join(',')
      === 'AllergyIntolerance,Condition,DocumentReference,Observation,Procedure,ServiceRequest'
    && codes(csResource(meta2, 'Patient')) === 'read,search-type' && codes(csResource(meta2, 'MedicationAdministration')) === 'read,search-type'
    && codes(csResource(meta2, 'Provenance')) === 'read' && codes(csResource(meta2, 'Observation')) === 'create,read,search-type,update'
    && !types2.includes('ChargeItem') && !types2.includes('MedicationStatement') && !types2.includes('DetectedIssue'), types2.join(','));
  check('profile single: Patient and Practitioner searchable by identifier, Organization by _id only',
    csResource(meta2, 'Patient').searchParam.some((p) => p.name === 'identifier') && csResource(meta2, 'Practitioner').searchParam.some((p) => p.name === 'identifier')
    && csResource(meta2, 'Organization').searchParam.map((p) => p.name).join(',') === '_count,_id');
  const singleValid = await validCapabilityStatement(meta2);
  check('profile single: the CapabilityStatement is a valid R4 resource', singleValid.ok, singleValid.detail);
  const total2 = async (q) => (await s2('GET', `/fhir/${q}`)).body?.total;
  const s2start = await stats2();
  check('--preload: patients by MRN (one, several, none) and the practitioner by NPI are there',
    await total2(`Patient?identifier=${MRN}|MRN-1`) === 1 && await total2(`Patient?identifier=${MRN}|MRN-2`) === 2
    && await total2(`Patient?identifier=${MRN}|MRN-3`) === 0 && await total2(`Practitioner?identifier=${NPI}|1234567893`) === 1
    && s2start.preloaded === 5 && sameMap(s2start.resources, { Organization: 1, Patient: 3, Practitioner: 1 }) && !s2start.interactions.create,
  JSON.stringify(s2start.resources));

  // What a strict Epic-like server refuses, and how.
  const obsId = { identifier: [{ system: 'https://clinic.example/fhir/resource', value: 'o1' }] };
  const r = {
    transaction: await s2('POST', '/fhir', { body: consultation }),
    batch: await s2('POST', '/fhir', { body: { resourceType: 'Bundle', type: 'batch', entry: [] } }),
    createPatient: await s2('POST', '/fhir/Patient', { body: { resourceType: 'Patient', identifier: [{ system: MRN, value: 'MRN-3' }] } }),
    ifNoneExist: await s2('POST', '/fhir/Observation', { body: observation({ ...obsId, subject: { reference: 'Patient/pat-1' } }), headers: { 'If-None-Exist': 'identifier=https://clinic.example/fhir/resource|o1' } }),
    condUpdate: await s2('PUT', '/fhir/Observation?identifier=https://clinic.example/fhir/resource|o1', { body: observation(obsId) }),
    createMA: await s2('POST', '/fhir/MedicationAdministration', { body: { resourceType: 'MedicationAdministration', status: 'completed', medicationCodeableConcept: { text: 'x' }, subject: { reference: 'Patient/pat-1' }, effectiveDateTime: '2026-01-01' } }),
    createProvenance: await s2('POST', '/fhir/Provenance', { body: { resourceType: 'Provenance', target: [{ reference: 'Patient/pat-1' }], recorded: '2026-01-01T00:00:00Z', agent: [{ who: { reference: 'Practitioner/prac-1' } }] } }),
    searchProvenance: await s2('GET', '/fhir/Provenance?patient=pat-1'),
    chargeItem: await s2('POST', '/fhir/ChargeItem', { body: { resourceType: 'ChargeItem', status: 'billable', code: { text: 'x' }, subject: { reference: 'Patient/pat-1' } } }),
    orgByIdentifier: await s2('GET', '/fhir/Organization?identifier=https://clinic.example/fhir/organization|clinic'),
    updateCreate: await s2('PUT', '/fhir/Observation/mine', { body: observation({ id: 'mine', subject: { reference: 'Patient/pat-1' } }) }),
    delete: await s2('DELETE', '/fhir/Patient/pat-1'),
    conditionalRef: await s2('POST', '/fhir/Observation', { body: observation({ subject: { reference: `Patient?identifier=${MRN}|MRN-1` } }) }),
  };
  const expect = {
    transaction: [405, ''], batch: [405, ''], createPatient: [405, 'GET, HEAD'], ifNoneExist: [400], condUpdate: [400],
    // Provenance is read only at Epic: neither create nor search, so /Provenance allows no method at all.
    createMA: [405, 'GET, HEAD'], createProvenance: [405, ''], searchProvenance: [405, ''], chargeItem: [404], orgByIdentifier: [400],
    updateCreate: [405, 'GET, HEAD, PUT'], delete: [405, 'GET, HEAD'], conditionalRef: [400],
  };
  for (const [name, [status, allow]] of Object.entries(expect)) {
    check(`profile single refuses ${name}: ${status} not-supported${allow !== undefined ? `, Allow: "${allow}"` : ''}`, refused(r[name], status, allow), show(r[name]));
  }
  const s2refused = await stats2();
  check('profile single: nothing refused was stored', sameMap(s2refused.resources, s2start.resources), JSON.stringify(s2refused.resources));
  check('stats.refused names each refusal by reason and type', sameMap(s2refused.refused, {
    transaction: 1, batch: 1, 'create:Patient': 1, 'conditional-create:Observation': 1, 'conditional-update:Observation': 1,
    'create:MedicationAdministration': 1, 'create:Provenance': 1, 'search-type:Provenance': 1, 'type:ChargeItem': 1,
    'search-param:Organization.identifier': 1, 'update-create:Observation': 1, 'delete:Patient': 1, 'conditional-reference:Observation': 1,
  }) && s2refused.refusedByReason.create === 3, JSON.stringify(s2refused.refused));

  // What it accepts: one resource per request, literal references to the preloaded patient.
  await s2('POST', '/_sandbox/reset');
  const o1 = await s2('POST', '/fhir/Observation', { body: observation({ ...obsId, subject: { reference: 'Patient/pat-1' }, performer: [{ reference: 'Practitioner/prac-1' }] }) });
  const o1Id = /\/Observation\/([^/]+)\//.exec(o1.headers.location ?? '')?.[1];
  const o1Read = await s2('GET', `/fhir/Observation/${o1Id}`);
  const o1Upd = await s2('PUT', `/fhir/Observation/${o1Id}`, { body: { ...o1Read.body, status: 'amended' } });
  const cond = await s2('POST', '/fhir/Condition', { body: { resourceType: 'Condition', code: { text: 'chronic migraine' }, subject: { reference: 'Patient/pat-1' } } });
  const byPatient = await s2('GET', '/fhir/Observation?patient=Patient/pat-1');
  const mrn1 = await s2('GET', `/fhir/Patient?identifier=${MRN}|MRN-1`);
  const s2clean = await stats2();
  check('profile single accepts create, read, update (no If-Match needed), search by patient and by MRN',
    o1.status === 201 && o1Read.status === 200 && o1Upd.status === 200 && o1Upd.headers.etag === 'W/"2"' && cond.status === 201
    && byPatient.body?.total === 1 && mrn1.body?.total === 1, `${o1.status} ${o1Read.status} ${o1Upd.status} ${cond.status} ${byPatient.status}`);
  check('"nothing forbidden was attempted": refused stays {} when only advertised interactions are used',
    sameMap(s2clean.refused, {}) && sameMap(s2clean.refusedByReason, {}) && s2clean.interactions.create === 2
    && sameMap(s2clean.interactionsByType.Observation, { create: 1, read: 1, update: 1, 'search-type': 1 }), JSON.stringify(s2clean.refused));

  // --preload again at runtime: "the patient exists now"; the start preload comes back on reset.
  const mrn3 = { resourceType: 'Patient', id: 'pat-3', identifier: [{ system: MRN, value: 'MRN-3' }] };
  const pre = await ctl('/_sandbox/preload', `${JSON.stringify(mrn3)}\n`, p2);
  check('POST /_sandbox/preload: 200 {"preloaded":1,...}; Patient MRN-3 now exists', pre.status === 200 && pre.body.preloaded === 1
    && pre.body.resources[0].id === 'pat-3' && await total2(`Patient?identifier=${MRN}|MRN-3`) === 1, JSON.stringify(pre.body));
  const preBad = await Promise.all([
    ctl('/_sandbox/preload', { resourceType: 'Bundle', type: 'collection', entry: [{ resource: { resourceType: 'Patient', id: 'pat-4' } }, { resource: { resourceType: 'Patient', gender: 'f' } }] }, p2),
    ctl('/_sandbox/preload', { resourceType: 'Patient', id: 'pat-5', managingOrganization: { reference: 'Organization/nowhere' } }, p2),
    ctl('/_sandbox/preload', 'not json', p2),
  ]);
  check('POST /_sandbox/preload of an invalid resource, a dangling reference, or not JSON: 400 and nothing stored',
    preBad.every((x) => x.status === 400 && x.body?.error) && (await s2('GET', '/fhir/Patient/pat-4')).status === 404
    && (await s2('GET', '/fhir/Patient/pat-5')).status === 404, preBad.map((x) => `${x.status} ${x.body?.error}`).join('\n'));
  await s2('POST', '/_sandbox/reset');
  check('reset: the runtime preload is gone, the --preload file is stored again',
    await total2(`Patient?identifier=${MRN}|MRN-3`) === 0 && await total2(`Patient?identifier=${MRN}|MRN-1`) === 1
    && (await stats2()).preloaded === 5);
}

run()
  .catch((err) => check('self-test ran without an unexpected error', false, err.stack ?? err))
  .finally(finish);
