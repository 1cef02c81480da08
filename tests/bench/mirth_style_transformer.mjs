// mirth_style_transformer.mjs — BENCHMARK BASELINE, test tooling only (not product code).
//
// A plain JavaScript transformer of clinic records (clinic-record v1) to FHIR R4 transaction Bundles, written
// the way an integration engineer would write a Mirth / NextGen Connect channel script: JSON.parse each line,
// a few straightforward checks, plain JS objects for the resources, JSON.stringify one Bundle per line.
// It exists so the benchmark can compare the connector's `map` command with "what a clinic would otherwise run".
//
// Independence: written from /work/shared/spec/clinic-record-v1.md and
// /work/shared/domain/botox-chronic-migraine.md only (plus the example INPUT records for field shapes).
// The connector's mapper, its FHIR layer, its output bundles and the other bench transformer were NOT read.
//
// What it maps, per record (every entry POSTed with ifNoneExist on a deterministic identifier under
// https://clinic.example/fhir, fullUrls are urn:uuid from crypto.randomUUID()):
//   all kinds     Patient (MRN), Practitioner (NPI), Encounter (AMB)
//   consultation  Condition (ICD-10-CM), Observations (headache/migraine days, months at frequency, hours/day,
//                 pain 72514-3, acute-medication days, MIDAS, HIT-6, eligibility decision),
//                 MedicationStatement per prior preventive, ServiceRequest when Botox is recommended
//   procedure     Medication (NDC 11-digit, lot, expiry), Procedure (CPT 64615, body sites), one
//                 MedicationAdministration per muscle+side ([USP'U]; PREEMPT layout expanded when injections
//                 are absent), ChargeItems (64615 x1, J0585 x administered, J0585 x discarded with JW / JZ),
//                 AdverseEvent per immediate reaction, ServiceRequest for the next session (default +12 weeks)
//   follow_up     Observations (headache/migraine days, pain, MIDAS, HIT-6, plan), percent-change response
//                 Observation only when baseline_headache_days_per_month is in the record, AdverseEvent per
//                 side effect (suspectEntity -> the procedure's Medication by conditional reference)
//
// What it does NOT do: no per-patient history (no baseline lookup, no 90-day unit totals, no interval checks),
// no clinical flags / DetectedIssue, no retraction (status entered-in-error lines are skipped with a message),
// no revision bookkeeping, no Provenance / Organization / Device, no unknown-field rejection, no profile
// validation, no delivery. Checks are limited to JSON syntax, required fields, enums, simple number ranges,
// NPI check digit, NDC/vial agreement and the vial-capacity sum.
//
// Usage: node tests/bench/mirth_style_transformer.mjs RECORDS.ndjson > bundles.ndjson
// Input is streamed with readline; each Bundle is written with process.stdout.write, one line per record
// (stdout to a file or pipe is synchronous on Linux, so no backpressure handling is needed). A rejected line
// yields one stderr line "line N: problem" (no record content). Exit status 0.

import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { randomUUID } from 'node:crypto';

const BASE = 'https://clinic.example/fhir';
const SYS = {
  mrn: BASE + '/mrn',
  rid: BASE + '/record-resource',
  local: BASE + '/CodeSystem/clinic-local',
  npi: 'http://hl7.org/fhir/sid/us-npi',
  icd10: 'http://hl7.org/fhir/sid/icd-10-cm',
  cpt: 'http://www.ama-assn.org/go/cpt',
  hcpcs: 'https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets',
  ndc: 'http://hl7.org/fhir/sid/ndc',
  loinc: 'http://loinc.org',
  sct: 'http://snomed.info/sct',
  ucum: 'http://unitsofmeasure.org',
  obsCat: 'http://terminology.hl7.org/CodeSystem/observation-category',
  condCat: 'http://terminology.hl7.org/CodeSystem/condition-category',
  condClin: 'http://terminology.hl7.org/CodeSystem/condition-clinical',
  condVer: 'http://terminology.hl7.org/CodeSystem/condition-ver-status',
  actCode: 'http://terminology.hl7.org/CodeSystem/v3-ActCode',
  aeSev: 'http://terminology.hl7.org/CodeSystem/adverse-event-severity',
  aeOut: 'http://terminology.hl7.org/CodeSystem/adverse-event-outcome',
};
const MODIFIER_EXT = BASE + '/StructureDefinition/hcpcs-modifier';

