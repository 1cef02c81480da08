#!/usr/bin/env node
// Benchmark baseline: a plain Node.js transformer of clinic records to FHIR R4 transaction Bundles,
// the kind of script integration engines run. TEST TOOLING, NOT PRODUCT: it exists only so the
// mapping benchmark can compare `migraine-connector map X.ndjson` with an ordinary script doing the
// same work. It reads one record per line, checks it plainly (required fields, enums, ranges, the
// contract's cross-field rules), keeps each patient's earlier records as the CLI does, and writes the
// same Bundle structure as mappings/*_mapper.cpp (same resources, elements, codes, identifiers and
// requests), one compact Bundle per line. Differences from the C++ mapper, by design:
// - urn:uuid fullUrls come from SHA-1 over "type|system|value" (same shape, other values);
// - a rejected record gets one stderr line (its first problem), not every problem;
// - no configuration file: the default identifier systems, the shipped code tables.
// Usage: node tests/bench/node_transformer.mjs RECORDS.ndjson > bundles.ndjson
// Node 20 built-ins only.

import crypto from 'node:crypto';
import fs from 'node:fs';

// --- configuration and code tables ------------------------------------------------------------

const BASE = 'https://clinic.example/fhir';
const SYS = {
  mrn: `${BASE}/mrn`,
  resource: `${BASE}/resource`,
  record: `${BASE}/record`,
  organization: `${BASE}/organization`,
  device: `${BASE}/device`,
  provenance: `${BASE}/provenance`,
  npi: 'http://hl7.org/fhir/sid/us-npi',
  local: `${BASE}/CodeSystem/migraine-local`,
  icd10: 'http://hl7.org/fhir/sid/icd-10-cm',
  ndc: 'http://hl7.org/fhir/sid/ndc',
  ucum: 'http://unitsofmeasure.org',
};
const CLINIC_ID = 'migraine-clinic';
const CLINIC_NAME = 'Migraine clinic';
const CONNECTOR_VERSION = '0.1.0';

const tablesJson = JSON.parse(
  fs.readFileSync(new URL('../../mappings/code-tables.json', import.meta.url), 'utf8'));

function toCoding(c) {
  const coding = { system: c.system === 'local' ? SYS.local : c.system, code: c.code };
  if (c.display) coding.display = c.display;
  return coding;
}

// key -> CodeableConcept, built once and shared by every resource that uses it.
const CONCEPT = {};
const CONCEPT_ENTRY = {};
for (const [key, entry] of Object.entries(tablesJson.concepts)) {
  const cc = {};
  if (entry.codings && entry.codings.length) cc.coding = entry.codings.map(toCoding);
  if (entry.text) cc.text = entry.text;
  CONCEPT[key] = cc;
  if (entry.codings) CONCEPT_ENTRY[key] = { codings: entry.codings.map(toCoding), text: entry.text };
}
const DIAGNOSES = {};
for (const [code, d] of Object.entries(tablesJson.diagnoses)) {
  if (code !== '$comment') DIAGNOSES[code] = { display: d.display, also: (d.also || []).map(toCoding) };
}
const PRODUCTS = {}; // 11-digit NDC -> { ndc10, units, display }
for (const [ndc11, p] of Object.entries(tablesJson.products)) {
  if (ndc11 !== '$comment') PRODUCTS[ndc11] = { ndc10: p.ndc10, units: p.vial_units, display: p.display };
}
const COUNTED_CLASSES = new Set(tablesJson.counted_preventive_classes.classes);
// A relative extension URL is the connector's own, under the identifier base.
const ownExtension = (url) => (url.startsWith('StructureDefinition/') ? `${BASE}/${url}` : url);
const EXT = {
  laterality: tablesJson.extensions.laterality,
  assertedDate: tablesJson.extensions['asserted-date'],
  race: tablesJson.extensions.race,
  ethnicity: tablesJson.extensions.ethnicity,
  drugClass: ownExtension(tablesJson.extensions['drug-class']),
  billingModifier: ownExtension(tablesJson.extensions['billing-modifier']),
};
const US_CORE = 'http://hl7.org/fhir/us/core/StructureDefinition/';
const PROFILES = {
  Patient: 'us-core-patient', Practitioner: 'us-core-practitioner', Organization: 'us-core-organization',
  Encounter: 'us-core-encounter', Condition: 'us-core-condition-encounter-diagnosis',
  Procedure: 'us-core-procedure', ServiceRequest: 'us-core-servicerequest', Medication: 'us-core-medication',
  Provenance: 'us-core-provenance',
};
const INSTRUMENTS = new Set(['observation/pain-severity', 'observation/midas', 'observation/hit6']);
function usCoreProfile(type, role) {
  if (type === 'Observation') {
    return US_CORE + (INSTRUMENTS.has(role) ? 'us-core-observation-screening-assessment' : 'us-core-simple-observation');
  }
  return PROFILES[type] ? US_CORE + PROFILES[type] : '';
}

// --- contract enums and clinical constants ----------------------------------------------------

const KINDS = ['consultation', 'procedure', 'follow_up'];
const STATUSES = ['final', 'amended', 'entered-in-error'];
const SEXES = ['female', 'male', 'other', 'unknown'];
const CONTACT_USES = ['home', 'work', 'mobile'];
const RACES = ['american-indian-or-alaska-native', 'asian', 'black-or-african-american',
  'native-hawaiian-or-other-pacific-islander', 'white', 'unknown', 'declined'];
const ETHNICITIES = ['hispanic-or-latino', 'not-hispanic-or-latino', 'unknown', 'declined'];
const DRUG_CLASSES = ['beta-blocker', 'anticonvulsant', 'antidepressant', 'calcium-channel-blocker',
  'arb-ace-inhibitor', 'cgrp-monoclonal-antibody', 'gepant', 'other'];
const OUTCOMES = ['ineffective', 'not-tolerated', 'contraindicated', 'ongoing'];
const DECISIONS = ['recommend-botox', 'not-eligible', 'defer'];
const MUSCLES = ['corrugator', 'procerus', 'frontalis', 'temporalis', 'occipitalis',
  'cervical_paraspinal', 'trapezius'];
const FOLLOW_THE_PAIN_MUSCLES = ['temporalis', 'occipitalis', 'trapezius'];
const SIDES = ['left', 'right', 'midline'];
const PROTOCOLS = ['PREEMPT', 'custom'];
const SEVERITIES = ['mild', 'moderate', 'severe'];
const SIDE_EFFECTS = ['neck-pain', 'eyelid-ptosis', 'eyebrow-ptosis', 'injection-site-pain', 'headache',
  'muscle-weakness', 'facial-paresis', 'musculoskeletal-stiffness', 'dysphagia',
  'breathing-difficulty', 'other'];
const PLANS = ['continue', 'stop', 'adjust'];

const ENVELOPE_FIELDS = ['record_type', 'record_id', 'revision', 'status', 'recorded_at', 'patient',
  'clinician', 'visit', 'notes', 'extra'];
const KIND_FIELDS = {
  consultation: new Set([...ENVELOPE_FIELDS, 'headache_days_per_month', 'migraine_days_per_month',
    'months_at_frequency', 'headache_hours_per_day', 'average_pain', 'aura',
    'acute_medication_days_per_month', 'triggers', 'prior_preventives', 'scores', 'diagnosis_code',
    'decision']),
  procedure: new Set([...ENVELOPE_FIELDS, 'consultation_record_id', 'cycle', 'product', 'protocol',
    'injections', 'follow_the_pain', 'units_discarded', 'immediate_reactions', 'next_due']),
  follow_up: new Set([...ENVELOPE_FIELDS, 'procedure_record_id', 'headache_days_per_month',
    'migraine_days_per_month', 'average_pain', 'scores', 'side_effects', 'plan',
    'baseline_headache_days_per_month']),
};
const FIELDS = {
  patient: new Set(['mrn', 'name', 'birth_date', 'sex', 'phone', 'phone_use', 'email', 'email_use',
    'address', 'race', 'ethnicity', 'language']),
  address: new Set(['line', 'city', 'state', 'postal_code', 'country']),
  clinician: new Set(['npi', 'name', 'credentials']),
  name: new Set(['family', 'given']),
  visit: new Set(['start', 'end', 'location']),
  scores: new Set(['midas', 'hit6']),
  product: new Set(['ndc', 'lot', 'expiration', 'vial_units', 'vials', 'diluent_ml']),
  injection: new Set(['muscle', 'side', 'sites', 'units']),
  preventive: new Set(['medication', 'drug_class', 'weeks', 'outcome']),
  reaction: new Set(['reaction', 'severity']),
  sideEffect: new Set(['effect', 'severity', 'onset', 'resolved', 'description']),
};

