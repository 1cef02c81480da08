// OAuth 2.0 for the EHR sandbox (tests/sandbox/ehr-sandbox.mjs): a token endpoint for the client-credentials
// grant (RFC 6749 §4.4) with SMART Backend Services client authentication (private_key_jwt, RS384 / ES384,
// SMART App Launch 2.x) and client_secret_basic, static bearer tokens, and bearer-token enforcement on the
// FHIR API. Test tooling only: tokens are opaque random strings held in memory.
//
// Every JWS / JWT / JWK operation goes through the npm package `jose` (handed in by ehr-sandbox.mjs, which
// loads it from tests/node/node_modules); this module only checks the claims' meaning (exp window, jti
// replay, iat, jku) on top of what jose verified.
//
// Nothing secret is ever logged or echoed: not tokens, not secrets, not assertions. Error descriptions name
// the rule that failed and nothing of the credential.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { get as httpsGet } from 'node:https';

export const AUTH_USAGE = `  With --smart-client, --secret-client or --static-token-file, /fhir needs a bearer token (POST /auth/token):
  --smart-client ID=JWKS    SMART Backend Services client (private_key_jwt, RS384/ES384); JWKS is a JWK Set
                            file, or an https:// URL of one (repeatable)
  --jwks-ca FILE            CA bundle (PEM) for fetching https:// JWKS URLs (default: Node's CAs)
  --secret-client ID=FILE   client_secret_basic client; the secret is the first line of FILE (repeatable)
  --static-token-file FILE  bearer tokens accepted as they are, one per line (re-read when the file changes)
  --token-lifetime SECONDS  expires_in of issued tokens (default 300)`;

export const TOKEN_PATH = '/auth/token';
export const SMART_CONFIGURATION_PATH = '/fhir/.well-known/smart-configuration';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const ALGORITHMS = ['RS384', 'ES384'];
const MAX_ASSERTION_LIFETIME_S = 300; // SMART: exp no more than five minutes in the future
const CLOCK_SKEW_S = 5;
const MAX_IAT_AHEAD_S = 60;
const JWKS_CACHE_MS = 30_000;
const JWKS_FETCH_TIMEOUT_MS = 5_000;
const OAUTH_ERRORS = new Set(['invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client',
  'unsupported_grant_type', 'invalid_scope', 'server_error', 'temporarily_unavailable']);
// SMART v1 (read / write / *) and v2 (cruds) system scopes, e.g. system/*.cruds, system/Patient.rs.
const SCOPE = /^system\/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)(\?\S*)?$/;
export const ZERO_STATS = Object.freeze({ tokenRequests: 0, tokensIssued: 0, tokenRefusals: 0, unauthorized: 0 });

// ---------------------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------------------

export const newAuthOptions = () => ({ smartClients: new Map(), secretClients: new Map(), staticTokenFile: undefined,
  tokenLifetime: undefined, jwksCa: undefined });

/** Handles one auth option of ehr-sandbox.mjs's command line (name and its value). */
export function addAuthOption(auth, name, value, usageError) {
  const pair = () => {
    const eq = value.indexOf('=');
    if (eq <= 0 || eq === value.length - 1) usageError(`${name} takes ID=${name === '--smart-client' ? 'JWKS' : 'SECRET_FILE'}`);
    return [value.slice(0, eq), value.slice(eq + 1)];
  };
  switch (name) {
    case '--smart-client': {
      const [id, jwks] = pair();
      if (auth.smartClients.has(id)) usageError(`--smart-client ${id} given twice`);
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(jwks)) {
        let url;
        try {
          url = new URL(jwks);
        } catch {
          usageError(`--smart-client ${id}: invalid JWKS URL`);
        }
        if (url.protocol !== 'https:') usageError(`--smart-client ${id}: a JWKS URL must be https://`);
        auth.smartClients.set(id, { url: url.href });
      } else {
        auth.smartClients.set(id, { file: jwks });
      }
      break;
    }
    case '--secret-client': {
      const [id, file] = pair();
      if (id.includes(':')) usageError(`--secret-client ${id}: a client_secret_basic client id cannot contain ":"`);
      if (auth.secretClients.has(id)) usageError(`--secret-client ${id} given twice`);
      auth.secretClients.set(id, { file });
      break;
    }
    case '--static-token-file':
      if (auth.staticTokenFile) usageError('--static-token-file given twice');
      auth.staticTokenFile = value;
      break;
    case '--token-lifetime': {
      const s = Number(value);
      if (!Number.isInteger(s) || s < 1 || s > 86_400) usageError('--token-lifetime must be an integer 1..86400');
      auth.tokenLifetime = s;
      break;
    }
    case '--jwks-ca': auth.jwksCa = value; break;
    default: usageError(`unknown argument ${name}`);
  }
}