const ICD_DISPLAY = {
  'G43.701': 'Chronic migraine without aura, not intractable, with status migrainosus',
  'G43.709': 'Chronic migraine without aura, not intractable, without status migrainosus',
  'G43.711': 'Chronic migraine without aura, intractable, with status migrainosus',
  'G43.719': 'Chronic migraine without aura, intractable, without status migrainosus',
  'G43.E01': 'Chronic migraine with aura, not intractable, with status migrainosus',
  'G43.E09': 'Chronic migraine with aura, not intractable, without status migrainosus',
  'G43.E11': 'Chronic migraine with aura, intractable, with status migrainosus',
  'G43.E19': 'Chronic migraine with aura, intractable, without status migrainosus',
};
const BOTOX_NDC = { '00023392102': 200, '00023114501': 100 };
const LATERALITY = { left: ['7771000', 'Left'], right: ['24028007', 'Right'], midline: ['399488007', 'Midline'] };
const MUSCLES = ['corrugator', 'procerus', 'frontalis', 'temporalis', 'occipitalis', 'cervical_paraspinal', 'trapezius'];
const FTP_MUSCLES = ['temporalis', 'occipitalis', 'trapezius'];
const PREEMPT_LAYOUT = [
  ['corrugator', 'left', 1, 5], ['corrugator', 'right', 1, 5], ['procerus', 'midline', 1, 5],
  ['frontalis', 'left', 2, 10], ['frontalis', 'right', 2, 10],
  ['temporalis', 'left', 4, 20], ['temporalis', 'right', 4, 20],
  ['occipitalis', 'left', 3, 15], ['occipitalis', 'right', 3, 15],
  ['cervical_paraspinal', 'left', 2, 10], ['cervical_paraspinal', 'right', 2, 10],
  ['trapezius', 'left', 3, 15], ['trapezius', 'right', 3, 15],
].map(([muscle, side, sites, units]) => ({ muscle, side, sites, units }));
const SIDE_EFFECTS = ['neck-pain', 'eyelid-ptosis', 'eyebrow-ptosis', 'injection-site-pain', 'headache',
  'muscle-weakness', 'facial-paresis', 'musculoskeletal-stiffness', 'dysphagia', 'breathing-difficulty', 'other'];
const DRUG_CLASSES = ['beta-blocker', 'anticonvulsant', 'antidepressant', 'calcium-channel-blocker',
  'arb-ace-inhibitor', 'cgrp-monoclonal-antibody', 'gepant', 'other'];
const OUTCOMES = ['ineffective', 'not-tolerated', 'contraindicated', 'ongoing'];
const SEVERITIES = ['mild', 'moderate', 'severe'];

const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;
const DATETIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const RECORD_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

// ---------------------------------------------------------------- checks

function get(obj, path) {
  let v = obj;
  for (const k of path.split('.')) {
    if (v == null || typeof v !== 'object') return undefined;
    v = v[k];
  }
  return v;
}

function isInt(v, min, max) { return Number.isInteger(v) && v >= min && (max === undefined || v <= max); }
function isNum(v, min, max) { return typeof v === 'number' && Number.isFinite(v) && v >= min && (max === undefined || v <= max); }
function isStr(v) { return typeof v === 'string' && v.length > 0; }

function npiValid(npi) {
  if (!/^\d{10}$/.test(npi)) return false;
  const digits = '80840' + npi.slice(0, 9);
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 0) { d *= 2; if (d > 9) d -= 9; }
    sum += d;
  }
  return (10 - (sum % 10)) % 10 === Number(npi[9]);
}

function ndc11(ndc) {
  if (/^\d{11}$/.test(ndc)) return ndc;
  const m = /^(\d{4})-(\d{4})-(\d{2})$/.exec(ndc); // 4-4-2 for this labeler
  return m ? '0' + m[1] + m[2] + m[3] : null;
}

function checkSiteList(list, field, muscles) {
  if (!Array.isArray(list)) return field + ' must be an array';
  for (let i = 0; i < list.length; i++) {
    const s = list[i];
    const p = `${field}[${i}]`;
    if (!s || !muscles.includes(s.muscle)) return p + '.muscle invalid';
    if (!LATERALITY[s.side]) return p + '.side invalid';
    if (!isInt(s.sites, 1)) return p + '.sites invalid';
    if (!isNum(s.units, 0) || s.units === 0) return p + '.units invalid';
  }
  return null;
}

