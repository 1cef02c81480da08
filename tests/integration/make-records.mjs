// Test helper: clinic records for integration tests and benchmarks, as NDJSON on stdout.
// node make-records.mjs --patients N [--prefix P] [--phi] [--kinds cpf]
//   each patient gets a consultation (c), an injection session (p) and a follow-up (f), built
//   from mappings/examples with the patient's own MRN and record ids P-C-i, P-P-i, P-F-i.
//   --phi  distinctive patient data that a PHI-leak test can search for (see PHI_MARKERS below)
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
  for (const [kind, r] of [['c', c], ['p', p], ['f', f]]) if (kinds.includes(kind)) lines.push(JSON.stringify(r));
}
if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(lines.join('\n') + '\n');