export const authEnabled = (auth) => auth.smartClients.size > 0 || auth.secretClients.size > 0 || !!auth.staticTokenFile;

export function checkAuthOptions(auth, usageError) {
  if (authEnabled(auth)) return;
  if (auth.tokenLifetime !== undefined) usageError('--token-lifetime needs --smart-client, --secret-client or --static-token-file');
  if (auth.jwksCa !== undefined) usageError('--jwks-ca needs a --smart-client with an https:// JWKS URL');
}

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

const sha256 = (s) => createHash('sha256').update(s).digest();
const now = () => Date.now() / 1000;

class Refusal extends Error {
  constructor(status, error, description, headers = {}) {
    super(description);
    this.status = status;
    this.error = error;
    this.headers = headers;
  }
}
const invalidClient = (description) => new Refusal(400, 'invalid_client', description);

function fileStamp(file) {
  const s = statSync(file);
  return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
}

function parseJwks(text, where) {
  let jwks;
  try {
    jwks = JSON.parse(text);
  } catch {
    throw new Error(`${where} is not JSON`);
  }
  if (!jwks || typeof jwks !== 'object' || !Array.isArray(jwks.keys)) throw new Error(`${where} is not a JWK Set ({"keys": [...]})`);
  if (jwks.keys.some((k) => k && typeof k === 'object' && ('d' in k || 'k' in k))) {
    throw new Error(`${where} holds a private or symmetric key: a client registers public keys only`);
  }
  return jwks;
}

