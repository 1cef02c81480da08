#!/usr/bin/env node
// Self-test of validate-us-core.mjs against the bundles in us-core.test-cases/:
//   valid/*            every bundle in these files must be reported "ok" (warnings allowed)
//   invalid/*.json     each breaks exactly one rule of a US Core 6.1.0 profile; expectations.json names, per
//                      file, the check that must catch it ("check", and "alsoChecks" when one change breaks
//                      two rules at the same place), the element path(s) the errors must be reported at and a
//                      phrase the message at the first path must contain
// Runs the real CLI (output format, exit codes, summary and stderr counts are covered too) and the exported
// validateBundleUsCore().
// Usage: node tests/node/validate-us-core.selftest.mjs      Prints "N passed, M failed"; exit 1 on failure.
// The US Core package is found like the validator finds it (--us-core-dir is not passed; $US_CORE_DIR works).

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const validator = join(here, 'validate-us-core.mjs');
const casesDir = join(here, 'us-core.test-cases');
const expectations = JSON.parse(readFileSync(join(casesDir, 'expectations.json'), 'utf8'));
const list = (sub) => readdirSync(join(casesDir, sub)).filter((f) => /\.(json|ndjson)$/.test(f)).sort().map((f) => `${sub}/${f}`);
const validFiles = list('valid');
const invalidFiles = list('invalid');
const CHECKS = ['medplum', 'cardinality', 'fixed', 'pattern', 'slicing', 'binding', 'type', 'reference', 'constraint', 'must-support', 'profile'];

let passed = 0;
let failed = 0;
function check(name, condition, detail = '') {
  if (condition) {
    passed++;
    console.log(`ok - ${name}`);
  } else {
    failed++;
    console.log(`not ok - ${name}${detail ? `\n    ${detail.split('\n').join('\n    ')}` : ''}`);
  }
}

function run(args, input, env = {}) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [validator, ...args], {
    cwd: casesDir, input, encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, ...env },
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', ms: performance.now() - t0 };
}

