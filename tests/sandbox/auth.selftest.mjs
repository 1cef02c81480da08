#!/usr/bin/env node
// Self-test of the EHR sandbox's OAuth 2.0 side (tests/sandbox/auth.mjs, through ehr-sandbox.mjs): the token
// endpoint with SMART Backend Services assertions (RS384 and ES384, a JWKS file and a JWKS URL), with
// client_secret_basic and with static tokens; bearer-token enforcement on /fhir; the auth faults of
// /_sandbox/auth; the counters; and that --verbose never prints a credential.
//
//   node tests/sandbox/auth.selftest.mjs [--verbose]
//
// Generates its certificates (certs/make-dev-certs.sh) and keys (node:crypto) in a temporary directory,
// signs the client assertions with jose (tests/node/node_modules), starts the sandbox with mutual TLS
// required and a second one without authentication. Prints "ok - ..." / "not ok - ..." per check and
// "N passed, M failed" last; exit 1 on failure. Needs: node 20, openssl, bash, `cd tests/node && npm ci`.

import { spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const verbose = process.argv.includes('--verbose');
const started = performance.now();
const DEADLINE_MS = 45_000;

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

const tmp = mkdtempSync(join(tmpdir(), 'ehr-sandbox-auth-selftest-'));
const children = [];
let jwksServer;
let finished = false;

function finish() {
  if (finished) return;
  finished = true;
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  jwksServer?.close();
  jwksServer?.closeAllConnections();
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

let jose;
try {
  const requireFromTools = createRequire(join(root, 'tests', 'node', 'package.json'));
  jose = await import(pathToFileURL(requireFromTools.resolve('jose')).href);
} catch (err) {
  check('jose is installed (cd tests/node && npm ci)', false, err.message);
  finish();
}

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

const certDir = join(tmp, 'certs');
const pem = (name) => readFileSync(join(certDir, name));
const agents = [];
function agent({ cert = 'client' } = {}) {
  const a = new Agent({ keepAlive: true, maxSockets: 1, ca: pem('ca.pem'), ...(cert ? { cert: pem(`${cert}.pem`), key: pem(`${cert}.key`) } : {}) });
  agents.push(a);
  return a;
}

/** One HTTPS request; resolves {status, headers, body (JSON or text), ms}; rejects on socket errors. */
function request(port, method, path, { body, headers = {}, via, timeoutMs = 10_000 } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req = httpsRequest({
      host: 'localhost', port, method, path, agent: via,
      headers: { Accept: 'application/json', ...(data ? { 'Content-Length': data.length } : {}), ...headers },
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
        resolve({ status: res.statusCode, headers: res.headers, body: parsed, ms: performance.now() - t0 });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}

async function expectNoResponse(promise) {
  try {
    const r = await promise;
    return { ok: false, detail: `got HTTP ${r.status}` };
  } catch (err) {
    return { ok: true, detail: err.code ?? err.message };
  }
}

function startSandbox(args) {
  const child = spawn(process.execPath, [join(here, 'ehr-sandbox.mjs'),
    '--cert', join(certDir, 'server.pem'), '--key', join(certDir, 'server.key'), '--port', '0', ...args],
  { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (verbose) process.stderr.write(d);
  });
  const ready = new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no ready line within 20 s; stderr: ${stderr}`)), 20_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^\{"ready":true,"port":(\d+),"base":"([^"]+)"\}\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ port: Number(m[1]), base: m[2] });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sandbox exited with ${code} before ready; stderr: ${stderr}`));
    });
  });
  return { child, ready, stderr: () => stderr };
}

/** Runs the sandbox with arguments that must be refused; resolves {code, stderr}. */
function usageRun(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(here, 'ehr-sandbox.mjs'), '--cert', 'x.pem', '--key', 'x.key', ...args],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

// ---- keys and client assertions