// Returns a problem string, or null when the record can be mapped.
function check(r) {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) return 'record is not a JSON object';
  if (!['consultation', 'procedure', 'follow_up'].includes(r.record_type)) return 'record_type missing or invalid';
  if (typeof r.record_id !== 'string' || !RECORD_ID_RE.test(r.record_id)) return 'record_id missing or invalid';
  if (r.revision !== undefined && !isInt(r.revision, 1)) return 'revision invalid';
  if (r.status !== undefined && !['final', 'amended', 'entered-in-error'].includes(r.status)) return 'status invalid';
  if (r.status === 'entered-in-error') return 'status entered-in-error (retraction) not supported by this script';
  if (!DATETIME_RE.test(r.recorded_at)) return 'recorded_at missing or invalid';
  for (const f of ['patient.mrn', 'patient.name.family', 'clinician.name.family']) {
    if (!isStr(get(r, f))) return f + ' missing';
  }
  if (!Array.isArray(get(r, 'patient.name.given'))) return 'patient.name.given missing';
  if (!Array.isArray(get(r, 'clinician.name.given'))) return 'clinician.name.given missing';
  if (!DATE_RE.test(get(r, 'patient.birth_date'))) return 'patient.birth_date missing or invalid';
  if (!['female', 'male', 'other', 'unknown'].includes(get(r, 'patient.sex'))) return 'patient.sex missing or invalid';
  const npi = get(r, 'clinician.npi');
  if (typeof npi !== 'string' || !npiValid(npi)) return 'clinician.npi missing or check digit fails';
  if (!DATETIME_RE.test(get(r, 'visit.start'))) return 'visit.start missing or invalid';
  const end = get(r, 'visit.end');
  if (end !== undefined) {
    if (!DATETIME_RE.test(end)) return 'visit.end invalid';
    if (Date.parse(end) < Date.parse(r.visit.start)) return 'visit.end before visit.start';
  }

  if (r.record_type === 'consultation' || r.record_type === 'follow_up') {
    if (!isInt(r.headache_days_per_month, 0, 31)) return 'headache_days_per_month missing or invalid';
    if (!isInt(r.migraine_days_per_month, 0, 31)) return 'migraine_days_per_month missing or invalid';
    if (r.migraine_days_per_month > r.headache_days_per_month) return 'migraine_days_per_month above headache_days_per_month';
    if (r.average_pain !== undefined && !isInt(r.average_pain, 0, 10)) return 'average_pain invalid';
    if (get(r, 'scores.midas') !== undefined && !isInt(r.scores.midas, 0, 270)) return 'scores.midas invalid';
    if (get(r, 'scores.hit6') !== undefined && !isInt(r.scores.hit6, 36, 78)) return 'scores.hit6 invalid';
  }

  if (r.record_type === 'consultation') {
    if (!isInt(r.months_at_frequency, 0)) return 'months_at_frequency missing or invalid';
    if (!ICD_DISPLAY[r.diagnosis_code]) return 'diagnosis_code missing or not a chronic migraine code';
    if (!['recommend-botox', 'not-eligible', 'defer'].includes(r.decision)) return 'decision missing or invalid';
    if (r.headache_hours_per_day !== undefined && !isNum(r.headache_hours_per_day, 0, 24)) return 'headache_hours_per_day invalid';
    if (r.acute_medication_days_per_month !== undefined && !isInt(r.acute_medication_days_per_month, 0, 31)) return 'acute_medication_days_per_month invalid';
    if (r.prior_preventives !== undefined) {
      if (!Array.isArray(r.prior_preventives)) return 'prior_preventives must be an array';
      for (let i = 0; i < r.prior_preventives.length; i++) {
        const p = r.prior_preventives[i];
        if (!p || !isStr(p.medication)) return `prior_preventives[${i}].medication missing`;
        if (!DRUG_CLASSES.includes(p.drug_class)) return `prior_preventives[${i}].drug_class invalid`;
        if (p.weeks !== undefined && !isInt(p.weeks, 0)) return `prior_preventives[${i}].weeks invalid`;
        if (!OUTCOMES.includes(p.outcome)) return `prior_preventives[${i}].outcome invalid`;
      }
    }
  } else if (r.record_type === 'procedure') {
    const p = r.product;
    if (!p || typeof p !== 'object') return 'product missing';
    const ndc = typeof p.ndc === 'string' ? ndc11(p.ndc) : null;
    if (!ndc || !BOTOX_NDC[ndc]) return 'product.ndc missing or not a Botox vial';
    if (!isStr(p.lot)) return 'product.lot missing';
    if (!DATE_RE.test(p.expiration)) return 'product.expiration missing or invalid';
    if (p.vial_units !== 100 && p.vial_units !== 200) return 'product.vial_units invalid';
    if (BOTOX_NDC[ndc] !== p.vial_units) return 'product.vial_units disagrees with product.ndc';
    if (p.vials !== undefined && !isInt(p.vials, 1)) return 'product.vials invalid';
    if (!['PREEMPT', 'custom'].includes(r.protocol)) return 'protocol missing or invalid';
    if (r.protocol === 'custom' && r.injections === undefined) return 'injections required for custom protocol';
    let err;
    if (r.injections !== undefined && (err = checkSiteList(r.injections, 'injections', MUSCLES))) return err;
    if (r.follow_the_pain !== undefined && (err = checkSiteList(r.follow_the_pain, 'follow_the_pain', FTP_MUSCLES))) return err;
    if (!isNum(r.units_discarded, 0)) return 'units_discarded missing or invalid';
    const administered = sumUnits(sessionSites(r));
    if (administered + r.units_discarded > p.vial_units * (p.vials ?? 1)) return 'administered plus discarded units exceed the vials';
    if (r.next_due !== undefined && !DATE_RE.test(r.next_due)) return 'next_due invalid';
  } else {
    if (!isStr(r.procedure_record_id)) return 'procedure_record_id missing';
    if (!['continue', 'stop', 'adjust'].includes(r.plan)) return 'plan missing or invalid';
    if (r.side_effects !== undefined) {
      if (!Array.isArray(r.side_effects)) return 'side_effects must be an array';
      for (let i = 0; i < r.side_effects.length; i++) {
        const s = r.side_effects[i];
        if (!s || !SIDE_EFFECTS.includes(s.effect)) return `side_effects[${i}].effect invalid`;
        if (s.severity !== undefined && !SEVERITIES.includes(s.severity)) return `side_effects[${i}].severity invalid`;
      }
    }
    if (r.baseline_headache_days_per_month !== undefined && !isInt(r.baseline_headache_days_per_month, 0, 31)) return 'baseline_headache_days_per_month invalid';
  }
  return null;
}