// PREEMPT: 31 sites, 155 U, by muscle and side.
const PREEMPT_LAYOUT = [
  { muscle: 'corrugator', side: 'left', sites: 1, units: 5 },
  { muscle: 'corrugator', side: 'right', sites: 1, units: 5 },
  { muscle: 'procerus', side: 'midline', sites: 1, units: 5 },
  { muscle: 'frontalis', side: 'left', sites: 2, units: 10 },
  { muscle: 'frontalis', side: 'right', sites: 2, units: 10 },
  { muscle: 'temporalis', side: 'left', sites: 4, units: 20 },
  { muscle: 'temporalis', side: 'right', sites: 4, units: 20 },
  { muscle: 'occipitalis', side: 'left', sites: 3, units: 15 },
  { muscle: 'occipitalis', side: 'right', sites: 3, units: 15 },
  { muscle: 'cervical_paraspinal', side: 'left', sites: 2, units: 10 },
  { muscle: 'cervical_paraspinal', side: 'right', sites: 2, units: 10 },
  { muscle: 'trapezius', side: 'left', sites: 3, units: 15 },
  { muscle: 'trapezius', side: 'right', sites: 3, units: 15 },
];
const FTP_MAX_SITES = 8;
const FTP_MAX_UNITS = 40;
const SESSION_MAX_UNITS = 195;
const SESSION_MAX_SITES = 39;
const WINDOW_MAX_UNITS = 400;
const WINDOW_DAYS = 90;
const INTERVAL_DAYS = 84;

// --- small helpers ----------------------------------------------------------------------------

// "155" or "2.5", as printf("%.10g") writes units in messages.
const fmtUnits = (n) => String(Number(n.toPrecision(10)));
// std::round: halves away from zero.
const round1 = (x) => (Math.sign(x) * Math.round(Math.abs(x) * 10)) / 10;

const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATE_TIME_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:Z|([+-])(\d{2}):(\d{2}))$/;

function daysInMonth(y, m) {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1];
}

// Days since 1970-01-01, or null when not a real calendar date.
function civilDays(ys, ms, ds) {
  const y = +ys, m = +ms, d = +ds;
  if (y < 1900 || m < 1 || m > 12 || d < 1 || d > daysInMonth(y, m)) return null;
  return Date.UTC(y, m - 1, d) / 86400000;
}

function parseDate(text) {
  const m = DATE_RE.exec(text);
  if (!m) return null;
  const days = civilDays(m[1], m[2], m[3]);
  return days === null ? null : { text, days };
}

function parseDateTime(text) {
  const m = DATE_TIME_RE.exec(text);
  if (!m) return null;
  const days = civilDays(m[1], m[2], m[3]);
  const hh = +m[4], mm = +m[5], ss = +m[6];
  if (days === null || hh > 23 || mm > 59 || ss > 60) return null;
  let offset = 0;
  if (m[8]) {
    const oh = +m[9], om = +m[10];
    if (oh > 23 || om > 59) return null;
    offset = (oh * 60 + om) * (m[8] === '-' ? -1 : 1);
  }
  return {
    text,
    days, // the local calendar date at the clinic
    utc: days * 86400 + hh * 3600 + mm * 60 + ss - offset * 60,
    nanos: m[7] ? +m[7].padEnd(9, '0') : 0,
  };
}

const isBefore = (a, b) => a.utc < b.utc || (a.utc === b.utc && a.nanos < b.nanos);
const isoOfDays = (days) => new Date(days * 86400000).toISOString().slice(0, 10);

