// EHR sandbox profiles: which kind of EHR the sandbox plays. A profile is a JSON file (tests/sandbox/profiles/)
// holding the CapabilityStatement served at /fhir/metadata plus a few behaviours a CapabilityStatement cannot
// say. The sandbox enforces exactly what the CapabilityStatement advertises: check() tells, for one
// interaction, whether it is refused, for which reason and with which HTTP status. See README.md, "Profiles".

import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROFILES_DIR = join(dirname(fileURLToPath(import.meta.url)), 'profiles');
export const DEFAULT_PROFILE = 'full';

const TYPE_INTERACTIONS = new Set(['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create',
  'search-type']);
const SYSTEM_INTERACTIONS = new Set(['transaction', 'batch', 'search-system', 'history-system']);

/**
 * Why a request can be refused, and the status a real server answers (sources in README.md, "Profiles").
 * A profile file may change a status with "refusalStatus": {"reason": status}.
 */
export const REFUSAL_STATUS = Object.freeze({
  transaction: 405, // no transaction interaction (Microsoft FHIR server: 405; HAPI: 400 not-supported)
  batch: 405,
  type: 404, // resource type not supported (FHIR http.html: "404 Not Found - resource type not supported")
  read: 405, vread: 405, update: 405, patch: 405, delete: 405, 'history-instance': 405, 'history-type': 405,
  create: 405, 'search-type': 405, // interaction not offered for the type (http.html delete: "405 Method Not Allowed")
  'conditional-create': 400, // http.html: "Servers that don't support the conditional update SHOULD return an HTTP 400"
  'conditional-update': 400,
  'conditional-delete': 400,
  'update-create': 405, // http.html: "405 ... the server does not allow client defined ids"
  'if-match-required': 400, // http.html: "Servers can require that clients provide an If-Match header by returning 400"
  'search-param': 400, // HAPI: "Unknown search parameter ... Value search parameters for this search are ..."
  'conditional-reference': 400, // conditional and urn:uuid references are transaction features
  'urn-uuid-reference': 400,
});

/** The profile names found in tests/sandbox/profiles/. */
export function availableProfiles() {
  try {
    return readdirSync(PROFILES_DIR).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
  } catch {
    return [];
  }
}

/** A profile name ("single") or the path of a profile file. Returns {doc, source}; throws with a message. */
export function readProfile(nameOrPath) {
  if (typeof nameOrPath !== 'string' || !nameOrPath) throw new ProfileError('a profile is a name or a file path');
  const isPath = nameOrPath.includes('/') || nameOrPath.endsWith('.json');
  const file = isPath ? resolve(nameOrPath) : join(PROFILES_DIR, `${nameOrPath}.json`);
  if (!isPath && !existsSync(file)) {
    throw new ProfileError(`unknown profile "${nameOrPath}" (available: ${availableProfiles().join(', ')}; or give a file path)`, 'usage');
  }
  let doc;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ProfileError(`cannot read profile ${file}: ${err.message}`);
  }
  return { doc, source: isPath ? file : basename(file) };
}

export class ProfileError extends Error {
  constructor(message, kind = 'file') {
    super(message);
    this.kind = kind;
  }
}

const isPlainObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const clone = (v) => structuredClone(v);

/**
 * The capabilities a profile advertises, compiled for checking.
 *   env.types          every R4 resource type (for "everyResourceType")
 *   env.searchParams   Map type -> Map name -> search parameter type, from the R4 definitions ("Resource" and
 *                      "DomainResource" hold _id, _tag, _text...)
 *   env.referentialIntegrity  whether literal references are enforced (referencePolicy of expanded types)
 */