// ---------------------------------------------------------------- helpers

function sessionSites(r) {
  const base = r.injections ?? (r.protocol === 'PREEMPT' ? PREEMPT_LAYOUT : []);
  return base.concat(r.follow_the_pain ?? []);
}
function sumUnits(list) { return list.reduce((t, s) => t + s.units, 0); }

function cc(system, code, display, text) {
  const c = { coding: [{ system, code }] };
  if (display) c.coding[0].display = display;
  if (text) c.text = text;
  return c;
}
function local(code, text) { return cc(SYS.local, code, text, text); }
function humanName(n) {
  const out = { family: n.family, given: n.given };
  return out;
}
function ident(value) { return [{ system: SYS.rid, value }]; }
function titleMuscle(m) { const s = m.replace('_', ' '); return s[0].toUpperCase() + s.slice(1); }
function addDays(date, days) {
  const [y, m, d] = date.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

// Collects bundle entries; each add() returns the urn:uuid reference for the new entry.
class BundleBuilder {
  constructor(rec) { this.rec = rec; this.entries = []; }
  add(resource, ifNoneExist) {
    const fullUrl = 'urn:uuid:' + randomUUID();
    const request = { method: 'POST', url: resource.resourceType };
    if (ifNoneExist) request.ifNoneExist = ifNoneExist;
    this.entries.push({ fullUrl, resource, request });
    return fullUrl;
  }
  // Every resource other than Patient/Practitioner gets an identifier "<record_id>/<suffix>".
  addOwned(resource, suffix) {
    const value = this.rec.record_id + '/' + suffix;
    resource.identifier = ident(value);
    return this.add(resource, `identifier=${encodeURIComponent(SYS.rid + '|' + value)}`);
  }
  toBundle() {
    return {
      resourceType: 'Bundle',
      type: 'transaction',
      identifier: { system: BASE + '/record', value: `${this.rec.record_id}/r${this.rec.revision ?? 1}` },
      timestamp: this.rec.recorded_at,
      entry: this.entries,
    };
  }
}

function quantity(value, unit, code) { return { value, unit, system: SYS.ucum, code }; }
const DAYS_PER_MONTH = (v) => quantity(v, 'days per month', 'd/mo');

function observation(b, ctx, suffix, code, value, category = 'survey', extra = {}) {
  const obs = {
    resourceType: 'Observation',
    status: 'final',
    category: [cc(SYS.obsCat, category, category === 'survey' ? 'Survey' : 'Exam')],
    code,
    subject: { reference: ctx.patient },
    encounter: { reference: ctx.encounter },
    effectiveDateTime: ctx.rec.visit.start,
    issued: ctx.rec.recorded_at,
    performer: [{ reference: ctx.practitioner }],
    ...value,
    ...extra,
  };
  return b.addOwned(obs, 'observation/' + suffix);
}

function commonObservations(b, ctx) {
  const r = ctx.rec;
  const refs = {};
  refs.headache = observation(b, ctx, 'headache-days', local('headache-days-per-month', 'Headache days per month'),
    { valueQuantity: DAYS_PER_MONTH(r.headache_days_per_month) });
  refs.migraine = observation(b, ctx, 'migraine-days', local('migraine-days-per-month', 'Migraine days per month'),
    { valueQuantity: DAYS_PER_MONTH(r.migraine_days_per_month) });
  if (r.average_pain !== undefined) {
    observation(b, ctx, 'pain', cc(SYS.loinc, '72514-3', 'Pain severity - 0-10 verbal numeric rating [Score] - Reported', 'Average pain (0-10)'),
      { valueInteger: r.average_pain });
  }
  if (get(r, 'scores.midas') !== undefined) {
    observation(b, ctx, 'midas', local('midas-total', 'MIDAS total score'), { valueInteger: r.scores.midas });
  }
  if (get(r, 'scores.hit6') !== undefined) {
    observation(b, ctx, 'hit6', local('hit6-total', 'HIT-6 total score'), { valueInteger: r.scores.hit6 });
  }
  return refs;
}

function encounter(b, ctx, typeCode, typeText) {
  const r = ctx.rec;
  const enc = {
    resourceType: 'Encounter',
    status: 'finished',
    class: { system: SYS.actCode, code: 'AMB', display: 'ambulatory' },
    type: [local(typeCode, typeText)],
    subject: { reference: ctx.patient },
    participant: [{ individual: { reference: ctx.practitioner } }],
    period: r.visit.end ? { start: r.visit.start, end: r.visit.end } : { start: r.visit.start },
  };
  if (r.visit.location) enc.location = [{ location: { display: r.visit.location } }];
  return b.addOwned(enc, 'encounter');
}

// ---------------------------------------------------------------- mapping

function mapConsultation(b, ctx) {
  const r = ctx.rec;
  ctx.encounter = encounter(b, ctx, 'headache-consultation', 'Chronic migraine consultation');

  const condition = {
    resourceType: 'Condition',
    clinicalStatus: cc(SYS.condClin, 'active', 'Active'),
    verificationStatus: cc(SYS.condVer, 'confirmed', 'Confirmed'),
    category: [cc(SYS.condCat, 'encounter-diagnosis', 'Encounter Diagnosis')],
    code: cc(SYS.icd10, r.diagnosis_code, ICD_DISPLAY[r.diagnosis_code], ICD_DISPLAY[r.diagnosis_code]),
    subject: { reference: ctx.patient },
    encounter: { reference: ctx.encounter },
    recordedDate: r.recorded_at,
    asserter: { reference: ctx.practitioner },
  };
  if (r.notes) condition.note = [{ text: r.notes }];
  const conditionRef = b.addOwned(condition, 'condition');

  commonObservations(b, ctx);
  observation(b, ctx, 'months-at-frequency', local('months-at-frequency', 'Months at current headache frequency'),
    { valueQuantity: quantity(r.months_at_frequency, 'months', 'mo') });
  if (r.headache_hours_per_day !== undefined) {
    observation(b, ctx, 'headache-hours', local('headache-hours-per-day', 'Headache hours per headache day'),
      { valueQuantity: quantity(r.headache_hours_per_day, 'hours', 'h') });
  }
  if (r.acute_medication_days_per_month !== undefined) {
    observation(b, ctx, 'acute-medication-days', local('acute-medication-days-per-month', 'Acute medication days per month'),
      { valueQuantity: DAYS_PER_MONTH(r.acute_medication_days_per_month) });
  }
  observation(b, ctx, 'eligibility', local('botox-eligibility-decision', 'Botox eligibility decision'),
    { valueCodeableConcept: local(r.decision, r.decision) }, 'exam', { focus: [{ reference: conditionRef }] });

  (r.prior_preventives ?? []).forEach((p, i) => {
    const ms = {
      resourceType: 'MedicationStatement',
      status: p.outcome === 'ongoing' ? 'active' : (p.outcome === 'contraindicated' ? 'not-taken' : 'completed'),
      statusReason: p.outcome === 'ongoing' ? undefined : [local(p.outcome, p.outcome)],
      category: local(p.drug_class, p.drug_class),
      medicationCodeableConcept: { text: p.medication },
      subject: { reference: ctx.patient },
      context: { reference: ctx.encounter },
      dateAsserted: r.recorded_at,
      informationSource: { reference: ctx.practitioner },
      reasonReference: [{ reference: conditionRef }],
      note: [{ text: `Prior preventive (${p.drug_class})${p.weeks !== undefined ? ', ' + p.weeks + ' weeks' : ''}, outcome: ${p.outcome}` }],
    };
    if (!ms.statusReason) delete ms.statusReason;
    b.addOwned(ms, 'medication-statement/' + i);
  });

  if (r.decision === 'recommend-botox') {
    b.addOwned({
      resourceType: 'ServiceRequest',
      status: 'active',
      intent: 'order',
      code: {
        coding: [{ system: SYS.cpt, code: '64615' }, { system: SYS.sct, code: '442695005', display: 'Injection of botulinum toxin' }],
        text: 'OnabotulinumtoxinA (Botox) for chronic migraine, PREEMPT every 12 weeks',
      },
      subject: { reference: ctx.patient },
      encounter: { reference: ctx.encounter },
      occurrenceTiming: { repeat: { frequency: 1, period: 12, periodUnit: 'wk' } },
      authoredOn: r.recorded_at,
      requester: { reference: ctx.practitioner },
      reasonReference: [{ reference: conditionRef }],
    }, 'service-request');
  }
}

function mapProcedure(b, ctx) {
  const r = ctx.rec;
  const p = r.product;
  const ndc = ndc11(p.ndc);
  ctx.encounter = encounter(b, ctx, 'botox-injection-session', 'OnabotulinumtoxinA injection session');
  const when = r.visit.end ? { effectivePeriod: { start: r.visit.start, end: r.visit.end } } : { effectiveDateTime: r.visit.start };

  const medRef = b.addOwned({
    resourceType: 'Medication',
    code: { coding: [{ system: SYS.ndc, code: ndc }], text: `OnabotulinumtoxinA (Botox) ${p.vial_units} U vial` },
    status: 'active',
    form: { text: 'powder for injection' },
    batch: { lotNumber: p.lot, expirationDate: p.expiration },
  }, 'medication');

  // One group per muscle + side, follow-the-pain units added to the matching group.
  const groups = new Map();
  for (const s of sessionSites(r)) {
    const key = s.muscle + '-' + s.side;
    const g = groups.get(key);
    if (g) { g.sites += s.sites; g.units += s.units; } else groups.set(key, { muscle: s.muscle, side: s.side, sites: s.sites, units: s.units });
  }
  const siteConcept = (g) => ({
    coding: [
      { system: SYS.local, code: g.muscle, display: titleMuscle(g.muscle) },
      { system: SYS.sct, code: LATERALITY[g.side][0], display: LATERALITY[g.side][1] },
    ],
    text: `${titleMuscle(g.muscle)}, ${g.side}`,
  });

  const procedure = {
    resourceType: 'Procedure',
    status: 'completed',
    code: {
      coding: [
        { system: SYS.cpt, code: '64615', display: 'Chemodenervation of muscle(s); muscle(s) innervated by facial, trigeminal, cervical spinal and accessory nerves, bilateral (eg, for chronic migraine)' },
        { system: SYS.sct, code: '442695005', display: 'Injection of botulinum toxin' },
      ],
      text: `OnabotulinumtoxinA chemodenervation for chronic migraine (${r.protocol})`,
    },
    subject: { reference: ctx.patient },
    encounter: { reference: ctx.encounter },
    performer: [{ actor: { reference: ctx.practitioner } }],
    bodySite: [...groups.values()].map(siteConcept),
    usedReference: [{ reference: medRef }],
  };
  if (r.visit.end) procedure.performedPeriod = { start: r.visit.start, end: r.visit.end };
  else procedure.performedDateTime = r.visit.start;
  if (r.consultation_record_id) {
    procedure.reasonReference = [{ reference: `Condition?identifier=${encodeURIComponent(SYS.rid + '|' + r.consultation_record_id + '/condition')}` }];
  }
  if (r.notes) procedure.note = [{ text: r.notes }];
  const procRef = b.addOwned(procedure, 'procedure');

  const adminRefs = [];
  let administered = 0;
  for (const g of groups.values()) {
    administered += g.units;
    adminRefs.push({
      reference: b.addOwned({
        resourceType: 'MedicationAdministration',
        status: 'completed',
        partOf: [{ reference: procRef }],
        medicationReference: { reference: medRef },
        subject: { reference: ctx.patient },
        context: { reference: ctx.encounter },
        ...when,
        performer: [{ actor: { reference: ctx.practitioner } }],
        note: [{ text: `${g.sites} site(s)` }],
        dosage: {
          site: siteConcept(g),
          route: { text: 'intramuscular' },
          dose: quantity(g.units, 'U', "[USP'U]"),
        },
      }, 'administration/' + g.muscle + '-' + g.side),
    });
  }

  const occurrence = r.visit.start;
  const charge = (suffix, code, display, qty, service, modifier) => {
    const ci = {
      resourceType: 'ChargeItem',
      status: 'billable',
      code: cc(code === '64615' ? SYS.cpt : SYS.hcpcs, code, display),
      subject: { reference: ctx.patient },
      context: { reference: ctx.encounter },
      occurrenceDateTime: occurrence,
      performer: [{ actor: { reference: ctx.practitioner } }],
      quantity: { value: qty },
      enteredDate: r.recorded_at,
      service,
    };
    if (code !== '64615') ci.productReference = { reference: medRef };
    if (modifier) ci.extension = [{ url: MODIFIER_EXT, valueCodeableConcept: cc(SYS.hcpcs, modifier) }];
    b.addOwned(ci, 'charge/' + suffix);
  };
  charge('64615', '64615', 'Chemodenervation for chronic migraine', 1, [{ reference: procRef }]);
  const discarded = r.units_discarded;
  charge('J0585', 'J0585', 'Injection, onabotulinumtoxinA, 1 unit', administered, adminRefs, discarded === 0 ? 'JZ' : undefined);
  if (discarded > 0) {
    charge('J0585-JW', 'J0585', 'Injection, onabotulinumtoxinA, 1 unit (discarded)', discarded, [{ reference: procRef }], 'JW');
  }

  (r.immediate_reactions ?? []).forEach((x, i) => {
    const ae = {
      resourceType: 'AdverseEvent',
      actuality: 'actual',
      event: { text: x.reaction },
      subject: { reference: ctx.patient },
      encounter: { reference: ctx.encounter },
      date: r.visit.start,
      recordedDate: r.recorded_at,
      recorder: { reference: ctx.practitioner },
      suspectEntity: [{ instance: { reference: medRef } }],
    };
    if (SEVERITIES.includes(x.severity)) ae.severity = cc(SYS.aeSev, x.severity, x.severity);
    b.addOwned(ae, 'adverse-event/' + i);
  });

  b.addOwned({
    resourceType: 'ServiceRequest',
    status: 'active',
    intent: 'order',
    code: { coding: [{ system: SYS.cpt, code: '64615' }], text: 'Next onabotulinumtoxinA injection session' },
    subject: { reference: ctx.patient },
    encounter: { reference: ctx.encounter },
    occurrenceDateTime: r.next_due ?? addDays(r.visit.start.slice(0, 10), 84),
    authoredOn: r.recorded_at,
    requester: { reference: ctx.practitioner },
  }, 'next-session');
}

function mapFollowUp(b, ctx) {
  const r = ctx.rec;
  ctx.encounter = encounter(b, ctx, 'botox-follow-up', 'OnabotulinumtoxinA treatment follow-up');
  const refs = commonObservations(b, ctx);

  const base = r.baseline_headache_days_per_month;
  if (base !== undefined && base > 0) {
    const pct = Math.round(((r.headache_days_per_month - base) / base) * 1000) / 10;
    observation(b, ctx, 'response', local('headache-days-percent-change', 'Percent change in headache days from baseline'),
      { valueQuantity: quantity(pct, '%', '%') }, 'exam', {
        derivedFrom: [{ reference: refs.headache }],
        note: [{ text: `Baseline ${base} headache days per month (from the record)` }],
      });
  }

  observation(b, ctx, 'plan', local('botox-treatment-plan', 'Botox treatment plan'),
    { valueCodeableConcept: local(r.plan, r.plan) }, 'exam', r.notes ? { note: [{ text: r.notes }] } : {});

  const medRef = `Medication?identifier=${encodeURIComponent(SYS.rid + '|' + r.procedure_record_id + '/medication')}`;
  (r.side_effects ?? []).forEach((s, i) => {
    const text = s.effect === 'other' && s.description ? s.description : s.effect;
    const ae = {
      resourceType: 'AdverseEvent',
      actuality: 'actual',
      event: local(s.effect, text),
      subject: { reference: ctx.patient },
      encounter: { reference: ctx.encounter },
      recordedDate: r.recorded_at,
      recorder: { reference: ctx.practitioner },
      suspectEntity: [{ instance: { reference: medRef } }],
    };
    if (s.onset) ae.date = s.onset;
    if (s.severity) ae.severity = cc(SYS.aeSev, s.severity, s.severity);
    if (s.resolved !== undefined) ae.outcome = cc(SYS.aeOut, s.resolved ? 'resolved' : 'ongoing', s.resolved ? 'Resolved' : 'Ongoing');
    b.addOwned(ae, 'adverse-event/' + i);
  });
}

function transform(r) {
  const b = new BundleBuilder(r);
  const ctx = { rec: r };

  const pt = r.patient;
  const patient = {
    resourceType: 'Patient',
    identifier: [{ use: 'usual', system: SYS.mrn, value: pt.mrn }],
    name: [humanName(pt.name)],
    gender: pt.sex,
    birthDate: pt.birth_date,
  };
  const telecom = [];
  if (pt.phone) telecom.push({ system: 'phone', value: pt.phone, ...(pt.phone_use ? { use: pt.phone_use } : {}) });
  if (pt.email) telecom.push({ system: 'email', value: pt.email, ...(pt.email_use ? { use: pt.email_use } : {}) });
  if (telecom.length) patient.telecom = telecom;
  if (pt.address && typeof pt.address === 'object') {
    const a = pt.address;
    patient.address = [{ line: a.line, city: a.city, state: a.state, postalCode: a.postal_code, country: a.country }];
  }
  ctx.patient = b.add(patient, `identifier=${encodeURIComponent(SYS.mrn + '|' + pt.mrn)}`);

  const cl = r.clinician;
  const name = humanName(cl.name);
  if (cl.credentials) name.suffix = [cl.credentials];
  ctx.practitioner = b.add({
    resourceType: 'Practitioner',
    identifier: [{ system: SYS.npi, value: cl.npi }],
    name: [name],
  }, `identifier=${encodeURIComponent(SYS.npi + '|' + cl.npi)}`);

  if (r.record_type === 'consultation') mapConsultation(b, ctx);
  else if (r.record_type === 'procedure') mapProcedure(b, ctx);
  else mapFollowUp(b, ctx);
  return b.toBundle();
}

// ---------------------------------------------------------------- main

async function main() {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node mirth_style_transformer.mjs RECORDS.ndjson > bundles.ndjson\n');
    process.exit(2);
  }
  const rl = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let lineNo = 0;
  for await (const line of rl) {
    lineNo++;
    if (line.trim() === '') continue;
    let rec;
    try {
      rec = JSON.parse(line);
    } catch {
      process.stderr.write(`line ${lineNo}: not valid JSON\n`);
      continue;
    }
    const problem = check(rec);
    if (problem) {
      process.stderr.write(`line ${lineNo}: ${problem}\n`);
      continue;
    }
    let out;
    try {
      out = JSON.stringify(transform(rec));
    } catch (e) {
      // A mapping bug must not stop the channel; report the line, not its content.
      process.stderr.write(`line ${lineNo}: mapping failed (${e && e.name})\n`);
      continue;
    }
    process.stdout.write(out + '\n');
  }
}

main().catch((e) => {
  process.stderr.write(`failed to read input: ${e && e.code ? e.code : 'error'}\n`);
  process.exitCode = 1;
});