/** Parses stdout into {file -> [{status, line, count, issues: [{severity, label, path, check, message, profile}]}]} */
function parseOutput(stdout) {
  const byFile = new Map();
  let current = null;
  const lines = stdout.trimEnd().split('\n');
  for (const line of lines.slice(0, -1)) {
    const head = /^(ok|invalid) (.+?):(\d+)(?: \(identifier "[^"]*"\))?(?:: (\d+) issue\(s\))?$/.exec(line);
    const issue = /^ {2}(?:(warning|information): )?(\S+) (\S+): ([a-z-]+): (.*?)(?: \[profile (\S+)\])?$/.exec(line);
    if (head) {
      current = { status: head[1], line: Number(head[3]), count: head[4] && Number(head[4]), issues: [] };
      if (!byFile.has(head[2])) byFile.set(head[2], []);
      byFile.get(head[2]).push(current);
    } else if (issue && current) {
      current.issues.push({ severity: issue[1] ?? 'error', label: issue[2], path: issue[3], check: issue[4], message: issue[5], profile: issue[6] });
    } else {
      throw new Error(`unexpected output line: ${line}`);
    }
  }
  return { byFile, summary: lines.at(-1) };
}
const show = (blocks) => (blocks ?? []).flatMap((b) => [`${b.status} line ${b.line}`, ...b.issues.map((i) => `  ${i.severity} ${i.path}: ${i.check}: ${i.message}`)]).join('\n') || '(no output for this file)';

// The manifest and the folder must agree, and every check must be proven by at least one case
check('every invalid case has an expectation', invalidFiles.every((f) => expectations[f]),
  invalidFiles.filter((f) => !expectations[f]).join(', '));
check('every expectation has an invalid case', Object.keys(expectations).every((f) => invalidFiles.includes(f)),
  Object.keys(expectations).filter((f) => !invalidFiles.includes(f)).join(', '));
const proven = new Set(Object.values(expectations).flatMap((e) => [e.check, ...(e.alsoChecks ?? [])]));
const unproven = CHECKS.filter((c) => c !== 'must-support' && !proven.has(c));
check('every error-level check is proven by a broken case', unproven.length === 0, `no case for: ${unproven.join(', ')}`);

// 1. One run over all cases
const all = run([...validFiles, ...invalidFiles]);
let parsed;
try {
  parsed = parseOutput(all.stdout);
} catch (err) {
  check('validator output is parseable', false, `${err.message}\n${all.stderr}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(1);
}
let validBundles = 0;
for (const f of validFiles) {
  const blocks = parsed.byFile.get(f) ?? [];
  validBundles += blocks.length;
  check(`valid: ${f}`, blocks.length > 0 && blocks.every((b) => b.status === 'ok' && b.issues.length === 0), show(blocks));
}
check('valid: two-bundles.ndjson yields two bundles', (parsed.byFile.get('valid/two-bundles.ndjson') ?? []).length === 2);

for (const f of invalidFiles) {
  const exp = expectations[f] ?? { check: '?', paths: [], message: '' };
  const blocks = parsed.byFile.get(f) ?? [];
  const b = blocks[0];
  const problems = [];
  if (blocks.length !== 1) problems.push(`expected 1 bundle, got ${blocks.length}`);
  if (!b || b.status !== 'invalid') problems.push('expected "invalid"');
  if (b) {
    if (b.status === 'invalid' && b.count !== b.issues.length) problems.push(`header says ${b.count} issue(s) but ${b.issues.length} listed`);
    for (const p of exp.paths) {
      if (!b.issues.some((i) => i.path === p)) problems.push(`no issue at ${p}`);
    }
    const atFirst = b.issues.filter((i) => i.path === exp.paths[0]);
    if (!atFirst.some((i) => i.check === exp.check && i.message.toLowerCase().includes(exp.message.toLowerCase()))) {
      problems.push(`no "${exp.check}" issue at ${exp.paths[0]} mentioning "${exp.message}"`);
    }
    for (const also of exp.alsoChecks ?? []) {
      if (!atFirst.some((i) => i.check === also)) problems.push(`no "${also}" issue at ${exp.paths[0]}`);
    }
    const stray = b.issues.filter((i) => !exp.paths.includes(i.path));
    if (stray.length) problems.push(`issues at unexpected paths (case should break exactly one rule): ${stray.map((i) => i.path).join(', ')}`);
    if (!b.issues.every((i) => i.profile)) problems.push('an issue without [profile ...]');
  }
  check(`invalid: ${f} (${exp.check}: ${exp.breaks})`, problems.length === 0, problems.join('\n') + '\n' + show(blocks));
}
check('exit status 1 when a bundle is invalid', all.status === 1, `status ${all.status}\n${all.stderr}`);
check('summary line', parsed.summary === `${validBundles} passed, ${invalidFiles.length} failed`, `got: ${parsed.summary}`);
check('stderr counts the resources that claim no US Core profile', /resource\(s\) validated against \d+ profile claim\(s\); [1-9]\d* resource\(s\) claim no US Core profile \(not checked\)/.test(all.stderr), all.stderr);

// 2. --verbose on the valid cases: must-support warnings, per-profile counts, skipped value sets, timings
const verbose = run(['--verbose', ...validFiles]);
let vparsed = null;
try {
  vparsed = parseOutput(verbose.stdout);
} catch (err) {
  check('verbose output is parseable', false, err.message);
}
if (vparsed) {
  const issues = [...vparsed.byFile.values()].flat().flatMap((b) => b.issues);
  check('verbose: all valid bundles still ok, exit 0', verbose.status === 0 && [...vparsed.byFile.values()].flat().every((b) => b.status === 'ok'), verbose.stdout);
  check('verbose: must-support elements absent are warnings (Encounter.period present, Encounter.reasonCode absent)',
    issues.some((i) => i.severity === 'warning' && i.check === 'must-support' && i.path === 'Encounter.reasonCode' && i.profile === 'us-core-encounter')
      && !issues.some((i) => i.check === 'must-support' && i.path === 'Encounter.period'),
    issues.filter((i) => i.check === 'must-support').map((i) => `${i.path} [${i.profile}]`).join('\n'));
  check('verbose: must-support inside a slice of the claimed profile is not reported absent when the slice is present',
    !issues.some((i) => i.check === 'must-support' && /^Provenance\.agent/.test(i.path)));
  check('verbose: a reference outside the bundle accepted by the base type of its US Core target profile is a warning',
    issues.some((i) => i.severity === 'warning' && i.check === 'reference' && i.path === 'DocumentReference.author[1]' && /accepted by its type PractitionerRole/.test(i.message)));
  check('verbose: a text-only CodeableConcept under an expandable extensible binding is a warning',
    issues.some((i) => i.severity === 'warning' && i.check === 'binding' && i.path === 'Patient.maritalStatus'));
}
check('stderr: per-profile must-support count', /# must-support us-core-encounter: 2 resource\(s\); [1-9]\d* of \d+ must-support element\(s\) absent/.test(verbose.stderr), verbose.stderr);
check('stderr --verbose: must-support elements listed', /#\s+absent 2\/2: Encounter\.reasonCode/.test(verbose.stderr));
check('stderr --verbose: skipped value sets say why (VSAC, filters)',
  /skipped \d+x http:\/\/hl7\.org\/fhir\/us\/core\/ValueSet\/omb-race-category: VSAC/.test(verbose.stderr)
    && /us-core-condition-code: include of http:\/\/snomed\.info\/sct uses a filter/.test(verbose.stderr), verbose.stderr);
check('stderr --verbose: the Medplum workaround for us-core-provenance is reported', /medplum workaround: us-core-provenance: Provenance\.entity\.agent/.test(verbose.stderr));
check('stderr --verbose: invariants evaluated and the ones that could not run counted', /# invariants: [1-9]\d* evaluation\(s\); \d+ could not run/.test(verbose.stderr));

// 3. Valid bundles as NDJSON on stdin
const ndjson = validFiles
  .flatMap((f) => {
    const text = readFileSync(join(casesDir, f), 'utf8');
    return f.endsWith('.ndjson') ? text.split('\n').filter((l) => l.trim()) : [JSON.stringify(JSON.parse(text))];
  })
  .join('\n');
const stdin = run(['-'], ndjson + '\n');
check('stdin "-": all valid, exit 0', stdin.status === 0 && /^ok <stdin>:1\b/m.test(stdin.stdout), `status ${stdin.status}\n${stdin.stdout}${stdin.stderr}`);
check('stdin "-": summary line', stdin.stdout.trimEnd().split('\n').at(-1) === `${validBundles} passed, 0 failed`, `got: ${stdin.stdout.trimEnd().split('\n').at(-1)}`);

// 4. Usage, IO and package errors
check('no arguments: exit 2', run([]).status === 2);
check('unknown option: exit 2', run(['--bogus', validFiles[0]]).status === 2);
const missing = run([validFiles[0], 'does-not-exist.ndjson']);
check('unreadable file: exit 2, other files still validated', missing.status === 2 && missing.stdout.startsWith('ok ') && /cannot read/.test(missing.stderr),
  `status ${missing.status}\n${missing.stdout}${missing.stderr}`);
const noPackage = run(['--us-core-dir', join(here, 'does-not-exist'), validFiles[0]]);
check('--us-core-dir pointing nowhere: exit 2', noPackage.status === 2 && /cannot load the US Core/.test(noPackage.stderr), noPackage.stderr);
const envPackage = run([validFiles[0]], undefined, { US_CORE_DIR: join(here, 'does-not-exist') });
check('$US_CORE_DIR pointing nowhere: exit 2', envPackage.status === 2, envPackage.stderr);

// 5. Patient data must not leak into the output
const everything = all.stdout + all.stderr + verbose.stdout + verbose.stderr + stdin.stdout;
check('no resource content in output', !/Testperson|Testdoctor|TEST-0001|VISIT-0001|Test Street|\+00 000|A\. Testperson/.test(everything),
  'found a name/identifier/address from a test resource in the output');

// 6. The exported function
const mod = await import(validator);
const bundle = JSON.parse(readFileSync(join(casesDir, 'invalid/constraint-patient-name-us-core-6.json'), 'utf8'));
const issues = mod.validateBundleUsCore(bundle);
check('validateBundleUsCore() returns the issues', Array.isArray(issues)
  && issues.some((i) => i.severity === 'error' && i.check === 'constraint' && i.path === 'Patient.name[0]' && i.profile === 'us-core-patient' && i.entry === 0),
  JSON.stringify(issues, null, 1));
const validIssues = mod.validateBundleUsCore(JSON.parse(readFileSync(join(casesDir, validFiles[0]), 'utf8')));
check('validateBundleUsCore() on a valid bundle: no errors, must-support warnings', !validIssues.some((i) => i.severity === 'error')
  && validIssues.some((i) => i.check === 'must-support'));

// a target in the bundle that does not claim the US Core profile the reference asks for: accepted, with a warning
const unclaimed = JSON.parse(readFileSync(join(casesDir, 'valid/two-bundles.ndjson'), 'utf8').split('\n')[1]);
const target = unclaimed.entry.find((e) => e.resource.resourceType === 'Patient').resource;
delete target.meta;
const unclaimedIssues = mod.validateBundleUsCore(unclaimed);
check('validateBundleUsCore(): a bundle target not claiming us-core-patient is accepted by its type, with a warning',
  !unclaimedIssues.some((i) => i.severity === 'error')
    && unclaimedIssues.some((i) => i.severity === 'warning' && i.check === 'reference' && i.path === 'Encounter.subject' && /does not claim us-core-patient/.test(i.message)),
  JSON.stringify(unclaimedIssues.filter((i) => i.check === 'reference'), null, 1));
const explicitDir = run(['--us-core-dir', mod.DEFAULT_US_CORE_DIR, validFiles[0]], undefined, { US_CORE_DIR: join(here, 'does-not-exist') });
check('--us-core-dir wins over $US_CORE_DIR', explicitDir.status === 0, explicitDir.stderr);

console.log(`# timing: ${invalidFiles.length + validBundles} bundles in ${Math.round(all.ms)} ms (one process, definitions included)`);
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 ? 1 : 0;
