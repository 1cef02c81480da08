// Test helper: clinic records for integration tests and benchmarks, as NDJSON on stdout.
// node make-records.mjs --patients N [--prefix P] [--phi] [--kinds cpf]
//   each patient gets a consultation (c), an injection session (p) and a follow-up (f), built
//   from mappings/examples with the patient's own MRN and record ids P-C-i, P-P-i, P-F-i.
//   --phi  distinctive patient data that a PHI-leak test can search for (see PHI_MARKERS below)
//   --ehr-owned  instead of records, the EHR's own Patient (by MRN) and Practitioner (by NPI)
//          resources for those patients, for the sandbox's --preload (an EHR that creates none)
import fs from 'node:fs';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const patients = Number(option('--patients', '1'));
const prefix = option('--prefix', 'T');
const kinds = option('--kinds', 'cpf');
const phi = args.includes('--phi');
const ehrOwned = args.includes('--ehr-owned');
const identifierBase = 'https://clinic.example/fhir';  // mappings/mapping_config.h's default
const dir = new URL('../../mappings/examples/', import.meta.url);
const load = (kind) => JSON.parse(fs.readFileSync(new URL(`${kind}.json`, dir), 'utf8'));

// Strings no log, metric or API answer may contain (the test greps for each).
export const PHI_MARKERS = ['Zebulonquux', 'Ottoline', 'MRNZQX', '1931-07-19', 'ottoline.zq', '555-0199'];

const lines = [];
for (let i = 0; i < patients; i++) {
  const c = load('consultation'), p = load('procedure'), f = load('follow_up');
  c.record_id = `${prefix}-C-${i}`;
  p.record_id = `${prefix}-P-${i}`;
  f.record_id = `${prefix}-F-${i}`;
  p.consultation_record_id = c.record_id;
  f.procedure_record_id = p.record_id;
  for (const r of [c, p, f]) {
    if (phi) {
      r.patient.mrn = `MRNZQX${i}77`;
      r.patient.name = { family: 'Zebulonquux', given: ['Ottoline'] };
      r.patient.birth_date = '1931-07-19';
      if (r === c) {
        r.patient.phone = '+1-555-0199';
        r.patient.email = 'ottoline.zq@example.org';
      }
    } else {
      r.patient.mrn = `MRN-${prefix}-${i}`;
    }
  }
  if (ehrOwned) {
    // As the EHR registered them: its own ids and its own copy of the demographics.
    lines.push(JSON.stringify({
      resourceType: 'Patient', id: `ehr-${prefix}-${i}`.toLowerCase(),
      identifier: [{ system: `${identifierBase}/mrn`, value: c.patient.mrn }],
      name: [{ family: c.patient.name.family, given: c.patient.name.given }],
      gender: c.patient.sex, birthDate: c.patient.birth_date,
    }));
    if (i === 0) {
      lines.push(JSON.stringify({
        resourceType: 'Practitioner', id: `ehr-npi-${c.clinician.npi}`,
        identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: c.clinician.npi }],
        name: [{ family: c.clinician.name.family, given: c.clinician.name.given }],
      }));
    }
    continue;
  }
  for (const [kind, r] of [['c', c], ['p', p], ['f', f]]) if (kinds.includes(kind)) lines.push(JSON.stringify(r));
}
if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(lines.join('\n') + '\n');