export class Profile {
  constructor(doc, source, env) {
    const where = `profile ${source}`;
    if (!isPlainObject(doc)) throw new ProfileError(`${where}: not a JSON object`);
    const cs = doc.capabilityStatement;
    if (!isPlainObject(cs) || cs.resourceType !== 'CapabilityStatement') {
      throw new ProfileError(`${where}: "capabilityStatement" must be a CapabilityStatement`);
    }
    if (!Array.isArray(cs.rest) || cs.rest.length !== 1 || cs.rest[0].mode !== 'server') {
      throw new ProfileError(`${where}: capabilityStatement.rest must be one entry with mode "server"`);
    }
    this.name = typeof doc.name === 'string' && doc.name ? doc.name : basename(source, '.json');
    this.description = typeof doc.description === 'string' ? doc.description : '';
    this.source = source;
    this.env = env;

    const behaviour = { ifNoneExist: 'as-advertised', referencesOutsideTransactions: 'literal', ...(doc.behaviour ?? {}) };
    if (!['as-advertised', 'ignore'].includes(behaviour.ifNoneExist)) {
      throw new ProfileError(`${where}: behaviour.ifNoneExist must be "as-advertised" or "ignore"`);
    }
    if (!['resolve', 'literal'].includes(behaviour.referencesOutsideTransactions)) {
      throw new ProfileError(`${where}: behaviour.referencesOutsideTransactions must be "resolve" or "literal"`);
    }
    this.ignoresIfNoneExist = behaviour.ifNoneExist === 'ignore';
    this.literalReferencesOutsideTransactions = behaviour.referencesOutsideTransactions === 'literal';

    this.statuses = { ...REFUSAL_STATUS };
    for (const [reason, status] of Object.entries(doc.refusalStatus ?? {})) {
      if (!(reason in REFUSAL_STATUS)) throw new ProfileError(`${where}: refusalStatus: unknown reason "${reason}"`);
      if (!Number.isInteger(status) || status < 400 || status > 599) throw new ProfileError(`${where}: refusalStatus.${reason} must be 400-599`);
      this.statuses[reason] = status;
    }

    const rest = cs.rest[0];
    this.system = new Set((rest.interaction ?? []).map((i) => i?.code));
    for (const code of this.system) {
      if (!SYSTEM_INTERACTIONS.has(code)) throw new ProfileError(`${where}: unknown system interaction "${code}"`);
    }

    const listed = Array.isArray(rest.resource) ? rest.resource : [];
    const expanded = [];
    for (const entry of listed) expanded.push(this.#expand(entry, where, false));
    if (doc.everyResourceType !== undefined) {
      if (!isPlainObject(doc.everyResourceType)) throw new ProfileError(`${where}: everyResourceType must be an object`);
      const have = new Set(listed.map((r) => r.type));
      for (const type of env.types) {
        if (!have.has(type)) expanded.push(this.#expand({ type, ...clone(doc.everyResourceType) }, where, true));
      }
    }
    expanded.sort((a, b) => a.type.localeCompare(b.type));
    this.resources = new Map();
    for (const r of expanded) {
      if (this.resources.has(r.type)) throw new ProfileError(`${where}: resource type ${r.type} is listed twice`);
      this.resources.set(r.type, {
        interactions: new Set(r.interaction.map((i) => i.code)),
        // Search parameters the type advertises; _count and the other result parameters are not checked.
        params: new Set((r.searchParam ?? []).map((p) => p.name)),
        conditionalCreate: r.conditionalCreate === true,
        conditionalUpdate: r.conditionalUpdate === true,
        conditionalDelete: r.conditionalDelete === 'single' || r.conditionalDelete === 'multiple',
        updateCreate: r.updateCreate === true,
        versioning: r.versioning,
      });
    }
    this.cs = { ...clone(cs), rest: [{ ...clone(rest), resource: expanded }] };
  }

  #expand(entry, where, generated) {
    if (!isPlainObject(entry) || typeof entry.type !== 'string' || !this.env.types.includes(entry.type)) {
      throw new ProfileError(`${where}: rest.resource entry with an unknown resource type "${entry?.type}"`);
    }
    const r = clone(entry);
    const at = `${where}: ${r.type}`;
    if (!Array.isArray(r.interaction)) r.interaction = [];
    for (const i of r.interaction) {
      if (!TYPE_INTERACTIONS.has(i?.code)) throw new ProfileError(`${at}: unknown interaction "${i?.code}"`);
    }
    if (r.searchParam === 'r4') r.searchParam = this.#r4SearchParams(r.type);
    if (r.searchParam !== undefined) {
      if (!Array.isArray(r.searchParam)) throw new ProfileError(`${at}: searchParam must be a list or "r4"`);
      for (const p of r.searchParam) {
        if (!isPlainObject(p) || typeof p.name !== 'string' || typeof p.type !== 'string') {
          throw new ProfileError(`${at}: a searchParam needs a name and a type`);
        }
        if (p.name !== '_count' && !this.#r4Type(r.type, p.name)) {
          throw new ProfileError(`${at}: search parameter "${p.name}" is not R4, the sandbox cannot evaluate it`);
        }
      }
    }
    if (generated && r.referencePolicy === undefined) {
      r.referencePolicy = this.env.referentialIntegrity ? ['literal', 'enforced'] : ['literal'];
    }
    return r;
  }

  #r4Type(type, name) {
    const sp = this.env.searchParams;
    return sp.get(type)?.get(name) ?? sp.get('Resource')?.get(name) ?? sp.get('DomainResource')?.get(name);
  }