function urnUuid(type, system, value) {
  const h = crypto.createHash('sha1').update(`${type}|${system}|${value}`).digest('hex');
  const variant = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
  // RFC 4122 layout with version 8 (custom, name-derived) and the RFC variant, as the C++ writes.
  return `urn:uuid:${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-` +
    `${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

// A token search value as FHIR search escapes it (\ before , | $ \) and then percent-encoded.
const searchValue = (v) => encodeURIComponent(v.replace(/[\\,|$]/g, (c) => `\\${c}`))
  .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
const tokenQuery = (type, system, value) =>
  `${type === 'Provenance' ? '_tag' : 'identifier'}=${searchValue(system)}|${searchValue(value)}`;
const conditionalRef = (type, recordId, role) => `${type}?${tokenQuery(type, SYS.resource, `${recordId}/${role}`)}`;
const ref = (url) => ({ reference: url });

function validNpi(npi) {
  let sum = 24; // the prefix 80840
  for (let i = 8; i >= 0; --i) {
    let d = npi.charCodeAt(i) - 48;
    if ((8 - i) % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10 === npi.charCodeAt(9) - 48;
}

// 10-digit dashed (4-4-2, 5-3-2, 5-4-1) or 11 digits -> 11 digits; null otherwise.
function normalizeNdc(ndc) {
  if (/^\d{11}$/.test(ndc)) return ndc;
  const m = /^(\d+)-(\d+)-(\d+)$/.exec(ndc);
  if (!m) return null;
  const shape = `${m[1].length}-${m[2].length}-${m[3].length}`;
  if (shape === '4-4-2') return `0${m[1]}${m[2]}${m[3]}`;
  if (shape === '5-3-2') return `${m[1]}0${m[2]}${m[3]}`;
  if (shape === '5-4-1') return `${m[1]}${m[2]}0${m[3]}`;
  return null;
}

// --- checking a record ------------------------------------------------------------------------

class Rejected extends Error {
  constructor(path, message) {
    super(message);
    this.path = path;
  }
}
const reject = (path, message) => { throw new Rejected(path, message); };

// The field's value; undefined when absent (rejected if required); null is rejected.
function field(o, name, at, required) {
  const v = o[name];
  if (v === undefined) {
    if (required) reject(`${at}.${name}`, 'is required');
    return undefined;
  }
  if (v === null) reject(`${at}.${name}`, 'must not be null (leave the field out instead)');
  return v;
}
function knownFields(o, at, known) {
  for (const k in o) if (!known.has(k)) reject(`${at}.${k}`, 'unknown field (not in clinic record v1)');
}
function str(o, name, at, required) {
  const v = field(o, name, at, required);
  if (v === undefined) return v;
  if (typeof v !== 'string') reject(`${at}.${name}`, 'must be a string');
  if (v.trim() === '') reject(`${at}.${name}`, 'must not be empty');
  return v;
}
function num(o, name, at, required) {
  const v = field(o, name, at, required);
  if (v !== undefined && typeof v !== 'number') reject(`${at}.${name}`, 'must be a number');
  return v;
}
function int(o, name, at, required, min, max = Infinity) {
  const v = field(o, name, at, required);
  if (v === undefined) return v;
  if (!Number.isInteger(v)) reject(`${at}.${name}`, 'must be a whole number');
  if (v < min || v > max) {
    reject(`${at}.${name}`, max === Infinity ? `must be >= ${min}` : `must be between ${min} and ${max}`);
  }
  return v;
}
function bool(o, name, at, required) {
  const v = field(o, name, at, required);
  if (v !== undefined && typeof v !== 'boolean') reject(`${at}.${name}`, 'must be true or false');
  return v;
}
function oneOf(o, name, at, required, allowed) {
  const v = field(o, name, at, required);
  if (v !== undefined && !allowed.includes(v)) reject(`${at}.${name}`, `must be one of: ${allowed.join(', ')}`);
  return v;
}
function date(o, name, at, required) {
  const v = field(o, name, at, required);
  if (v === undefined) return null;
  const d = typeof v === 'string' ? parseDate(v) : null;
  if (!d) reject(`${at}.${name}`, 'must be a calendar date YYYY-MM-DD');
  return d;
}
function dateTime(o, name, at, required) {
  const v = field(o, name, at, required);
  if (v === undefined) return null;
  const d = typeof v === 'string' ? parseDateTime(v) : null;
  if (!d) reject(`${at}.${name}`, 'must be an RFC 3339 date-time with seconds and an offset');
  return d;
}
function object(o, name, at, required) {
  const v = field(o, name, at, required);
  if (v !== undefined && (typeof v !== 'object' || Array.isArray(v))) reject(`${at}.${name}`, 'must be an object');
  return v;
}
function array(o, name, at, required) {
  const v = field(o, name, at, required);
  if (v !== undefined && !Array.isArray(v)) reject(`${at}.${name}`, 'must be an array');
  return v;
}
function objectItem(item, at) {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) reject(at, 'must be an object');
}

const RECORD_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
function recordRef(o, name, at, required) {
  const v = str(o, name, at, required);
  if (v !== undefined && !RECORD_ID_RE.test(v)) {
    reject(`${at}.${name}`, 'must be 1-64 characters of A-Z a-z 0-9 . _ -');
  }
  return v;
}

function checkName(owner, at) {
  const name = object(owner, 'name', at, true);
  const here = `${at}.name`;
  knownFields(name, here, FIELDS.name);
  str(name, 'family', here, true);
  const given = array(name, 'given', here, true);
  if (given.length === 0) reject(`${here}.given`, 'must list at least one entry');
  given.forEach((g, i) => {
    if (typeof g !== 'string' || g === '') reject(`${here}.given[${i}]`, 'must be a non-empty string');
  });
}

function checkEnvelope(r, kind, rec) {
  rec.revision = int(r, 'revision', kind, false, 1) ?? 1;
  rec.status = oneOf(r, 'status', kind, false, STATUSES) ?? 'final';
  rec.recordedAt = dateTime(r, 'recorded_at', kind, true).text;

  const p = object(r, 'patient', kind, true);
  const pAt = `${kind}.patient`;
  knownFields(p, pAt, FIELDS.patient);
  str(p, 'mrn', pAt, true);
  checkName(p, pAt);
  date(p, 'birth_date', pAt, true);
  oneOf(p, 'sex', pAt, true, SEXES);
  str(p, 'phone', pAt, false);
  str(p, 'email', pAt, false);
  if (oneOf(p, 'phone_use', pAt, false, CONTACT_USES) !== undefined && p.phone === undefined) {
    reject(`${pAt}.phone_use`, 'is given without phone');
  }
  if (oneOf(p, 'email_use', pAt, false, CONTACT_USES) !== undefined && p.email === undefined) {
    reject(`${pAt}.email_use`, 'is given without email');
  }
  const a = object(p, 'address', pAt, false);
  if (a !== undefined) {
    knownFields(a, `${pAt}.address`, FIELDS.address);
    if (Object.keys(a).length === 0) reject(`${pAt}.address`, 'must give at least one of line, city, state, postal_code, country');
  }
  const race = array(p, 'race', pAt, false);
  if (race !== undefined) {
    race.forEach((v, i) => { if (!RACES.includes(v)) reject(`${pAt}.race[${i}]`, 'is not an OMB race category'); });
    if (race.length > 1 && (race.includes('unknown') || race.includes('declined'))) {
      reject(`${pAt}.race`, 'unknown or declined must stand alone');
    }
  }
  oneOf(p, 'ethnicity', pAt, false, ETHNICITIES);
  const language = str(p, 'language', pAt, false);
  if (language !== undefined && !/^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(language)) {
    reject(`${pAt}.language`, 'must be a BCP-47 language tag such as en or es-MX');
  }

  const c = object(r, 'clinician', kind, true);
  const cAt = `${kind}.clinician`;
  knownFields(c, cAt, FIELDS.clinician);
  const npi = str(c, 'npi', cAt, true);
  if (!/^\d{10}$/.test(npi)) reject(`${cAt}.npi`, 'must be 10 digits');
  if (!validNpi(npi)) reject(`${cAt}.npi`, 'check digit is not valid (Luhn with prefix 80840)');
  checkName(c, cAt);
  str(c, 'credentials', cAt, false);

  const v = object(r, 'visit', kind, true);
  const vAt = `${kind}.visit`;
  knownFields(v, vAt, FIELDS.visit);
  rec.start = dateTime(v, 'start', vAt, true);
  rec.end = dateTime(v, 'end', vAt, false);
  if (rec.end && isBefore(rec.end, rec.start)) reject(`${vAt}.end`, 'must not be before visit.start');
  str(v, 'location', vAt, false);

  str(r, 'notes', kind, false);
  object(r, 'extra', kind, false);
  knownFields(r, kind, KIND_FIELDS[kind]);
}

function checkDayCounts(r, kind) {
  const h = int(r, 'headache_days_per_month', kind, true, 0, 31);
  const m = int(r, 'migraine_days_per_month', kind, true, 0, 31);
  if (m > h) reject(`${kind}.migraine_days_per_month`, 'must not exceed headache_days_per_month');
}

function checkScores(r, kind) {
  const s = object(r, 'scores', kind, false);
  if (s === undefined) return;
  const at = `${kind}.scores`;
  knownFields(s, at, FIELDS.scores);
  int(s, 'midas', at, false, 0, 270);
  int(s, 'hit6', at, false, 36, 78);
}

function checkConsultation(r) {
  const k = 'consultation';
  checkDayCounts(r, k);
  int(r, 'months_at_frequency', k, true, 0);
  const hours = num(r, 'headache_hours_per_day', k, false);
  if (hours !== undefined && (hours < 0 || hours > 24)) {
    reject(`${k}.headache_hours_per_day`, 'must be between 0 and 24');
  }
  int(r, 'average_pain', k, false, 0, 10);
  bool(r, 'aura', k, false);
  int(r, 'acute_medication_days_per_month', k, false, 0, 31);
  const triggers = array(r, 'triggers', k, false);
  if (triggers) {
    triggers.forEach((t, i) => {
      if (typeof t !== 'string' || t === '') reject(`${k}.triggers[${i}]`, 'must be a non-empty string');
    });
  }
  const preventives = array(r, 'prior_preventives', k, false);
  if (preventives) {
    preventives.forEach((p, i) => {
      const at = `${k}.prior_preventives[${i}]`;
      objectItem(p, at);
      knownFields(p, at, FIELDS.preventive);
      str(p, 'medication', at, true);
      oneOf(p, 'drug_class', at, true, DRUG_CLASSES);
      int(p, 'weeks', at, false, 0);
      oneOf(p, 'outcome', at, true, OUTCOMES);
    });
  }
  checkScores(r, k);
  const code = str(r, 'diagnosis_code', k, true);
  if (!DIAGNOSES[code]) reject(`${k}.diagnosis_code`, 'must be an ICD-10-CM chronic migraine code');
  oneOf(r, 'decision', k, true, DECISIONS);
}

function checkInjections(r, name, required, followThePain) {
  const list = array(r, name, 'procedure', required);
  if (list === undefined) return [];
  if (!followThePain && list.length === 0) reject(`procedure.${name}`, 'must list at least one injection');
  list.forEach((inj, i) => {
    const at = `procedure.${name}[${i}]`;
    objectItem(inj, at);
    knownFields(inj, at, FIELDS.injection);
    const muscle = oneOf(inj, 'muscle', at, true, MUSCLES);
    if (followThePain && !FOLLOW_THE_PAIN_MUSCLES.includes(muscle)) {
      reject(`${at}.muscle`, 'follow-the-pain sites must be temporalis, occipitalis or trapezius');
    }
    oneOf(inj, 'side', at, true, SIDES);
    int(inj, 'sites', at, true, 1);
    if (num(inj, 'units', at, true) <= 0) reject(`${at}.units`, 'must be > 0');
  });
  return list;
}

function checkProcedure(r, rec) {
  const k = 'procedure';
  recordRef(r, 'consultation_record_id', k, false);
  int(r, 'cycle', k, false, 1);

  const product = object(r, 'product', k, true);
  const at = `${k}.product`;
  knownFields(product, at, FIELDS.product);
  const ndc11 = normalizeNdc(str(product, 'ndc', at, true));
  if (!ndc11) reject(`${at}.ndc`, 'must be an NDC: 10 digits with dashes (4-4-2, 5-3-2 or 5-4-1) or 11 digits');
  rec.product = PRODUCTS[ndc11];
  if (!rec.product) reject(`${at}.ndc`, 'is not an NDC of a Botox (onabotulinumtoxinA) 100 U or 200 U vial');
  str(product, 'lot', at, true);
  rec.expiration = date(product, 'expiration', at, true);
  const vialUnits = int(product, 'vial_units', at, true, 0);
  if (vialUnits !== 100 && vialUnits !== 200) reject(`${at}.vial_units`, 'must be 100 or 200');
  if (vialUnits !== rec.product.units) {
    reject(`${at}.vial_units`, `does not match the NDC, which is a ${rec.product.units} U vial`);
  }
  const vials = int(product, 'vials', at, false, 1) ?? 1;
  const ml = num(product, 'diluent_ml', at, false);
  if (ml !== undefined && ml <= 0) reject(`${at}.diluent_ml`, 'must be > 0');

  const protocol = oneOf(r, 'protocol', k, true, PROTOCOLS);
  rec.listed = r.injections !== undefined;
  rec.injections = checkInjections(r, 'injections', protocol === 'custom', false);
  rec.followThePain = checkInjections(r, 'follow_the_pain', false, true);
  let ftpSites = 0;
  let ftpUnits = 0;
  for (const inj of rec.followThePain) {
    ftpSites += inj.sites;
    ftpUnits += inj.units;
  }
  if (protocol === 'PREEMPT' && !rec.listed) {
    rec.injections = PREEMPT_LAYOUT; // absent injections mean the standard layout
    if (ftpSites > FTP_MAX_SITES || ftpUnits > FTP_MAX_UNITS) {
      reject(`${k}.follow_the_pain`, 'exceeds the PREEMPT follow-the-pain allowance of 8 sites and ' +
        `40 U (${ftpSites} sites, ${fmtUnits(ftpUnits)} U listed)`);
    }
  }

  const discarded = num(r, 'units_discarded', k, true);
  if (discarded < 0) reject(`${k}.units_discarded`, 'must be >= 0');
  const reactions = array(r, 'immediate_reactions', k, false);
  if (reactions) {
    reactions.forEach((x, i) => {
      const rat = `${k}.immediate_reactions[${i}]`;
      objectItem(x, rat);
      knownFields(x, rat, FIELDS.reaction);
      str(x, 'reaction', rat, true);
      oneOf(x, 'severity', rat, true, SEVERITIES);
    });
  }
  rec.nextDue = date(r, 'next_due', k, false);

  let units = ftpUnits;
  let sites = ftpSites;
  for (const inj of rec.injections) {
    units += inj.units;
    sites += inj.sites;
  }
  rec.administeredUnits = units;
  rec.administeredSites = sites;
  const capacity = vialUnits * vials;
  if (units + discarded > capacity + 1e-9) {
    reject(`${k}.units_discarded`, `administered ${fmtUnits(units)} U plus discarded ` +
      `${fmtUnits(discarded)} U exceed the ${fmtUnits(capacity)} U the vial(s) held`);
  }
}

function checkFollowUp(r) {
  const k = 'follow_up';
  recordRef(r, 'procedure_record_id', k, true);
  checkDayCounts(r, k);
  int(r, 'average_pain', k, false, 0, 10);
  checkScores(r, k);
  const effects = array(r, 'side_effects', k, false);
  if (effects) {
    effects.forEach((e, i) => {
      const at = `${k}.side_effects[${i}]`;
      objectItem(e, at);
      knownFields(e, at, FIELDS.sideEffect);
      oneOf(e, 'effect', at, true, SIDE_EFFECTS);
      oneOf(e, 'severity', at, true, SEVERITIES);
      date(e, 'onset', at, false);
      bool(e, 'resolved', at, false);
      str(e, 'description', at, false);
    });
  }
  oneOf(r, 'plan', k, true, PLANS);
  int(r, 'baseline_headache_days_per_month', k, false, 0, 31);
}

// The checked record: the parsed JSON (`raw`) plus what the mapping derives from it.
function checkRecord(r) {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) {
    reject('record', 'a clinic record must be a JSON object');
  }
  const kind = KINDS.includes(r.record_type) ? r.record_type : null;
  if (!kind) {
    reject('record.record_type', r.record_type === undefined ? 'is required'
      : 'must be one of: consultation, procedure, follow_up');
  }
  const rec = { raw: r, kind, id: recordRef(r, 'record_id', kind, true) };
  checkEnvelope(r, kind, rec);
  if (kind === 'consultation') checkConsultation(r);
  else if (kind === 'procedure') checkProcedure(r, rec);
  else checkFollowUp(r);
  rec.retracted = rec.status === 'entered-in-error';
  return rec;
}

// --- a patient's earlier records (as the CLI keeps them while mapping a file) -----------------

class PatientHistory {
  constructor() {
    this.records = [];
  }
  add(rec) {
    this.records.push(rec);
  }
  // The highest revision of recordId, or null; a retracted record counts as absent.
  find(recordId) {
    let best = null;
    for (const r of this.records) {
      if (r.id === recordId && (best === null || r.revision > best.revision)) best = r;
    }
    return best && !best.retracted ? best : null;
  }
  // The latest live revision of every record of this kind except excludedId.
  live(kind, excludedId) {
    return this.records.filter((r) => r.kind === kind && r.id !== excludedId && this.find(r.id) === r);
  }
}

// --- clinical assessments and flags -----------------------------------------------------------

function assessEligibility(r) {
  const hours = r.headache_hours_per_day;
  const meets = r.headache_days_per_month >= 15 && r.migraine_days_per_month >= 8 &&
    r.months_at_frequency > 3 && (hours === undefined || hours >= 4);
  const failed = new Set();
  for (const p of r.prior_preventives || []) {
    if (!COUNTED_CLASSES.has(p.drug_class)) continue;
    const failedTrial = p.outcome === 'ineffective' && p.weeks !== undefined && p.weeks * 7 >= 60;
    const couldNotTake = p.outcome === 'not-tolerated' || p.outcome === 'contraindicated';
    if (failedTrial || couldNotTake) failed.add(p.drug_class);
  }
  return { meets, failedClasses: failed.size };
}

function assessResponse(rec, history) {
  const f = rec.raw;
  const out = { reviewed: null, baseline: null, reduction: undefined, cycles: undefined };
  const reviewed = history.find(f.procedure_record_id);
  if (reviewed && reviewed.kind === 'procedure') out.reviewed = reviewed;

  let consult = null;
  const namedId = out.reviewed && out.reviewed.raw.consultation_record_id;
  if (namedId) {
    const named = history.find(namedId);
    if (named && named.kind === 'consultation') consult = named;
  }
  if (!consult) {
    const before = out.reviewed ? out.reviewed.start : rec.start;
    for (const c of history.live('consultation', rec.id)) {
      if (isBefore(before, c.start)) continue;
      if (!consult || isBefore(consult.start, c.start)) consult = c;
    }
  }
  if (consult) {
    out.baseline = { days: consult.raw.headache_days_per_month, consultationId: consult.id };
  } else if (f.baseline_headache_days_per_month !== undefined) {
    out.baseline = { days: f.baseline_headache_days_per_month, consultationId: null };
  }
  if (out.baseline && out.baseline.days > 0) {
    const base = out.baseline.days;
    out.reduction = round1(((base - f.headache_days_per_month) / base) * 100);
  }
  if (out.reviewed) {
    if (out.reviewed.raw.cycle !== undefined) {
      out.cycles = out.reviewed.raw.cycle;
    } else {
      let count = 1;
      for (const p of history.live('procedure', out.reviewed.id)) {
        if (!isBefore(out.reviewed.start, p.start)) ++count;
      }
      out.cycles = count;
    }
  }
  return out;
}

function matchesPreemptLayout(listed) {
  const totals = new Map();
  const add = (inj, sign) => {
    const key = `${inj.muscle}-${inj.side}`;
    const t = totals.get(key) || { sites: 0, units: 0 };
    t.sites += sign * inj.sites;
    t.units += sign * inj.units;
    totals.set(key, t);
  };
  for (const inj of PREEMPT_LAYOUT) add(inj, 1);
  for (const inj of listed) add(inj, -1);
  for (const t of totals.values()) if (t.sites !== 0 || Math.abs(t.units) > 1e-9) return false;
  return true;
}

const flag = (rule, level, detail, implicated) => ({ rule, level, detail, implicated });

function procedureFlags(rec, history) {
  const flags = [];
  const p = rec.raw;
  const visit = rec.start.days;
  if (visit > rec.expiration.days) {
    flags.push(flag('product-expired', 'high',
      `lot used on ${isoOfDays(visit)}, after its expiration date ${rec.expiration.text}`,
      [['Medication', 'medication'], ['Procedure', 'procedure']]));
  }
  const units = rec.administeredUnits;
  const sites = rec.administeredSites;
  if (units > SESSION_MAX_UNITS || sites > SESSION_MAX_SITES) {
    flags.push(flag('session-dose-above-maximum', 'high',
      `${fmtUnits(units)} U in ${sites} sites; the PREEMPT maximum is 195 U in 39 sites`,
      [['Procedure', 'procedure']]));
  }
  let previous = null;
  let windowUnits = units;
  const windowIds = [];
  for (const other of history.live('procedure', rec.id)) {
    const daysBefore = visit - other.start.days;
    if (daysBefore < 0) continue;
    if (!previous || other.start.days > previous.start.days) previous = other;
    if (daysBefore < WINDOW_DAYS) {
      windowUnits += other.administeredUnits;
      windowIds.push(other.id);
    }
  }
  if (windowUnits > WINDOW_MAX_UNITS) {
    flags.push(flag('cumulative-dose-above-maximum', 'high',
      `${fmtUnits(windowUnits)} U within 90 days (this session and ${windowIds.sort().join(', ')}); ` +
        'the label maximum is 400 U in 3 months',
      [['Procedure', 'procedure']]));
  }
  if (previous && visit - previous.start.days < INTERVAL_DAYS) {
    flags.push(flag('sessions-too-close', 'moderate',
      `${visit - previous.start.days} days after injection session ${previous.id}; ` +
        'PREEMPT sessions are 12 weeks (84 days) apart',
      [['Procedure', 'procedure']]));
  }
  if (p.protocol === 'PREEMPT' && rec.listed && !matchesPreemptLayout(rec.injections)) {
    let listedUnits = 0;
    let listedSites = 0;
    for (const inj of rec.injections) {
      listedUnits += inj.units;
      listedSites += inj.sites;
    }
    flags.push(flag('preempt-deviation', 'low',
      `fixed sites listed: ${fmtUnits(listedUnits)} U in ${listedSites} sites; ` +
        'PREEMPT is 155 U in 31 sites (5 U per site) by muscle and side',
      [['Procedure', 'procedure']]));
  }
  return flags;
}

function consultationFlags(rec) {
  const c = rec.raw;
  if (c.decision !== 'recommend-botox') return [];
  const flags = [];
  const e = assessEligibility(c);
  if (!e.meets) {
    let detail = `${c.headache_days_per_month} headache days/month ` +
      `(${c.migraine_days_per_month} with migraine features) for ${c.months_at_frequency} months`;
    if (c.headache_hours_per_day !== undefined) detail += `, ${fmtUnits(c.headache_hours_per_day)} h/day`;
    detail += '; chronic migraine needs >= 15 days (>= 8 migraine) for > 3 months, >= 4 h/day';
    flags.push(flag('criteria-not-met', 'moderate', detail, [['Observation', 'observation/eligibility']]));
  }
  if (e.failedClasses < 2) {
    flags.push(flag('preventives-not-met', 'moderate',
      `${e.failedClasses} oral preventive class(es) tried and failed; payers require >= 2, ` +
        'each for >= 60 days unless not tolerated or contraindicated',
      [['Observation', 'observation/eligibility']]));
  }
  return flags;
}

function followUpFlags(rec, response) {
  const f = rec.raw;
  const flags = [];
  if (response.reduction !== undefined && response.cycles !== undefined && response.cycles >= 2 &&
      response.reduction < 30) {
    flags.push(flag('insufficient-response', 'moderate',
      `${response.reduction.toFixed(1)}% fewer headache days than baseline after ` +
        `${response.cycles} cycles; NICE and EHF stop treatment below 30% after 2 cycles`,
      [['Observation', 'observation/headache-day-reduction']]));
  }
  const spread = [];
  const effects = [];
  (f.side_effects || []).forEach((e, i) => {
    if (e.effect === 'dysphagia' || e.effect === 'breathing-difficulty') {
      spread.push(['AdverseEvent', `adverse-event/side-effect/${i}`]);
      if (!effects.includes(e.effect)) effects.push(e.effect);
    }
  });
  if (spread.length) {
    flags.push(flag('possible-toxin-spread', 'high',
      `${effects.join(' and ')} reported after injection session ${f.procedure_record_id}: ` +
        'possible distant spread of toxin effect (boxed warning)',
      spread));
  }
  return flags;
}

// --- building the Bundle ----------------------------------------------------------------------

// What every resource builder of one record needs: the record, the entries so far, and the
// fullUrls of the shared resources and the encounter.
function newContext(rec, history) {
  return {
    rec,
    history,
    entries: [],
    own: [], // fullUrls of this record's own resources: Provenance targets, DetectedIssue implicated
    upsert: rec.revision > 1 || rec.status !== 'final',
    patient: '', practitioner: '', organization: '', device: '', encounter: '',
  };
}

// Provenance and AdverseEvent are matched on a tag (the searchable token they have); every type
// but Provenance also carries the identifier.
const MATCHED_BY_TAG = new Set(['Provenance', 'AdverseEvent']);
const RETRACTION_TAG = CONCEPT_ENTRY['retraction-tag/entered-in-error'].codings[0];

// Adds an entry and returns it; the caller fills entry.resource. `mode`: POST or PUT.
function addEntry(ctx, type, system, value, mode, role = '', retractionTag = false) {
  const query = tokenQuery(type, system, value);
  const fullUrl = urnUuid(type, system, value);
  const request = mode === 'POST'
    ? { method: 'POST', url: type, ifNoneExist: query }
    : { method: 'PUT', url: `${type}?${query}` };
  const resource = { resourceType: type };
  const profile = usCoreProfile(type, role);
  const tag = [];
  if (MATCHED_BY_TAG.has(type)) tag.push({ system, code: value });
  if (retractionTag) tag.push(RETRACTION_TAG);
  if (profile || tag.length) {
    resource.meta = {};
    if (profile) resource.meta.profile = [profile];
    if (tag.length) resource.meta.tag = tag;
  }
  if (type !== 'Provenance') resource.identifier = type === 'AdverseEvent' ? { system, value } : [{ system, value }];
  const entry = { fullUrl, resource, request };
  ctx.entries.push(entry);
  return entry;
}

// This record's own resource for `role` (create for a first revision, upsert for an amendment;
// a retracted AdverseEvent, which has no status, carries the entered-in-error tag).
function ownResource(ctx, type, role) {
  const entry = addEntry(ctx, type, SYS.resource, `${ctx.rec.id}/${role}`, ctx.upsert ? 'PUT' : 'POST', role,
    ctx.rec.retracted && type === 'AdverseEvent');
  ctx.own.push(entry.fullUrl);
  return entry;
}

const status = (ctx, normal) => (ctx.rec.retracted ? 'entered-in-error' : normal);
const note = (text) => [{ text }];
const ucum = (value, unit, code) => ({ value, unit, system: SYS.ucum, code });

function humanName(n, suffix) {
  const name = { use: 'official', family: n.family, given: n.given };
  if (suffix !== undefined) name.suffix = [suffix];
  return [name];
}

function contactPoint(system, value, use) {
  const c = { system, value };
  if (use !== undefined) c.use = use;
  return c;
}

function ombExtension(url, prefix, values) {
  const extension = [];
  const text = [];
  for (const v of values) {
    const concept = CONCEPT_ENTRY[`${prefix}/${v}`];
    extension.push({ url: 'ombCategory', valueCoding: concept.codings[0] });
    text.push(concept.text ?? concept.codings[0].display);
  }
  extension.push({ url: 'text', valueString: text.join(', ') });
  return { url, extension };
}

function addSharedResources(ctx) {
  const { rec } = ctx;
  const org = addEntry(ctx, 'Organization', SYS.organization, CLINIC_ID, 'POST');
  ctx.organization = org.fullUrl;
  Object.assign(org.resource, { active: true, name: CLINIC_NAME });

  const device = addEntry(ctx, 'Device', SYS.device, 'migraine-connector', 'POST');
  ctx.device = device.fullUrl;
  Object.assign(device.resource, {
    status: 'active',
    deviceName: [{ name: 'migraine-connector', type: 'user-friendly-name' }],
    version: [{ value: CONNECTOR_VERSION }],
    owner: ref(ctx.organization),
  });

  const c = rec.raw.clinician;
  const practitioner = addEntry(ctx, 'Practitioner', SYS.npi, c.npi, 'POST');
  ctx.practitioner = practitioner.fullUrl;
  Object.assign(practitioner.resource, { active: true, name: humanName(c.name, c.credentials) });

  const p = rec.raw.patient;
  const patient = addEntry(ctx, 'Patient', SYS.mrn, p.mrn, 'POST');
  ctx.patient = patient.fullUrl;
  const r = patient.resource;
  if (p.race !== undefined || p.ethnicity !== undefined) {
    r.extension = [];
    if (p.race !== undefined) r.extension.push(ombExtension(EXT.race, 'race', p.race));
    if (p.ethnicity !== undefined) r.extension.push(ombExtension(EXT.ethnicity, 'ethnicity', [p.ethnicity]));
  }
  r.active = true;
  r.name = humanName(p.name);
  if (p.phone !== undefined || p.email !== undefined) {
    r.telecom = [];
    if (p.phone !== undefined) r.telecom.push(contactPoint('phone', p.phone, p.phone_use));
    if (p.email !== undefined) r.telecom.push(contactPoint('email', p.email, p.email_use));
  }
  r.gender = p.sex;
  r.birthDate = p.birth_date;
  if (p.address !== undefined) {
    const a = p.address;
    const address = {};
    if (a.line !== undefined && a.line.length) address.line = a.line;
    if (a.city !== undefined) address.city = a.city;
    if (a.state !== undefined) address.state = a.state;
    if (a.postal_code !== undefined) address.postalCode = a.postal_code;
    if (a.country !== undefined) address.country = a.country;
    r.address = [address];
  }
  if (p.language !== undefined) {
    r.communication = [{ language: { coding: [{ system: 'urn:ietf:bcp:47', code: p.language }] } }];
  }
  r.managingOrganization = ref(ctx.organization);
}

function period(rec) {
  const p = { start: rec.start.text };
  if (rec.end) p.end = rec.end.text;
  return p;
}

function addEncounter(ctx, typeKey, reason = '') {
  const { rec } = ctx;
  const e = ownResource(ctx, 'Encounter', 'encounter');
  ctx.encounter = e.fullUrl;
  const r = e.resource;
  r.status = status(ctx, 'finished');
  r.class = CONCEPT['encounter-class/ambulatory'].coding[0];
  r.type = [CONCEPT[typeKey]];
  r.subject = ref(ctx.patient);
  r.participant = [{
    type: [CONCEPT['encounter-participant/primary-performer']],
    period: period(rec),
    individual: ref(ctx.practitioner),
  }];
  r.period = period(rec);
  if (reason) r.reasonReference = [ref(reason)];
  if (rec.raw.visit.location !== undefined) r.location = [{ location: { display: rec.raw.visit.location } }];
  r.serviceProvider = ref(ctx.organization);
}

// An Observation with status, category, code, subject, encounter, time and performer; the caller
// adds value[x] and the rest.
function addObservation(ctx, role, codeKey) {
  const e = ownResource(ctx, 'Observation', role);
  Object.assign(e.resource, {
    status: status(ctx, 'final'),
    category: role === 'observation/midas' || role === 'observation/hit6'
      ? [CONCEPT['observation-category/survey'], CONCEPT['observation-category/functional-status']]
      : [CONCEPT['observation-category/survey']],
    code: CONCEPT[codeKey],
    subject: ref(ctx.patient),
    encounter: ref(ctx.encounter),
    effectiveDateTime: ctx.rec.start.text,
    performer: [ref(ctx.practitioner)],
  });
  return e;
}

function addIntegerObservation(ctx, key, value) {
  const e = addObservation(ctx, key, key);
  e.resource.valueInteger = value;
  return e.fullUrl;
}

function addDetectedIssues(ctx, flags) {
  for (const f of flags) {
    const key = `detected-issue/${f.rule}`;
    const r = ownResource(ctx, 'DetectedIssue', key).resource;
    r.status = status(ctx, 'final');
    r.code = CONCEPT[key];
    r.severity = f.level;
    r.patient = ref(ctx.patient);
    r.identifiedDateTime = ctx.rec.recordedAt;
    r.author = ref(ctx.device);
    // Only what this bundle holds: a retraction deletes AdverseEvents instead of writing them.
    const implicated = f.implicated
      .map(([type, role]) => urnUuid(type, SYS.resource, `${ctx.rec.id}/${role}`))
      .filter((url) => ctx.own.includes(url));
    if (implicated.length) r.implicated = implicated.map(ref);
    r.detail = f.detail;
  }
}

function addProvenance(ctx) {
  const { rec } = ctx;
  const r = addEntry(ctx, 'Provenance', SYS.provenance, `${rec.id}/r${rec.revision}`, 'POST').resource;
  r.target = ctx.own.map(ref);
  r.occurredDateTime = rec.start.text;
  r.recorded = rec.recordedAt;
  r.activity = CONCEPT[rec.retracted ? 'provenance-activity/nullify'
    : rec.revision > 1 ? 'provenance-activity/update' : 'provenance-activity/create'];
  r.agent = [
    { type: CONCEPT['provenance-agent/assembler'], who: ref(ctx.device), onBehalfOf: ref(ctx.organization) },
    { type: CONCEPT['provenance-agent/transmitter'], who: ref(ctx.device), onBehalfOf: ref(ctx.organization) },
    { type: CONCEPT['provenance-agent/author'], who: ref(ctx.practitioner), onBehalfOf: ref(ctx.organization) },
  ];
  r.entity = [{
    role: 'source',
    what: {
      identifier: { system: SYS.record, value: rec.id },
      display: `clinic record ${rec.id} revision ${rec.revision} (${rec.kind})`,
    },
  }];
}

// consultation -> Condition, work-up Observations, MedicationStatements, eligibility, ServiceRequest.
function addConsultation(ctx) {
  const { rec } = ctx;
  const c = rec.raw;
  addEncounter(ctx, 'encounter-type/consultation', urnUuid('Condition', SYS.resource, `${rec.id}/condition`));

  const dx = DIAGNOSES[c.diagnosis_code];
  const condition = ownResource(ctx, 'Condition', 'condition');
  const cr = condition.resource;
  cr.extension = [{ url: EXT.assertedDate, valueDateTime: rec.start.text }];
  if (!rec.retracted) cr.clinicalStatus = CONCEPT['condition-clinical/active'];
  cr.verificationStatus = CONCEPT[rec.retracted ? 'condition-verification/entered-in-error'
    : 'condition-verification/confirmed'];
  cr.category = [CONCEPT['condition-category/encounter-diagnosis']];
  cr.code = {
    coding: [{ system: SYS.icd10, code: c.diagnosis_code, display: dx.display }, ...dx.also],
    text: dx.display,
  };
  cr.subject = ref(ctx.patient);
  cr.encounter = ref(ctx.encounter);
  cr.recordedDate = rec.recordedAt;
  cr.recorder = ref(ctx.practitioner);
  cr.asserter = ref(ctx.practitioner);
  if (c.notes !== undefined) cr.note = note(c.notes);

  const evidence = [
    addIntegerObservation(ctx, 'observation/headache-days', c.headache_days_per_month),
    addIntegerObservation(ctx, 'observation/migraine-days', c.migraine_days_per_month),
  ];
  const months = addObservation(ctx, 'observation/months-at-frequency', 'observation/months-at-frequency');
  months.resource.valueQuantity = ucum(c.months_at_frequency, 'months', 'mo');
  evidence.push(months.fullUrl);
  if (c.headache_hours_per_day !== undefined) {
    const hours = addObservation(ctx, 'observation/headache-hours', 'observation/headache-hours');
    hours.resource.valueQuantity = ucum(c.headache_hours_per_day, 'hours per day', 'h/d');
    evidence.push(hours.fullUrl);
  }
  if (c.average_pain !== undefined) addIntegerObservation(ctx, 'observation/pain-severity', c.average_pain);
  if (c.scores?.midas !== undefined) addIntegerObservation(ctx, 'observation/midas', c.scores.midas);
  if (c.scores?.hit6 !== undefined) addIntegerObservation(ctx, 'observation/hit6', c.scores.hit6);
  if (c.acute_medication_days_per_month !== undefined) {
    addIntegerObservation(ctx, 'observation/acute-medication-days', c.acute_medication_days_per_month);
  }
  addObservation(ctx, 'observation/aura', 'observation/aura').resource.valueBoolean = c.aura ?? false;
  if (c.triggers && c.triggers.length) {
    addObservation(ctx, 'observation/triggers', 'observation/triggers').resource.component =
      c.triggers.map((t) => ({ code: CONCEPT['observation/trigger'], valueString: t }));
  }

  (c.prior_preventives || []).forEach((p, i) => addPriorPreventive(ctx, p, i));

  const e = assessEligibility(c);
  const elig = addObservation(ctx, 'observation/eligibility', 'observation/eligibility').resource;
  elig.valueCodeableConcept = CONCEPT[`decision/${c.decision}`];
  elig.derivedFrom = evidence.map(ref);
  elig.component = [
    { code: CONCEPT['observation/meets-chronic-migraine-criteria'], valueBoolean: e.meets },
    { code: CONCEPT['observation/failed-preventive-classes'], valueInteger: e.failedClasses },
  ];

  if (c.decision === 'recommend-botox') {
    const sr = ownResource(ctx, 'ServiceRequest', 'service-request/treatment-course').resource;
    Object.assign(sr, {
      status: status(ctx, 'active'),
      intent: 'plan',
      code: CONCEPT['procedure/chemodenervation'],
      subject: ref(ctx.patient),
      encounter: ref(ctx.encounter),
      occurrenceTiming: { repeat: { frequency: 1, period: 12, periodUnit: 'wk' } },
      authoredOn: rec.start.text,
      requester: ref(ctx.practitioner),
      reasonReference: [ref(condition.fullUrl)],
    });
  }
}

function addPriorPreventive(ctx, p, index) {
  const r = ownResource(ctx, 'MedicationStatement', `medication-statement/${index}`).resource;
  r.extension = [{ url: EXT.drugClass, valueCodeableConcept: CONCEPT[`drug-class/${p.drug_class}`] }];
  // Contraindicated drugs were never taken; ongoing ones still are.
  r.status = status(ctx, p.outcome === 'ongoing' ? 'active'
    : p.outcome === 'contraindicated' ? 'not-taken' : 'stopped');
  r.statusReason = [CONCEPT[`preventive-outcome/${p.outcome}`]];
  r.medicationCodeableConcept = { text: p.medication };
  r.subject = ref(ctx.patient);
  r.context = ref(ctx.encounter);
  r.dateAsserted = ctx.rec.start.text;
  r.informationSource = ref(ctx.practitioner);
  if (p.weeks !== undefined) r.dosage = [{ timing: { repeat: { boundsDuration: ucum(p.weeks, 'weeks', 'wk') } } }];
}

// Units and sites per muscle and side, fixed layout and follow-the-pain merged, in first-seen order.
function dosesBySite(rec) {
  const bySite = new Map();
  const add = (inj, followThePain) => {
    const key = `${inj.muscle}-${inj.side}`;
    let d = bySite.get(key);
    if (!d) {
      d = { muscle: inj.muscle, side: inj.side, sites: 0, units: 0, ftpSites: 0 };
      bySite.set(key, d);
    }
    d.sites += inj.sites;
    d.units += inj.units;
    if (followThePain) d.ftpSites += inj.sites;
  };
  for (const inj of rec.injections) add(inj, false);
  for (const inj of rec.followThePain) add(inj, true);
  return [...bySite.values()];
}

function bodySite(muscle, side) {
  const m = CONCEPT[`muscle/${muscle}`];
  const s = CONCEPT[`laterality/${side}`];
  return {
    extension: [{ url: EXT.laterality, valueCodeableConcept: s }],
    coding: m.coding,
    text: `${m.text}, ${s.text}`,
  };
}

// The consultation this session follows, when it was seen.
function consultationSeen(ctx) {
  const id = ctx.rec.raw.consultation_record_id;
  const consult = id !== undefined ? ctx.history.find(id) : null;
  return consult && consult.kind === 'consultation' ? consult : null;
}

// The consultation's Condition when it was seen, otherwise the reason as a concept.
function setReason(ctx, r) {
  const consult = consultationSeen(ctx);
  if (consult) {
    r.reasonReference = [ref(conditionalRef('Condition', consult.id, 'condition'))];
  } else {
    r.reasonCode = [CONCEPT['condition/chronic-migraine']];
  }
}

function addCharge(ctx, role, codeKey, quantity, modifierKey, procedureUrl, medicationUrl) {
  const r = ownResource(ctx, 'ChargeItem', role).resource;
  // R4 ChargeItem has no modifier element: the HCPCS modifier travels as an extension.
  if (modifierKey) r.extension = [{ url: EXT.billingModifier, valueCodeableConcept: CONCEPT[modifierKey] }];
  r.status = status(ctx, 'billable');
  r.code = CONCEPT[codeKey];
  r.subject = ref(ctx.patient);
  r.context = ref(ctx.encounter);
  r.occurrenceDateTime = ctx.rec.start.text;
  r.performer = [{ actor: ref(ctx.practitioner) }];
  r.quantity = { value: quantity };
  r.enteredDate = ctx.rec.recordedAt;
  r.service = [ref(procedureUrl)];
  if (medicationUrl) r.productReference = ref(medicationUrl);
}

// procedure -> Medication, Procedure, MedicationAdministration per muscle and side, ChargeItems,
// AdverseEvents for immediate reactions, the next session's ServiceRequest.
function addProcedure(ctx) {
  const { rec } = ctx;
  const p = rec.raw;
  const doses = dosesBySite(rec);
  const consult = consultationSeen(ctx);
  addEncounter(ctx, 'encounter-type/procedure', consult ? conditionalRef('Condition', consult.id, 'condition') : '');

  const med = ownResource(ctx, 'Medication', 'medication');
  Object.assign(med.resource, {
    code: {
      coding: [{ system: SYS.ndc, code: rec.product.ndc10, display: rec.product.display }],
      text: rec.product.display,
    },
    status: status(ctx, 'active'),
    batch: { lotNumber: p.product.lot, expirationDate: rec.expiration.text },
  });
  const medication = med.fullUrl;

  const proc = ownResource(ctx, 'Procedure', 'procedure');
  const pr = proc.resource;
  if (consult && consult.raw.decision === 'recommend-botox') {
    pr.basedOn = [ref(conditionalRef('ServiceRequest', consult.id, 'service-request/treatment-course'))];
  }
  pr.status = status(ctx, 'completed');
  pr.code = CONCEPT['procedure/chemodenervation'];
  pr.subject = ref(ctx.patient);
  pr.encounter = ref(ctx.encounter);
  pr.performedPeriod = period(rec);
  pr.recorder = ref(ctx.practitioner);
  pr.performer = [{ actor: ref(ctx.practitioner) }];
  setReason(ctx, pr);
  pr.bodySite = doses.map((d) => bodySite(d.muscle, d.side));
  if (p.notes !== undefined) pr.note = note(p.notes);
  pr.usedReference = [ref(medication)];

  for (const d of doses) {
    const r = ownResource(ctx, 'MedicationAdministration', `administration/${d.muscle}-${d.side}`).resource;
    let text = `${fmtUnits(d.units)} U in ${d.sites} site(s)`;
    if (d.ftpSites > 0) text += `, ${d.ftpSites} of them follow-the-pain`;
    Object.assign(r, {
      status: status(ctx, 'completed'),
      medicationReference: ref(medication),
      subject: ref(ctx.patient),
      context: ref(ctx.encounter),
      effectiveDateTime: rec.start.text,
      performer: [{ actor: ref(ctx.practitioner) }],
      partOf: [ref(proc.fullUrl)],
      dosage: { text, site: bodySite(d.muscle, d.side), dose: ucum(d.units, 'U', "[USP'U]") },
    });
  }

  // 64615 once per session; J0585 per unit administered; discarded units with JW, or JZ for none.
  addCharge(ctx, 'charge/cpt-64615', 'billing/cpt-64615', 1, '', proc.fullUrl, '');
  const wasted = p.units_discarded > 0;
  addCharge(ctx, 'charge/j0585-administered', 'billing/j0585', rec.administeredUnits,
    wasted ? '' : 'billing-modifier/jz', proc.fullUrl, medication);
  if (wasted) {
    addCharge(ctx, 'charge/j0585-discarded', 'billing/j0585', p.units_discarded, 'billing-modifier/jw',
      proc.fullUrl, medication);
  }

  const base = CONCEPT['adverse-event/immediate-reaction'];
  (p.immediate_reactions || []).forEach((x, i) => {
    const ae = ownResource(ctx, 'AdverseEvent', `adverse-event/immediate/${i}`);
    Object.assign(ae.resource, {
      actuality: 'actual',
      event: { coding: base.coding, text: x.reaction },
      subject: ref(ctx.patient),
      encounter: ref(ctx.encounter),
      date: rec.start.text,
      recordedDate: rec.recordedAt,
      recorder: ref(ctx.practitioner),
      severity: CONCEPT[`adverse-event-severity/${x.severity}`],
      suspectEntity: [{ instance: ref(medication) }],
    });
  });

  const next = ownResource(ctx, 'ServiceRequest', 'service-request/next-injection').resource;
  Object.assign(next, {
    status: status(ctx, 'active'),
    intent: 'plan',
    code: CONCEPT['procedure/chemodenervation'],
    subject: ref(ctx.patient),
    encounter: ref(ctx.encounter),
    occurrenceDateTime: rec.nextDue ? rec.nextDue.text : isoOfDays(rec.start.days + INTERVAL_DAYS),
    authoredOn: rec.recordedAt,
    requester: ref(ctx.practitioner),
  });
  setReason(ctx, next);
}

// follow_up -> Observations, the response (percent change from baseline), the plan, AdverseEvents.
function addFollowUp(ctx, response) {
  const { rec } = ctx;
  const f = rec.raw;
  // Conditional references to what the reviewed procedure record created.
  const procedure = conditionalRef('Procedure', f.procedure_record_id, 'procedure');
  const suspects = [];
  if (response.reviewed) {
    const roles = [];
    for (const inj of [...response.reviewed.injections, ...response.reviewed.followThePain]) {
      const role = `administration/${inj.muscle}-${inj.side}`;
      if (!roles.includes(role)) roles.push(role);
    }
    for (const role of roles) suspects.push(conditionalRef('MedicationAdministration', f.procedure_record_id, role));
  } else {
    suspects.push(conditionalRef('Medication', f.procedure_record_id, 'medication'));
  }

  addEncounter(ctx, 'encounter-type/follow-up', procedure);
  const headacheDays = addIntegerObservation(ctx, 'observation/headache-days', f.headache_days_per_month);
  addIntegerObservation(ctx, 'observation/migraine-days', f.migraine_days_per_month);
  if (f.average_pain !== undefined) addIntegerObservation(ctx, 'observation/pain-severity', f.average_pain);
  if (f.scores?.midas !== undefined) addIntegerObservation(ctx, 'observation/midas', f.scores.midas);
  if (f.scores?.hit6 !== undefined) addIntegerObservation(ctx, 'observation/hit6', f.scores.hit6);

  if (response.reduction !== undefined) {
    const r = addObservation(ctx, 'observation/headache-day-reduction', 'observation/headache-day-reduction').resource;
    r.valueQuantity = ucum(response.reduction, '%', '%');
    r.focus = [ref(procedure)];
    const derived = [ref(headacheDays)];
    if (response.baseline.consultationId) {
      derived.push(ref(conditionalRef('Observation', response.baseline.consultationId, 'observation/headache-days')));
    }
    r.derivedFrom = derived;
    r.component = [
      { code: CONCEPT['observation/baseline-headache-days'], valueInteger: response.baseline.days },
      { code: CONCEPT['observation/headache-days'], valueInteger: f.headache_days_per_month },
    ];
    if (response.cycles !== undefined) {
      r.component.push({ code: CONCEPT['observation/treatment-cycles'], valueInteger: response.cycles });
    }
  }

  const plan = addObservation(ctx, 'observation/treatment-plan', 'observation/treatment-plan').resource;
  plan.valueCodeableConcept = CONCEPT[`plan/${f.plan}`];
  plan.focus = [ref(procedure)];
  if (f.notes !== undefined) plan.note = note(f.notes);

  (f.side_effects || []).forEach((e, i) => {
    const ae = ownResource(ctx, 'AdverseEvent', `adverse-event/side-effect/${i}`);
    const effect = CONCEPT[`side-effect/${e.effect}`];
    const r = ae.resource;
    r.actuality = 'actual';
    r.event = { coding: effect.coding, text: e.description !== undefined ? e.description : effect.text };
    r.subject = ref(ctx.patient);
    r.encounter = ref(ctx.encounter);
    if (e.onset !== undefined) r.date = e.onset;
    r.recordedDate = rec.recordedAt;
    r.recorder = ref(ctx.practitioner);
    r.severity = CONCEPT[`adverse-event-severity/${e.severity}`];
    if (e.resolved !== undefined) {
      r.outcome = CONCEPT[e.resolved ? 'adverse-event-outcome/resolved' : 'adverse-event-outcome/ongoing'];
    }
    r.suspectEntity = suspects.map((s) => ({ instance: ref(s) }));
  });
}

// One checked record -> { bundle, flags, waitsFor }.
function mapRecord(rec, history) {
  const ctx = newContext(rec, history);
  let flags;
  let waitsFor = null;
  addSharedResources(ctx);
  if (rec.kind === 'consultation') {
    flags = consultationFlags(rec);
    addConsultation(ctx);
  } else if (rec.kind === 'procedure') {
    flags = procedureFlags(rec, history);
    addProcedure(ctx);
  } else {
    const response = assessResponse(rec, history);
    if (!response.reviewed) waitsFor = rec.raw.procedure_record_id;
    flags = followUpFlags(rec, response);
    addFollowUp(ctx, response);
  }
  addDetectedIssues(ctx, flags);
  addProvenance(ctx);
  const bundle = {
    resourceType: 'Bundle',
    identifier: { system: SYS.record, value: `${rec.id}/r${rec.revision}` },
    type: 'transaction',
    entry: ctx.entries,
  };
  return { bundle, flags, waitsFor };
}

// --- main: read, check, map, write ------------------------------------------------------------

// Blocking write of the whole text (stdout may be a non-blocking pipe).
function writeAll(fd, text) {
  const buf = Buffer.from(text, 'utf8');
  let offset = 0;
  while (offset < buf.length) {
    try {
      offset += fs.writeSync(fd, buf, offset, buf.length - offset);
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e;
    }
  }
}

function main() {
  const path = process.argv[2];
  if (!path || process.argv.length > 3) {
    process.stderr.write('usage: node tests/bench/node_transformer.mjs RECORDS.ndjson|RECORD.json\n');
    process.exit(64);
  }
  const text = fs.readFileSync(path, 'utf8');
  const ndjson = path.endsWith('.ndjson');
  const lines = ndjson ? text.split('\n') : [text]; // a .json file is one record, even when empty

  const histories = new Map(); // MRN -> PatientHistory
  const FLUSH_AT = 1 << 20;
  let out = [];
  let outSize = 0;
  const err = [];
  let rejected = 0;

  lines.forEach((line, i) => {
    if (ndjson && line.trim() === '') return;
    let raw;
    let label = `line ${i + 1}`;
    try {
      raw = JSON.parse(line);
      if (raw && typeof raw.record_id === 'string' && RECORD_ID_RE.test(raw.record_id)) label = raw.record_id;
      const rec = checkRecord(raw);
      const mrn = raw.patient.mrn;
      let history = histories.get(mrn);
      if (!history) histories.set(mrn, (history = new PatientHistory()));
      const { bundle, flags, waitsFor } = mapRecord(rec, history);
      const json = JSON.stringify(bundle);
      out.push(json);
      outSize += json.length + 1;
      if (outSize >= FLUSH_AT) {
        out.push('');
        writeAll(1, out.join('\n'));
        out = [];
        outSize = 0;
      }
      for (const f of flags) err.push(`${label}: flag ${f.level} ${f.rule}: ${f.detail}`);
      if (waitsFor) err.push(`${label}: waits for procedure ${waitsFor}, which is not in the history given`);
      history.add(rec);
    } catch (e) {
      if (e instanceof Rejected) err.push(`${label}: ${e.path}: ${e.message}`);
      else if (e instanceof SyntaxError) err.push(`${label}: ${e.message}`);
      else throw e;
      ++rejected;
    }
  });
  if (out.length) {
    out.push('');
    writeAll(1, out.join('\n'));
  }
  if (err.length) writeAll(2, `${err.join('\n')}\n`);
  process.exitCode = rejected ? 2 : 0;
}

main();