function fetchJson(url, ca) {
  return new Promise((resolve, reject) => {
    const req = httpsGet(url, { agent: false, ...(ca ? { ca } : {}), headers: { Accept: 'application/json' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`HTTP ${res.statusCode}`));
        return;
      }
      const chunks = [];
      let size = 0;
      res.on('data', (c) => {
        size += c.length;
        if (size > 1 << 20) req.destroy(new Error('larger than 1 MiB'));
        else chunks.push(c);
      });
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    req.setTimeout(JWKS_FETCH_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${JWKS_FETCH_TIMEOUT_MS} ms`)));
    req.on('error', reject);
  });
}

/** application/x-www-form-urlencoded decoding (RFC 6749 §2.3.1 encodes client_id and secret this way). */
function formDecode(s) {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

function equalSecret(given, expected) {
  return given !== undefined && timingSafeEqual(sha256(given), sha256(expected));
}

// ---------------------------------------------------------------------------------------------------------
// The authorization server
// ---------------------------------------------------------------------------------------------------------

/**
 * Reads the registrations (throws on an unreadable or malformed file) and returns the auth hooks of the
 * sandbox. `baseUrl()` gives the FHIR base (https://localhost:PORT/fhir) once the server listens; `send`
 * and `readBody` are ehr-sandbox.mjs's own.
 */
export function createAuth(options, { jose, baseUrl, send, readBody }) {
  const defaultLifetime = options.tokenLifetime ?? 300;
  const jwksCa = options.jwksCa ? readFileSync(options.jwksCa) : undefined;

  const smartClients = new Map();
  for (const [id, reg] of options.smartClients) {
    const client = { id, ...reg, keys: undefined, stamp: undefined, fetchedAt: 0, pending: undefined };
    if (reg.file) loadJwksFile(client); // fails early on a missing or malformed file
    smartClients.set(id, client);
  }
  const secretClients = new Map();
  for (const [id, { file }] of options.secretClients) {
    const secret = readFileSync(file, 'utf8').split(/\r?\n/)[0].trim();
    if (!secret) throw new Error(`--secret-client ${id}: the first line of ${file} is empty`);
    secretClients.set(id, secret);
  }
  const staticTokens = { file: options.staticTokenFile, stamp: undefined, hashes: new Set() };
  if (staticTokens.file) loadStaticTokens(true);

  const issued = new Map(); // sha256(token) hex -> { exp (ms), revoked }
  const seenJti = new Map(); // `${client}\0${jti}` -> exp (s)
  const state = { refuse: null, slowMs: 0, down: false, tokenLifetime: defaultLifetime };
  const stats = { ...ZERO_STATS };

  const tokenUrl = () => `${new URL(baseUrl()).origin}${TOKEN_PATH}`;

  // ---- key sets and static tokens

  function loadJwksFile(client) {
    const stamp = fileStamp(client.file);
    if (stamp === client.stamp) return;
    client.keys = jose.createLocalJWKSet(parseJwks(readFileSync(client.file, 'utf8'), `JWKS file ${client.file}`));
    client.stamp = stamp;
  }

  /** The client's key set as a jose key resolver; `refresh` re-fetches a URL set (unknown kid). */
  async function keySet(client, { refresh = false } = {}) {
    if (client.file) {
      try {
        loadJwksFile(client);
      } catch (err) {
        throw invalidClient(`the client's JWKS file cannot be used: ${err.message}`);
      }
      return client.keys;
    }
    const fresh = client.keys && Date.now() - client.fetchedAt < JWKS_CACHE_MS;
    if (fresh && !refresh) return client.keys;
    client.pending ??= (async () => {
      try {
        const jwks = parseJwks(await fetchJson(client.url, jwksCa), 'the JWKS document');
        client.keys = jose.createLocalJWKSet(jwks);
        client.fetchedAt = Date.now();
      } finally {
        client.pending = undefined;
      }
    })();
    try {
      await client.pending;
    } catch (err) {
      throw invalidClient(`cannot fetch the client's JWKS from its registered URL: ${err.message}`);
    }
    return client.keys;
  }

  function loadStaticTokens(atStart = false) {
    let stamp;
    try {
      stamp = fileStamp(staticTokens.file);
    } catch (err) {
      if (atStart) throw err;
      staticTokens.hashes = new Set(); // the file is gone: no static token is valid
      staticTokens.stamp = undefined;
      return;
    }
    if (stamp === staticTokens.stamp) return;
    const lines = readFileSync(staticTokens.file, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    staticTokens.hashes = new Set(lines.map((l) => sha256(l).toString('hex')));
    staticTokens.stamp = stamp;
  }

  // ---- bearer tokens on FHIR requests

  /** Why the request's bearer token is not acceptable, or undefined when it is. */
  function tokenProblem(header) {
    const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(String(header ?? ''));
    if (!header) return 'no Authorization: Bearer header';
    if (!m) return 'the Authorization header is not Bearer followed by a token';
    const hash = sha256(m[1]).toString('hex');
    const t = issued.get(hash);
    if (t) {
      if (t.revoked) return 'the access token has been revoked';
      if (t.exp <= Date.now()) return 'the access token has expired';
      return undefined;
    }
    if (staticTokens.file) {
      loadStaticTokens();
      if (staticTokens.hashes.has(hash)) return undefined;
    }
    return 'unknown access token';
  }

  /** For a FHIR request: undefined when it may proceed, else the 401 response ({headers, body}). */
  function deny(req, path) {
    if (path === '/fhir/metadata' || path === SMART_CONFIGURATION_PATH) return undefined;
    const problem = tokenProblem(req.headers.authorization);
    if (!problem) return undefined;
    stats.unauthorized++;
    return {
      headers: { 'WWW-Authenticate': `Bearer realm="sandbox", error="invalid_token", error_description="${problem}"` },
      body: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login', details: { text: `Unauthorized: ${problem}` }, diagnostics: `Unauthorized: ${problem}` }] },
    };
  }

  // ---- token endpoint

  async function authenticateAssertion(form) {
    const type = form.get('client_assertion_type');
    const assertion = form.get('client_assertion');
    if (type !== ASSERTION_TYPE) throw invalidClient(`client_assertion_type must be ${ASSERTION_TYPE}`);
    if (!assertion) throw invalidClient('client_assertion is missing');

    let header;
    try {
      header = jose.decodeProtectedHeader(assertion);
    } catch {
      throw invalidClient('client_assertion is not a JWS in compact serialization');
    }
    if (!ALGORITHMS.includes(header.alg)) {
      const alg = typeof header.alg === 'string' && /^[A-Za-z0-9]{1,16}$/.test(header.alg) ? ` (got ${header.alg})` : '';
      throw invalidClient(`alg must be RS384 or ES384${alg}`);
    }
    let unverified;
    try {
      unverified = jose.decodeJwt(assertion); // only to find the client's keys: jwtVerify below checks it all
    } catch {
      throw invalidClient('client_assertion is not a JWT (its payload is not a JSON claims set)');
    }
    if (typeof header.kid !== 'string' || !header.kid) throw invalidClient('kid is missing from the JWS header');
    if (typeof unverified.iss !== 'string' || !unverified.iss) throw invalidClient('iss is missing');
    const client = smartClients.get(unverified.iss);
    if (!client) throw invalidClient('iss is not a registered client');
    if (header.jku !== undefined && header.jku !== client.url) {
      throw invalidClient('jku does not match the JWKS URL registered for the client');
    }
    const clientId = form.get('client_id');
    if (clientId !== null && clientId !== client.id) throw invalidClient('client_id does not match the assertion\'s iss');

    const aud = tokenUrl();
    const verify = async (keys) => jose.jwtVerify(assertion, keys, {
      algorithms: ALGORITHMS, issuer: client.id, subject: client.id, audience: aud,
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'jti'], clockTolerance: CLOCK_SKEW_S,
    });
    let payload;
    try {
      try {
        ({ payload } = await verify(await keySet(client)));
      } catch (err) {
        if (err?.code !== 'ERR_JWKS_NO_MATCHING_KEY' || !client.url) throw err;
        ({ payload } = await verify(await keySet(client, { refresh: true }))); // unknown kid: the set may have rotated
      }
    } catch (err) {
      if (err instanceof Refusal) throw err;
      throw invalidClient(describeJoseError(err, header));
    }

    const t = now();
    if (payload.exp > t + MAX_ASSERTION_LIFETIME_S + CLOCK_SKEW_S) throw invalidClient('exp is more than 5 minutes in the future');
    if (payload.iat !== undefined && payload.iat > t + MAX_IAT_AHEAD_S) throw invalidClient('iat is more than 60 s in the future');
    if (typeof payload.jti !== 'string' || !payload.jti) throw invalidClient('jti must be a non-empty string');
    for (const [k, exp] of seenJti) if (exp < t - CLOCK_SKEW_S) seenJti.delete(k);
    const key = `${client.id}\0${payload.jti}`;
    if (seenJti.has(key)) throw invalidClient('jti has already been used (replayed assertion)');
    seenJti.set(key, payload.exp);
    return client.id;
  }

  function describeJoseError(err, header) {
    switch (err?.code) {
      case 'ERR_JWKS_NO_MATCHING_KEY': return `kid matches no ${header.alg} key in the client's JWKS`;
      case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS': return 'kid matches several keys in the client\'s JWKS';
      case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED': return 'signature verification failed';
      case 'ERR_JOSE_ALG_NOT_ALLOWED': return 'alg must be RS384 or ES384';
      case 'ERR_JWT_EXPIRED': return 'exp is in the past (the assertion has expired)';
      case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
        if (err.reason === 'missing') return `${err.claim} is missing`;
        switch (err.claim) {
          case 'aud': return 'aud does not match the token endpoint';
          case 'sub': return 'sub does not equal iss (the client id)';
          case 'iss': return 'iss is not the client';
          case 'nbf': return 'nbf is in the future';
          default: return `${err.claim} is invalid`;
        }
      }
      case 'ERR_JOSE_NOT_SUPPORTED': case 'ERR_JWK_INVALID': case 'ERR_JWKS_INVALID':
        return 'the client\'s key for this kid cannot be used with this alg';
      default:
        if (err instanceof TypeError && /claim/.test(err.message)) return err.message.replace(/"/g, '');
        return `the assertion is not a valid signed JWT (${err?.code ?? 'error'})`;
    }
  }

  function authenticateBasic(header) {
    const basic = { 'WWW-Authenticate': 'Basic realm="sandbox"' };
    const m = /^Basic +([A-Za-z0-9+/]+=*) *$/i.exec(header);
    const decoded = m ? Buffer.from(m[1], 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new Refusal(401, 'invalid_client', 'malformed Basic credentials', basic);
    const rawId = decoded.slice(0, colon);
    const rawSecret = decoded.slice(colon + 1);
    // Accept the RFC 6749 §2.3.1 form-encoded pair and, as many servers do, the raw one.
    for (const [id, secret] of [[formDecode(rawId), formDecode(rawSecret)], [rawId, rawSecret]]) {
      const expected = secretClients.get(id);
      if (expected !== undefined && equalSecret(secret, expected)) return id;
    }
    const known = secretClients.has(rawId) || secretClients.has(formDecode(rawId));
    throw new Refusal(401, 'invalid_client', known ? 'wrong client secret' : 'unknown client', basic);
  }

  function checkScope(scope) {
    if (scope === null) throw new Refusal(400, 'invalid_request', 'scope is required (e.g. system/*.cruds)');
    const scopes = scope.split(' ');
    if (!scope.trim() || scopes.some((s) => !SCOPE.test(s))) {
      throw new Refusal(400, 'invalid_scope', 'every scope must be a SMART system scope, e.g. system/*.cruds or system/Patient.rs');
    }
  }

  async function tokenRequest(req, res) {
    stats.tokenRequests++;
    const body = await readBody(req);
    if (state.slowMs) await new Promise((r) => setTimeout(r, state.slowMs));
    if (state.down) {
      req.socket.destroy();
      return;
    }
    const oauth = { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', Pragma: 'no-cache' };
    try {
      if (state.refuse) {
        const status = state.refuse === 'server_error' ? 500 : state.refuse === 'temporarily_unavailable' ? 503 : 400;
        throw new Refusal(status, state.refuse, 'refused by the sandbox (injected fault)');
      }
      if (req.method !== 'POST') throw new Refusal(405, 'invalid_request', 'the token endpoint takes POST', { Allow: 'POST' });
      const type = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
      if (type !== 'application/x-www-form-urlencoded') {
        throw new Refusal(400, 'invalid_request', 'the body must be application/x-www-form-urlencoded');
      }
      const form = new URLSearchParams(body.toString('utf8'));
      const repeated = [...new Set(form.keys())].find((k) => form.getAll(k).length > 1);
      if (repeated) throw new Refusal(400, 'invalid_request', `parameter ${repeated} is given more than once`);
      const grant = form.get('grant_type');
      if (grant === null) throw new Refusal(400, 'invalid_request', 'grant_type is required');
      if (grant !== 'client_credentials') throw new Refusal(400, 'unsupported_grant_type', 'only grant_type=client_credentials is supported');
      const scope = form.get('scope');
      checkScope(scope);

      const authorization = req.headers.authorization;
      const hasAssertion = form.has('client_assertion') || form.has('client_assertion_type');
      if (authorization && hasAssertion) throw new Refusal(400, 'invalid_request', 'use one client authentication method, not two');
      if (form.has('client_secret')) throw invalidClient('client_secret_post is not supported: use client_secret_basic or private_key_jwt');
      let clientId;
      if (hasAssertion) {
        clientId = await authenticateAssertion(form);
      } else if (authorization) {
        clientId = authenticateBasic(String(authorization));
        if (form.has('client_id') && form.get('client_id') !== clientId) throw invalidClient('client_id does not match the Basic credentials');
      } else {
        throw invalidClient('no client authentication (client_assertion or Authorization: Basic)');
      }

      const token = randomBytes(32).toString('base64url');
      const lifetime = state.tokenLifetime;
      issued.set(sha256(token).toString('hex'), { exp: Date.now() + lifetime * 1000, revoked: false, client: clientId });
      for (const [k, t] of issued) if (t.exp < Date.now() - 600_000) issued.delete(k);
      stats.tokensIssued++;
      send(res, 200, { headers: oauth, body: { access_token: token, token_type: 'bearer', expires_in: lifetime, scope } });
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      stats.tokenRefusals++;
      send(res, err.status, { headers: { ...oauth, ...err.headers }, body: { error: err.error, error_description: err.message } });
    }
  }

  function smartConfiguration(req, res) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return send(res, 405, { headers: { 'Content-Type': 'application/json', Allow: 'GET' }, body: { error: 'GET only' } });
    }
    return send(res, 200, {
      headers: { 'Content-Type': 'application/json' },
      body: {
        token_endpoint: tokenUrl(),
        token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic'],
        token_endpoint_auth_signing_alg_values_supported: ALGORITHMS,
        grant_types_supported: ['client_credentials'],
        scopes_supported: ['system/*.cruds', 'system/*.rs', 'system/*.read', 'system/*.write', 'system/*.*'],
        capabilities: ['client-confidential-asymmetric', 'client-confidential-symmetric'],
      },
    });
  }

  /** Handles the token endpoint and the SMART configuration; false for any other path. */
  async function route(req, res, path) {
    if (path === TOKEN_PATH) {
      await tokenRequest(req, res);
      return true;
    }
    if (path === SMART_CONFIGURATION_PATH) {
      await readBody(req);
      smartConfiguration(req, res);
      return true;
    }
    return false;
  }

  /** Adds SMART's security section (oauth-uris) to the CapabilityStatement. */
  function describeIn(capabilityStatement) {
    const rest = capabilityStatement.rest[0];
    rest.security = {
      extension: [{
        url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
        extension: [{ url: 'token', valueUri: tokenUrl() }],
      }],
      service: [{
        coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR', display: 'SMART-on-FHIR' }],
        text: 'OAuth2 using SMART-on-FHIR profile (client credentials: SMART Backend Services, client_secret_basic)',
      }],
      description: `${rest.security?.description ?? 'HTTPS only'}; bearer token needed, from ${tokenUrl()}`,
    };
    return capabilityStatement;
  }

  // ---- control API: /_sandbox/auth

  function publicState() {
    const live = [...issued.values()].filter((t) => !t.revoked && t.exp > Date.now()).length;
    if (staticTokens.file) loadStaticTokens();
    return {
      auth: { ...state },
      tokenEndpoint: tokenUrl(),
      clients: { smart: [...smartClients.keys()], secret: [...secretClients.keys()] },
      liveTokens: live,
      staticTokens: staticTokens.hashes.size,
    };
  }

  /** GET / POST / DELETE /_sandbox/auth: returns [status, body]. */
  function control(method, raw) {
    if (method === 'GET') return [200, publicState()];
    if (method === 'DELETE') {
      Object.assign(state, { refuse: null, slowMs: 0, down: false, tokenLifetime: defaultLifetime });
      return [200, publicState()];
    }
    if (method !== 'POST') return [405, { error: 'GET, POST or DELETE' }];
    let spec;
    try {
      spec = JSON.parse(raw.toString('utf8') || 'null');
    } catch (err) {
      return [400, { error: `body is not JSON: ${err.message}` }];
    }
    if (!spec || typeof spec !== 'object' || Array.isArray(spec)) return [400, { error: 'an auth spec is a JSON object' }];
    const allowed = new Set(['refuse', 'slowMs', 'down', 'revoke', 'tokenLifetime']);
    for (const k of Object.keys(spec)) if (!allowed.has(k)) return [400, { error: `unknown auth field "${k}"` }];
    if (spec.refuse !== undefined && spec.refuse !== null && !OAUTH_ERRORS.has(spec.refuse)) {
      return [400, { error: `"refuse" must be null or one of ${[...OAUTH_ERRORS].join(', ')}` }];
    }
    if (spec.slowMs !== undefined && (!Number.isInteger(spec.slowMs) || spec.slowMs < 0 || spec.slowMs > 600_000)) {
      return [400, { error: '"slowMs" must be an integer 0..600000' }];
    }
    if (spec.down !== undefined && typeof spec.down !== 'boolean') return [400, { error: '"down" must be true or false' }];
    if (spec.revoke !== undefined && typeof spec.revoke !== 'boolean') return [400, { error: '"revoke" must be true or false' }];
    if (spec.tokenLifetime !== undefined && (!Number.isInteger(spec.tokenLifetime) || spec.tokenLifetime < 1 || spec.tokenLifetime > 86_400)) {
      return [400, { error: '"tokenLifetime" must be an integer number of seconds 1..86400' }];
    }
    if (spec.refuse !== undefined) state.refuse = spec.refuse;
    if (spec.slowMs !== undefined) state.slowMs = spec.slowMs;
    if (spec.down !== undefined) state.down = spec.down;
    if (spec.tokenLifetime !== undefined) state.tokenLifetime = spec.tokenLifetime;
    let revoked;
    if (spec.revoke) {
      revoked = 0;
      for (const t of issued.values()) {
        if (!t.revoked && t.exp > Date.now()) revoked++;
        t.revoked = true;
      }
    }
    return [200, { ...publicState(), ...(revoked !== undefined ? { revoked } : {}) }];
  }

  /** /_sandbox/reset: counters, jti cache and auth faults; registrations and issued tokens stay. */
  function reset() {
    Object.assign(stats, ZERO_STATS);
    seenJti.clear();
    Object.assign(state, { refuse: null, slowMs: 0, down: false, tokenLifetime: defaultLifetime });
  }

  return { route, deny, describeIn, control, reset, stats: () => ({ ...stats }) };
}