function keyPair(type, kid) {
  const { publicKey, privateKey } = type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const alg = type === 'rsa' ? 'RS384' : 'ES384';
  return { kid, alg, privateJwk: privateKey.export({ format: 'jwk' }), publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' } };
}

const nowS = () => Math.floor(Date.now() / 1000);
const secrets = []; // every credential the test handles: none may appear in the sandbox's stderr

/**
 * A client assertion signed with jose. `claims` overrides the defaults (a value of undefined removes the
 * claim); `header` adds to the protected header.
 */
async function assertion(key, { client, claims = {}, header = {}, aud } = {}) {
  const base = { iss: client, sub: client, aud, exp: nowS() + 120, iat: nowS(), jti: randomUUID() };
  const payload = Object.fromEntries(Object.entries({ ...base, ...claims }).filter(([, v]) => v !== undefined));
  const signingKey = await jose.importJWK(key.privateJwk, key.alg);
  const jwt = await new jose.SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header }).sign(signingKey);
  secrets.push(jwt);
  return jwt;
}

const form = (fields) => new URLSearchParams(Object.entries(fields).filter(([, v]) => v !== undefined)).toString();

// ---------------------------------------------------------------------------------------------------------
// Test
// ---------------------------------------------------------------------------------------------------------

async function run() {
  const certs = spawnSync('bash', [join(root, 'certs', 'make-dev-certs.sh'), certDir], { encoding: 'utf8' });
  if (!check('dev certificates generated (certs/make-dev-certs.sh)', certs.status === 0, certs.stderr)) return;

  // Keys: an RSA 2048 (RS384) and a P-384 (ES384) key in a JWKS file; a P-384 key served at a JWKS URL.
  const rsa = keyPair('rsa', 'rsa-1');
  const ec = keyPair('ec', 'ec-1');
  const urlKey = keyPair('ec', 'url-1');
  const rotatedKey = keyPair('ec', 'url-2');
  const stranger = keyPair('rsa', 'rsa-1'); // same kid as the registered key, other key material
  const jwksFile = join(tmp, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: [rsa.publicJwk, ec.publicJwk] }));

  let servedKeys = [urlKey.publicJwk];
  let jwksFetches = 0;
  jwksServer = createHttpsServer({ cert: pem('server.pem'), key: pem('server.key') }, (req, res) => {
    if (req.url !== '/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    jwksFetches++;
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys: servedKeys }));
  });
  await new Promise((r) => jwksServer.listen(0, '127.0.0.1', r));
  const jwksUrl = `https://localhost:${jwksServer.address().port}/jwks.json`;

  const secret = `s3cret-${randomBytes(12).toString('base64url')}`;
  secrets.push(secret);
  const secretFile = join(tmp, 'client-secret.txt');
  writeFileSync(secretFile, `${secret}\nsecond line is ignored\n`);
  const staticA = randomBytes(24).toString('base64url');
  const staticB = randomBytes(24).toString('base64url');
  secrets.push(staticA, staticB);
  const staticFile = join(tmp, 'static-tokens.txt');
  writeFileSync(staticFile, `# static tokens\n${staticA}\n`);

  // Two sandboxes start at once: one with every kind of authentication and mutual TLS, one without auth;
  // and two command lines that must be refused.
  const sb = startSandbox(['--client-ca', join(certDir, 'ca.pem'), '--require-client-cert', '--verbose',
    '--smart-client', `smart-file=${jwksFile}`, '--smart-client', `smart-url=${jwksUrl}`, '--jwks-ca', join(certDir, 'ca.pem'),
    '--secret-client', `basic-client=${secretFile}`, '--static-token-file', staticFile]);
  const plain = startSandbox([]);
  const usage = await Promise.all([usageRun(['--smart-client', 'no-jwks']), usageRun(['--token-lifetime', '30'])]);
  check('usage errors: --smart-client without ID=JWKS, --token-lifetime without a client: exit 2',
    usage.every((u) => u.code === 2), usage.map((u) => `${u.code} ${u.stderr.split('\n')[0]}`).join('\n'));
  let port;
  let plainPort;
  try {
    ({ port } = await sb.ready);
    ({ port: plainPort } = await plain.ready);
  } catch (err) {
    check('both sandboxes start', false, err.message);
    return;
  }
  check('both sandboxes start and print their ready line', true);

  const via = agent();
  const tokenUrl = `https://localhost:${port}/auth/token`;
  const req = (method, path, opts = {}) => request(port, method, path, { via, ...opts });
  const tokenRequest = (fields, headers = {}) => req('POST', '/auth/token', {
    body: form(fields), headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
  });
  const jwtGrant = (jwt, extra = {}) => tokenRequest({
    grant_type: 'client_credentials', scope: 'system/*.cruds',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: jwt, ...extra,
  });
  const basic = (id, s) => `Basic ${Buffer.from(`${id}:${s}`).toString('base64')}`;
  const basicGrant = (id, s, scope = 'system/Patient.rs system/Observation.cruds') =>
    tokenRequest({ grant_type: 'client_credentials', scope }, { Authorization: basic(id, s) });
  const fhirGet = (token, path = '/fhir/Patient') => req('GET', path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  const control = (spec) => req('POST', '/_sandbox/auth', { body: spec, headers: { 'Content-Type': 'application/json' } });
  const stats = async () => (await req('GET', '/_sandbox/stats')).body;
  const issuedToken = (r) => {
    if (r.body?.access_token) secrets.push(r.body.access_token);
    return r.body?.access_token;
  };
  const show = (r) => `${r.status} ${JSON.stringify(r.body)}`;

  // ---- discovery
  const conf = await req('GET', '/fhir/.well-known/smart-configuration');
  check('smart-configuration: 200 application/json, token_endpoint https://localhost:PORT/auth/token',
    conf.status === 200 && /^application\/json/.test(conf.headers['content-type']) && conf.body?.token_endpoint === tokenUrl, show(conf));
  check('smart-configuration: auth methods, RS384/ES384, client_credentials, scopes, capabilities',
    JSON.stringify(conf.body?.token_endpoint_auth_methods_supported) === '["private_key_jwt","client_secret_basic"]'
    && JSON.stringify(conf.body?.token_endpoint_auth_signing_alg_values_supported) === '["RS384","ES384"]'
    && JSON.stringify(conf.body?.grant_types_supported) === '["client_credentials"]'
    && Array.isArray(conf.body?.scopes_supported) && conf.body.scopes_supported.length > 0
    && ['client-confidential-asymmetric', 'client-confidential-symmetric'].every((c) => conf.body?.capabilities?.includes(c)), show(conf));
  const meta = await req('GET', '/fhir/metadata');
  const security = meta.body?.rest?.[0]?.security;
  const oauthUris = security?.extension?.find((e) => e.url === 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris');
  check('CapabilityStatement without a token: 200, security.service SMART-on-FHIR and the oauth-uris token extension',
    meta.status === 200 && security?.service?.[0]?.coding?.some((c) => c.system === 'http://terminology.hl7.org/CodeSystem/restful-security-service'
      && c.code === 'SMART-on-FHIR') && oauthUris?.extension?.find((e) => e.url === 'token')?.valueUri === tokenUrl,
    `${meta.status} ${JSON.stringify(security)}`);
  const noCert = await expectNoResponse(request(port, 'GET', '/fhir/.well-known/smart-configuration', { via: agent({ cert: null }) }));
  check('auth combines with --require-client-cert: no client certificate, no response (token endpoint included)', noCert.ok, noCert.detail);

  // ---- bearer tokens on FHIR requests
  const none = await fhirGet();
  check('FHIR request without a token: 401, WWW-Authenticate Bearer error="invalid_token", OperationOutcome code login',
    none.status === 401 && /^Bearer\b/.test(none.headers['www-authenticate'] ?? '') && /error="invalid_token"/.test(none.headers['www-authenticate'])
    && none.body?.resourceType === 'OperationOutcome' && none.body.issue?.[0]?.code === 'login', `${show(none)} ${none.headers['www-authenticate']}`);
  const bogus = await fhirGet('bm90LWEtdG9rZW4');
  check('FHIR request with an unknown token: 401', bogus.status === 401 && /unknown/.test(bogus.headers['www-authenticate']), show(bogus));
  const controlNoToken = await req('GET', '/_sandbox/auth');
  check('control routes need no token (GET /_sandbox/auth: 200)', controlNoToken.status === 200
    && JSON.stringify(controlNoToken.body?.clients) === '{"smart":["smart-file","smart-url"],"secret":["basic-client"]}', show(controlNoToken));

  // ---- private_key_jwt: accepted
  const rsGrant = await jwtGrant(await assertion(rsa, { client: 'smart-file', aud: tokenUrl }));
  const rsToken = issuedToken(rsGrant);
  check('RS384 assertion (RSA 2048, JWKS file): 200 bearer token, expires_in 300, scope echoed, Cache-Control no-store',
    rsGrant.status === 200 && /^[A-Za-z0-9_-]{43}$/.test(rsToken ?? '') && rsGrant.body.token_type === 'bearer'
    && rsGrant.body.expires_in === 300 && rsGrant.body.scope === 'system/*.cruds' && rsGrant.headers['cache-control'] === 'no-store'
    && /^application\/json/.test(rsGrant.headers['content-type']), show(rsGrant));
  const esGrant = await jwtGrant(await assertion(ec, { client: 'smart-file', aud: tokenUrl }));
  const esToken = issuedToken(esGrant);
  check('ES384 assertion (P-384, JWKS file): 200', esGrant.status === 200 && !!esToken && esToken !== rsToken, show(esGrant));
  const withToken = await fhirGet(rsToken);
  check('FHIR request with a good token: 200', withToken.status === 200 && withToken.body?.resourceType === 'Bundle', show(withToken));
  const write = await req('POST', '/fhir/Patient', { body: { resourceType: 'Patient', gender: 'female' },
    headers: { Authorization: `Bearer ${esToken}`, 'Content-Type': 'application/fhir+json' } });
  check('FHIR write with a good token: 201', write.status === 201, show(write));

  const urlGrant = await jwtGrant(await assertion(urlKey, { client: 'smart-url', aud: tokenUrl }));
  check('ES384 assertion of a client registered by JWKS URL: 200 (JWKS fetched over https with --jwks-ca)',
    urlGrant.status === 200 && jwksFetches === 1, `${show(urlGrant)} fetches=${jwksFetches}`);
  issuedToken(urlGrant);
  const cached = await jwtGrant(await assertion(urlKey, { client: 'smart-url', aud: tokenUrl, header: { jku: jwksUrl } }));
  check('jku equal to the registered JWKS URL: 200, and the JWKS is cached (no new fetch)',
    cached.status === 200 && jwksFetches === 1, `${show(cached)} fetches=${jwksFetches}`);
  issuedToken(cached);
  servedKeys = [urlKey.publicJwk, rotatedKey.publicJwk];
  const rotated = await jwtGrant(await assertion(rotatedKey, { client: 'smart-url', aud: tokenUrl }));
  check('a new kid at the JWKS URL: re-fetched and accepted', rotated.status === 200 && jwksFetches === 2, `${show(rotated)} fetches=${jwksFetches}`);
  issuedToken(rotated);

  // ---- private_key_jwt: refused
  const in5 = nowS() + 400;
  const hs = await new jose.SignJWT({ iss: 'smart-file', sub: 'smart-file', aud: tokenUrl, exp: nowS() + 60, jti: randomUUID() })
    .setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' }).sign(randomBytes(32));
  const unsecured = new jose.UnsecuredJWT({ iss: 'smart-file', sub: 'smart-file', aud: tokenUrl, exp: nowS() + 60, jti: randomUUID() }).encode();
  secrets.push(hs, unsecured);
  const replayed = await assertion(rsa, { client: 'smart-file', aud: tokenUrl });
  const first = await jwtGrant(replayed);
  issuedToken(first);
  const refusals = {
    'wrong kid': [await assertion({ ...rsa, kid: 'rsa-unknown' }, { client: 'smart-file', aud: tokenUrl }), /kid matches no RS384 key/],
    'wrong aud': [await assertion(rsa, { client: 'smart-file', aud: `https://localhost:${port}/fhir` }), /aud does not match the token endpoint/],
    'iss != sub': [await assertion(rsa, { client: 'smart-file', aud: tokenUrl, claims: { sub: 'smart-url' } }), /sub does not equal iss/],
    'unknown client': [await assertion(rsa, { client: 'nobody', aud: tokenUrl }), /not a registered client/],
    'exp missing': [await assertion(rsa, { client: 'smart-file', aud: tokenUrl, claims: { exp: undefined } }), /exp is missing/],
    'exp in the past': [await assertion(rsa, { client: 'smart-file', aud: tokenUrl, claims: { exp: nowS() - 60, iat: nowS() - 120 } }), /exp is in the past/],
    'exp more than 5 minutes ahead': [await assertion(rsa, { client: 'smart-file', aud: tokenUrl, claims: { exp: in5 } }), /more than 5 minutes/],
    'jti missing': [await assertion(rsa, { client: 'smart-file', aud: tokenUrl, claims: { jti: undefined } }), /jti is missing/],
    'iat 2 minutes ahead': [await assertion(rsa, { client: 'smart-file', aud: tokenUrl, claims: { iat: nowS() + 120 } }), /iat/],
    'replayed jti': [replayed, /jti has already been used/],
    'alg HS256': [hs, /alg must be RS384 or ES384/],
    'alg none': [unsecured, /alg must be RS384 or ES384/],
    'jku other than the registered one': [await assertion(urlKey, { client: 'smart-url', aud: tokenUrl, header: { jku: `https://localhost:${jwksServer.address().port}/other.json` } }), /jku/],
    'jku on a client registered by file': [await assertion(rsa, { client: 'smart-file', aud: tokenUrl, header: { jku: jwksUrl } }), /jku/],
    'registered kid, other key (bad signature)': [await assertion(stranger, { client: 'smart-file', aud: tokenUrl }), /signature/],
    'RSA kid used with ES384': [await assertion({ ...ec, kid: 'rsa-1' }, { client: 'smart-file', aud: tokenUrl }), /kid matches no ES384 key/],
  };
  check('a fresh assertion is accepted once', first.status === 200, show(first));
  for (const [name, [jwt, rule]] of Object.entries(refusals)) {
    const r = await jwtGrant(jwt);
    check(`assertion refused, ${name}: 400 invalid_client naming the rule`, r.status === 400 && r.body?.error === 'invalid_client'
      && rule.test(r.body.error_description ?? '') && !JSON.stringify(r.body).includes(jwt.split('.')[2] || jwt.split('.')[1]), show(r));
  }
  const wrongType = await jwtGrant(await assertion(rsa, { client: 'smart-file', aud: tokenUrl }), { client_assertion_type: 'urn:example:other' });
  check('client_assertion_type other than jwt-bearer: 400 invalid_client', wrongType.status === 400 && wrongType.body?.error === 'invalid_client', show(wrongType));

  // ---- the request itself
  const rsaJwt = () => assertion(rsa, { client: 'smart-file', aud: tokenUrl });
  const grantPassword = await jwtGrant(await rsaJwt(), { grant_type: 'password' });
  check('grant_type other than client_credentials: 400 unsupported_grant_type', grantPassword.status === 400 && grantPassword.body?.error === 'unsupported_grant_type', show(grantPassword));
  const noScope = await jwtGrant(await rsaJwt(), { scope: undefined });
  check('scope missing: 400 invalid_request', noScope.status === 400 && noScope.body?.error === 'invalid_request', show(noScope));
  const patientScope = await jwtGrant(await rsaJwt(), { scope: 'system/*.read patient/*.read' });
  check('a scope that is not system/...: 400 invalid_scope', patientScope.status === 400 && patientScope.body?.error === 'invalid_scope', show(patientScope));
  const jsonBody = await req('POST', '/auth/token', { body: { grant_type: 'client_credentials' }, headers: { 'Content-Type': 'application/json' } });
  check('a JSON body: 400 invalid_request', jsonBody.status === 400 && jsonBody.body?.error === 'invalid_request', show(jsonBody));
  const getToken = await req('GET', '/auth/token');
  check('GET on the token endpoint: 405', getToken.status === 405, show(getToken));

  // ---- client_secret_basic
  const basicOk = await basicGrant('basic-client', secret);
  const basicToken = issuedToken(basicOk);
  check('client_secret_basic with the right secret: 200, the requested scope', basicOk.status === 200 && !!basicToken
    && basicOk.body.scope === 'system/Patient.rs system/Observation.cruds', show(basicOk));
  check('... and its token reads FHIR: 200', (await fhirGet(basicToken)).status === 200);
  const basicBad = await basicGrant('basic-client', `${secret}x`);
  check('client_secret_basic with a wrong secret: 401 invalid_client, WWW-Authenticate Basic realm="sandbox"',
    basicBad.status === 401 && basicBad.body?.error === 'invalid_client' && basicBad.headers['www-authenticate'] === 'Basic realm="sandbox"', show(basicBad));
  const basicUnknown = await basicGrant('nobody', secret);
  check('client_secret_basic with an unknown client: 401 invalid_client', basicUnknown.status === 401 && basicUnknown.body?.error === 'invalid_client', show(basicUnknown));
  const postSecret = await tokenRequest({ grant_type: 'client_credentials', scope: 'system/*.rs', client_id: 'basic-client', client_secret: secret });
  check('client_secret_post is not accepted: 400 invalid_client', postSecret.status === 400 && postSecret.body?.error === 'invalid_client', show(postSecret));

  // ---- static tokens
  check('static token from the file: 200', (await fhirGet(staticA)).status === 200);
  writeFileSync(staticFile, `${staticB}\n`);
  const newStatic = await fhirGet(staticB);
  const oldStatic = await fhirGet(staticA);
  check('static token file rotated: the new token is accepted, the old one refused (401)',
    newStatic.status === 200 && oldStatic.status === 401, `${newStatic.status} ${oldStatic.status}`);

  // ---- faults
  const lifetime = await control({ tokenLifetime: 1 });
  const shortGrant = await basicGrant('basic-client', secret);
  const shortToken = issuedToken(shortGrant);
  const fresh = await fhirGet(shortToken);
  check('tokenLifetime 1: expires_in 1, and the token works at first', lifetime.status === 200 && shortGrant.body?.expires_in === 1
    && fresh.status === 200, `${show(lifetime)} ${show(shortGrant)} ${fresh.status}`);
  await new Promise((r) => setTimeout(r, 1_200));
  const expired = await fhirGet(shortToken);
  check('... an expired token: 401 invalid_token "expired"', expired.status === 401 && /expired/.test(expired.headers['www-authenticate']), show(expired));
  await control({ tokenLifetime: 300 });
  check('tokenLifetime back to 300', (await basicGrant('basic-client', secret).then((r) => (issuedToken(r), r))).body?.expires_in === 300);

  const beforeRevoke = await basicGrant('basic-client', secret);
  const revokedToken = issuedToken(beforeRevoke);
  const revoke = await control({ revoke: true });
  const afterRevoke = await fhirGet(revokedToken);
  const oldRevoked = await fhirGet(rsToken);
  check('revoke: every issued token gets 401 "revoked"', revoke.status === 200 && revoke.body?.revoked >= 2 && afterRevoke.status === 401
    && oldRevoked.status === 401 && /revoked/.test(afterRevoke.headers['www-authenticate']), `${show(revoke)} ${afterRevoke.status} ${oldRevoked.status}`);
  const postRevoke = await basicGrant('basic-client', secret);
  check('... a token issued after the revocation works, and so does the static token',
    (await fhirGet(issuedToken(postRevoke))).status === 200 && (await fhirGet(staticB)).status === 200);

  await control({ refuse: 'invalid_client' });
  const refusedJwt = await jwtGrant(await rsaJwt());
  const refusedBasic = await basicGrant('basic-client', secret);
  await control({ refuse: null });
  const unrefused = await jwtGrant(await rsaJwt());
  issuedToken(unrefused);
  check('refuse "invalid_client": every token request gets 400 invalid_client until refuse null',
    refusedJwt.status === 400 && refusedJwt.body?.error === 'invalid_client' && refusedBasic.status === 400 && unrefused.status === 200,
    `${show(refusedJwt)} ${show(refusedBasic)} ${unrefused.status}`);

  await control({ slowMs: 400 });
  const slow = await basicGrant('basic-client', secret);
  issuedToken(slow);
  await control({ slowMs: 0 });
  const quick = await basicGrant('basic-client', secret);
  issuedToken(quick);
  check('slowMs 400: the token answer takes >= 400 ms, then fast again', slow.status === 200 && slow.ms >= 390 && quick.ms < 300,
    `${Math.round(slow.ms)} ms, then ${Math.round(quick.ms)} ms`);

  await control({ down: true });
  const down = await expectNoResponse(basicGrant('basic-client', secret));
  const fhirWhileDown = await fhirGet(staticB);
  await control({ down: false });
  const up = await basicGrant('basic-client', secret);
  issuedToken(up);
  check('down: the token endpoint closes the connection without an answer; FHIR still served; then back up',
    down.ok && fhirWhileDown.status === 200 && up.status === 200, `${down.detail} ${fhirWhileDown.status} ${up.status}`);
  const badSpec = await control({ refuse: 'nonsense' });
  const unknownField = await control({ explode: true });
  check('bad /_sandbox/auth specs: 400', badSpec.status === 400 && unknownField.status === 400, `${show(badSpec)} ${show(unknownField)}`);

  // ---- stats and reset
  const resetR = await req('POST', '/_sandbox/reset');
  const zero = await stats();
  check('/_sandbox/reset zeroes the auth counters', resetR.status === 200 && zero.tokenRequests === 0 && zero.tokensIssued === 0
    && zero.tokenRefusals === 0 && zero.unauthorized === 0, JSON.stringify(zero));
  const again = await jwtGrant(replayed);
  issuedToken(again);
  check('... clears the jti cache (the replayed assertion, still unexpired, is accepted once more) and keeps registrations',
    again.status === 200 && (await basicGrant('basic-client', secret).then((r) => (issuedToken(r), r.status))) === 200, show(again));
  await basicGrant('basic-client', 'wrong');
  await fhirGet();
  await fhirGet('bm90LWEtdG9rZW4');
  await fhirGet(staticB);
  const counted = await stats();
  check('stats: tokenRequests 3, tokensIssued 2, tokenRefusals 1, unauthorized 2; 401s count as requests',
    counted.tokenRequests === 3 && counted.tokensIssued === 2 && counted.tokenRefusals === 1 && counted.unauthorized === 2
    && counted.requests === 3, JSON.stringify(counted));

  // ---- the sandbox without authentication
  const p = (method, path, opts = {}) => request(plainPort, method, path, { via: agent(), ...opts });
  const [pConf, pToken, pFhir, pAuth, pStats, pMeta] = await Promise.all([
    p('GET', '/fhir/.well-known/smart-configuration'),
    p('POST', '/auth/token', { body: 'grant_type=client_credentials', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } }),
    p('GET', '/fhir/Patient'), p('GET', '/_sandbox/auth'), p('GET', '/_sandbox/stats'), p('GET', '/fhir/metadata')]);
  check('without auth options: no smart-configuration (404), no token endpoint (404), FHIR needs no token (200)',
    pConf.status === 404 && pToken.status === 404 && pFhir.status === 200, `${pConf.status} ${pToken.status} ${pFhir.status}`);
  check('without auth options: /_sandbox/auth 409, auth counters 0, CapabilityStatement without SMART security',
    pAuth.status === 409 && pStats.body?.unauthorized === 0 && pStats.body?.tokenRequests === 0
    && !pMeta.body?.rest?.[0]?.security?.service, `${pAuth.status} ${JSON.stringify(pStats.body)}`);

  // ---- nothing secret in the log
  const log = sb.stderr();
  const leaked = secrets.filter((s) => s && log.includes(s));
  const signatures = secrets.map((s) => s.split('.')[2]).filter((s) => s && s.length > 16 && log.includes(s));
  check(`--verbose stderr (${log.split('\n').length - 1} lines) names paths and statuses but no token, secret or assertion (${secrets.length} checked)`,
    /POST \/auth\/token -> 200/.test(log) && /GET \/fhir\/Patient -> 401/.test(log) && leaked.length === 0 && signatures.length === 0
    && !/Bearer|Basic [A-Za-z0-9]/.test(log), `leaked ${leaked.length + signatures.length}\n${log.split('\n').slice(0, 5).join('\n')}`);

  // ---- stop
  for (const a of agents) a.destroy();
  const exits = [sb.child, plain.child].map((c) => new Promise((resolve) => c.once('exit', (code) => resolve(code))));
  sb.child.kill('SIGTERM');
  plain.child.kill('SIGTERM');
  const codes = await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(() => r(['timeout']), 5000))]);
  check('SIGTERM: both sandboxes exit with status 0', codes.every((c) => c === 0), JSON.stringify(codes));
}

run()
  .catch((err) => check('self-test ran without an unexpected error', false, err.stack ?? err))
  .finally(finish);