  #r4SearchParams(type) {
    const sp = this.env.searchParams;
    const out = new Map();
    for (const source of [type, 'Resource', 'DomainResource']) {
      for (const [name, t] of sp.get(source) ?? []) if (!out.has(name)) out.set(name, t);
    }
    return [...out].map(([name, t]) => ({ name, type: t }));
  }

  /** The CapabilityStatement to serve, with this server's start time and base URL. */
  capabilityStatement(base, startedAt) {
    const cs = clone(this.cs);
    cs.date = startedAt;
    cs.implementation = { ...(cs.implementation ?? {}), url: base };
    return cs;
  }

  /** What a 405 answer's Allow header lists for a path of `level` ("system", "type", "instance", "history"). */
  allow(type, level) {
    const r = this.resources.get(type);
    const m = [];
    if (level === 'system') {
      if (this.system.has('transaction') || this.system.has('batch')) m.push('POST');
    } else if (level === 'type' && r) {
      if (r.interactions.has('search-type')) m.push('GET', 'HEAD');
      if (r.interactions.has('create')) m.push('POST');
      if (r.interactions.has('update') && r.conditionalUpdate) m.push('PUT');
      if (r.interactions.has('patch') && r.conditionalUpdate) m.push('PATCH');
      if (r.interactions.has('delete') && r.conditionalDelete) m.push('DELETE');
    } else if (level === 'instance' && r) {
      if (r.interactions.has('read')) m.push('GET', 'HEAD');
      if (r.interactions.has('update')) m.push('PUT');
      if (r.interactions.has('patch')) m.push('PATCH');
      if (r.interactions.has('delete')) m.push('DELETE');
    } else if (level === 'history' && r) {
      if (r.interactions.has('vread') || r.interactions.has('history-instance') || r.interactions.has('history-type')) m.push('GET', 'HEAD');
    }
    return m.join(', ');
  }

  /** A refusal: {reason, key (for the stats), status, text, allow (405 only)}. */
  refusal(reason, type, text, { level, param } = {}) {
    const status = this.statuses[reason];
    const key = type ? `${reason}:${type}${param ? `.${param}` : ''}` : reason;
    return { reason, key, status, text: `${text} (profile "${this.name}")`, ...(status === 405 ? { allow: this.allow(type, level) } : {}) };
  }

  /**
   * Checks one interaction against what the profile advertises. op: {interaction, type, level, conditional
   * ("create" | "update" | "delete"), params (search parameter names used)}. Returns a refusal or undefined.
   */
  check(op) {
    const { interaction, type } = op;
    if (SYSTEM_INTERACTIONS.has(interaction)) {
      if (this.system.has(interaction)) return undefined;
      const offered = [...this.system].filter((c) => c === 'transaction' || c === 'batch');
      return this.refusal(interaction, undefined,
        `${interaction} is not supported: this server's CapabilityStatement advertises ${offered.length ? `only ${offered.join(' and ')}` : 'no transaction or batch'}`,
        { level: 'system' });
    }
    const r = this.resources.get(type);
    if (!r) return this.refusal('type', type, `Resource type ${type} is not supported by this server`);
    if (!r.interactions.has(interaction)) {
      return this.refusal(interaction, type, `The ${interaction} interaction is not supported for ${type}`, { level: op.level });
    }
    if (op.conditional === 'create' && !r.conditionalCreate) {
      return this.refusal('conditional-create', type, `Conditional create (If-None-Exist) is not supported for ${type}: conditionalCreate is false`);
    }
    if (op.conditional === 'update' && !r.conditionalUpdate) {
      return this.refusal('conditional-update', type, `Conditional ${interaction} (${type}?search) is not supported for ${type}: conditionalUpdate is false`);
    }
    if (op.conditional === 'delete' && !r.conditionalDelete) {
      return this.refusal('conditional-delete', type, `Conditional delete (${type}?search) is not supported for ${type}`);
    }
    return this.#checkParams(r, type, op.params);
  }

  /** A search the server runs itself (a conditional reference): the type and the parameters must be offered. */
  checkSearch(type, params) {
    const r = this.resources.get(type);
    if (!r) return this.refusal('type', type, `Resource type ${type} is not supported by this server`);
    return this.#checkParams(r, type, params);
  }

  #checkParams(r, type, params) {
    for (const param of params ?? []) {
      if (!r.params.has(param)) {
        const known = this.#r4Type(type, param);
        return this.refusal('search-param', type, known
          ? `Search parameter "${param}" is not supported for ${type}; supported: ${[...r.params].join(', ') || 'none'}`
          : `Unknown search parameter "${param}" for ${type} (not an R4 search parameter)`, { param });
      }
    }
    return undefined;
  }

  /**
   * After the target is known: an update that would create (update-as-create, or a conditional update that
   * matches nothing) and If-Match where versioning is "versioned-update". op: {interaction, type,
   * conditional, creates, ifMatch}.
   */
  checkWrite(op) {
    const r = this.resources.get(op.type);
    if (!r) return undefined;
    if (op.creates && op.conditional === 'update' && !r.interactions.has('create')) {
      return this.refusal('create', op.type, `The conditional update matches nothing and would create a ${op.type}, but create is not supported for ${op.type}`, { level: 'type' });
    }
    if (op.creates && op.conditional !== 'update' && !r.updateCreate) {
      return this.refusal('update-create', op.type, `${op.type}/… does not exist and this server does not allow client-defined ids (updateCreate is false)`, { level: 'instance' });
    }
    if (!op.creates && r.versioning === 'versioned-update' && !op.ifMatch) {
      return this.refusal('if-match-required', op.type, `This server requires If-Match on every ${op.interaction} of ${op.type} (versioning is versioned-update)`);
    }
    return undefined;
  }
}

/** Reads and compiles a profile; throws ProfileError. */
export function loadProfile(nameOrPath, env) {
  const { doc, source } = readProfile(nameOrPath);
  return new Profile(doc, source, env);
}
