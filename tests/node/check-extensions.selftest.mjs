#!/usr/bin/env node
// Self-test of check-extensions.mjs against the resources and bundles in extension.test-cases/:
//   valid/*                  every Bundle / resource in these files must be "ok" (warnings allowed)
//   invalid/*.json           each breaks one rule; expectations.json gives, per file, the check(s) whose
//                            name must start every error message (the first one also at the given path)
//   not-checkable-offline/*  breaks a rule that cannot be checked offline: must pass, and --verbose must
//                            report the skipped value set (not a silent pass)
//   rebased/*                uses the connector's extensions re-based to https://ehr.example/fhir: unknown
//                            without, valid with --profiles <the Bundle `migraine-connector profiles` prints>
//   profiles/                StructureDefinitions for the selftest only (modifier, fixedUri, closed slicing),
//                            loaded with --profiles for valid/ and invalid/
//   validate-fhir/*          transaction Bundles run through validate-fhir.mjs, whose layer 4 this is
// Runs the real CLIs (output format, exit codes, summary line), plus the exported API once.
// Usage: node tests/node/check-extensions.selftest.mjs      Prints "N passed, M failed"; exit 1 on failure.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const checker = join(here, 'check-extensions.mjs');
const validateFhir = join(here, 'validate-fhir.mjs');
const casesDir = join(here, 'extension.test-cases');
const repoRoot = resolve(here, '../..');
const expectations = JSON.parse(readFileSync(join(casesDir, 'expectations.json'), 'utf8'));
const list = (sub) => readdirSync(join(casesDir, sub)).filter((f) => /\.(json|ndjson)$/.test(f)).sort().map((f) => `${sub}/${f}`);
const validFiles = list('valid');
const invalidFiles = list('invalid');
const offlineFiles = list('not-checkable-offline');
const rebasedFiles = list('rebased');
const PROFILES = ['--profiles', 'profiles'];

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

function run(script, args, { input, env } = {}) {
  const r = spawnSync(process.execPath, [script, ...args], {
    cwd: casesDir, input, encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, ...env },
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}
const runChecker = (args, options) => run(checker, args, options);

/** Parses the checker's stdout into {file -> [{status, line, count, issues: [{severity, label, path, message}]}]}. */
function parseOutput(stdout) {
  const byFile = new Map();
  let current = null;
  const lines = stdout.trimEnd().split('\n');
  for (const line of lines.slice(0, -1)) {
    const head = /^(ok|invalid) (.+?):(\d+)(?: \(identifier .*\))?(?:: (\d+) issue\(s\))?$/.exec(line);
    const issue = /^ {2}(?:(warning|information): )?(\S+) (\S+): (.*)$/.exec(line);
    if (head) {
      current = { status: head[1], line: Number(head[3]), count: head[4] && Number(head[4]), issues: [] };
      if (!byFile.has(head[2])) byFile.set(head[2], []);
      byFile.get(head[2]).push(current);
    } else if (issue && current) {
      current.issues.push({ severity: issue[1] ?? 'error', label: issue[2], path: issue[3], message: issue[4] });
    } else {
      throw new Error(`unexpected output line: ${line}`);
    }
  }
  return { byFile, summary: lines.at(-1) };
}
const show = (blocks) => (blocks ?? []).flatMap((b) => [`${b.status} line ${b.line}`, ...b.issues.map((i) => `  ${i.severity} ${i.path}: ${i.message}`)]).join('\n') || '(no output for this file)';
function parsed(result, what) {
  try {
    return parseOutput(result.stdout);
  } catch (err) {
    check(`${what}: output is parseable`, false, `${err.message}\n${result.stderr}`);
    return { byFile: new Map(), summary: '' };
  }
}
const outputs = []; // every stdout/stderr, for the patient-data check

// The manifest and the folder must agree
check('every invalid case has an expectation', invalidFiles.every((f) => expectations[f]),
  invalidFiles.filter((f) => !expectations[f]).join(', '));
check('every expectation has an invalid case', Object.keys(expectations).every((f) => invalidFiles.includes(f)),
  Object.keys(expectations).filter((f) => !invalidFiles.includes(f)).join(', '));

// 1. One run over the valid and the invalid cases
const all = runChecker([...PROFILES, ...validFiles, ...invalidFiles]);
outputs.push(all.stdout, all.stderr);
const allOut = parsed(all, 'valid + invalid');
let validItems = 0;
for (const f of validFiles) {
  const blocks = allOut.byFile.get(f) ?? [];
  validItems += blocks.length;
  check(`valid: ${f}`, blocks.length > 0 && blocks.every((b) => b.status === 'ok' && b.issues.length === 0), show(blocks));
}
check('valid: resources.ndjson yields two resources', (allOut.byFile.get('valid/resources.ndjson') ?? []).length === 2);

const checksSeen = new Set();
for (const f of invalidFiles) {
  const exp = expectations[f] ?? { checks: ['?'], path: '?' };
  const blocks = allOut.byFile.get(f) ?? [];
  const b = blocks[0];
  const problems = [];
  if (blocks.length !== 1) problems.push(`expected 1 resource, got ${blocks.length}`);
  if (!b || b.status !== 'invalid') problems.push('expected "invalid"');
  if (b) {
    if (b.status === 'invalid' && b.count !== b.issues.length) problems.push(`header says ${b.count} issue(s) but ${b.issues.length} listed`);
    if (!b.issues.some((i) => i.path === exp.path && i.message.startsWith(`${exp.checks[0]}: `))) {
      problems.push(`no "${exp.checks[0]}" issue at ${exp.path}`);
    }
    const stray = b.issues.filter((i) => !exp.checks.some((c) => i.message.startsWith(`${c}: `)));
    if (stray.length) problems.push(`issues of other checks (a case should break one rule): ${stray.map((i) => i.message.split(':')[0]).join(', ')}`);
    if (problems.length === 0) checksSeen.add(exp.checks[0]);
  }
  check(`invalid: ${f} (${exp.breaks})`, problems.length === 0, problems.join('\n') + '\n' + show(blocks));
}
for (const name of ['unknown-extension', 'modifier', 'context', 'cardinality', 'value', 'fixed', 'binding']) {
  check(`check "${name}" is proven to fail by some invalid case`, checksSeen.has(name));
}
check('exit status 1 when some resource is invalid', all.status === 1, `status ${all.status}\n${all.stderr}`);
check('summary line', allOut.summary === `${validItems} passed, ${invalidFiles.length} failed`, `got: ${allOut.summary}`);

// 2. --verbose: warnings and counts
const verbose = runChecker(['--verbose', ...PROFILES, 'valid/bundle-connector-extensions.json', 'valid/race-unknown-nested-name-warns.json']);
outputs.push(verbose.stdout, verbose.stderr);
const verboseOut = parsed(verbose, '--verbose');
const lateralityWarnings = (verboseOut.byFile.get('valid/bundle-connector-extensions.json') ?? [])
  .flatMap((b) => b.issues).filter((i) => i.severity === 'warning' && /^unknown-extension: .*mcode-laterality-qualifier is not checkable offline/.test(i.message));
check('--verbose: mCODE laterality reported "not checkable offline" (warning), twice', lateralityWarnings.length === 2, verbose.stdout);
check('--verbose: the count of not-checkable extensions on stderr',
  /not checkable offline: 2x http:\/\/hl7\.org\/fhir\/us\/mcode\/StructureDefinition\/mcode-laterality-qualifier/.test(verbose.stderr), verbose.stderr);
const openSlicing = (verboseOut.byFile.get('valid/race-unknown-nested-name-warns.json') ?? []).flatMap((b) => b.issues);
check('--verbose: an unknown nested slice name under open slicing is a warning',
  openSlicing.length === 1 && openSlicing[0].severity === 'warning' && openSlicing[0].message.startsWith('unknown-extension: nested extension "source"'),
  show(verboseOut.byFile.get('valid/race-unknown-nested-name-warns.json')));
check('--verbose: exit 0 with warnings only', verbose.status === 0, `status ${verbose.status}`);

// 3. Not checkable offline: passes, but the skipped value set is reported
for (const f of offlineFiles) {
  const r = runChecker(['--verbose', f]);
  outputs.push(r.stdout, r.stderr);
  check(`not checkable offline: ${f} passes (exit 0)`, r.status === 0 && r.stdout.startsWith(`ok ${f}:1`), r.stdout + r.stderr);
  check(`not checkable offline: ${f}: --verbose lists the skipped omb-race-category value set`,
    /skipped \d+x http:\/\/hl7\.org\/fhir\/us\/core\/ValueSet\/omb-race-category: /.test(r.stderr), r.stderr);
}

// 4. Without the US Core folder, its extensions are errors that say why
const noUsCore = runChecker(['valid/patient-us-core-race-ethnicity.json'], { env: { US_CORE_DIR: join(casesDir, 'no-such-us-core-dir') } });
outputs.push(noUsCore.stdout, noUsCore.stderr);
const noUsCoreIssues = (parsed(noUsCore, 'US Core missing').byFile.get('valid/patient-us-core-race-ethnicity.json') ?? []).flatMap((b) => b.issues);
check('US Core folder missing: race and ethnicity are unknown-extension errors naming the folder',
  noUsCore.status === 1 && noUsCoreIssues.length === 2
    && noUsCoreIssues.every((i) => i.message.startsWith('unknown-extension: ') && i.message.includes('US Core folder not found')),
  noUsCore.stdout + noUsCore.stderr);

// 5. --profiles FILE: the connector's extensions re-based to another canonical base, as a Bundle
const tmp = mkdtempSync(join(tmpdir(), 'check-extensions-selftest-'));
try {
  // The Bundle as `migraine-connector profiles` builds it: every file of mappings/profiles with the shipped
  // canonical base replaced by the configured one.
  const profilesDir = join(repoRoot, 'mappings', 'profiles');
  const entries = readdirSync(profilesDir).filter((f) => f.endsWith('.json')).sort().map((f) => {
    const text = readFileSync(join(profilesDir, f), 'utf8').replaceAll('https://clinic.example/fhir/StructureDefinition/', 'https://ehr.example/fhir/StructureDefinition/');
    const resource = JSON.parse(text);
    return { fullUrl: resource.url, resource };
  });
  const bundleFile = join(tmp, 'profiles-bundle.json');
  writeFileSync(bundleFile, JSON.stringify({ resourceType: 'Bundle', type: 'collection', entry: entries }));
  const without = runChecker(rebasedFiles);
  const withBundle = runChecker(['--profiles', bundleFile, ...rebasedFiles]);
  outputs.push(without.stdout, withBundle.stdout);
  check('rebased: unknown-extension without --profiles', without.status === 1 && /unknown-extension: extension https:\/\/ehr\.example\//.test(without.stdout), without.stdout + without.stderr);
  check('rebased: valid with --profiles <Bundle>', withBundle.status === 0, withBundle.stdout + withBundle.stderr);

  // The real command, if the connector is built
  const connector = process.env.MIGRAINE_CONNECTOR || join(repoRoot, 'build', 'bin', 'migraine-connector');
  if (existsSync(connector)) {
    const config = join(tmp, 'config.json');
    writeFileSync(config, JSON.stringify({ mapping: { identifier_system: 'https://ehr.example/fhir' } }));
    const printed = spawnSync(connector, ['profiles', '--config', config], { cwd: tmp, encoding: 'utf8' });
    const printedFile = join(tmp, 'printed-profiles.json');
    writeFileSync(printedFile, printed.stdout ?? '');
    const viaConnector = runChecker(['--profiles', printedFile, ...rebasedFiles]);
    check('rebased: valid with --profiles <output of "migraine-connector profiles">', printed.status === 0 && viaConnector.status === 0,
      `connector exit ${printed.status}\n${viaConnector.stdout}${viaConnector.stderr}`);
  } else {
    console.log(`# skipped: "migraine-connector profiles" (no binary at ${connector}; set MIGRAINE_CONNECTOR)`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

// 6. stdin, usage and IO errors
const ndjson = ['valid/patient-us-core-race-ethnicity.json', 'invalid/drug-class-on-condition.json']
  .map((f) => JSON.stringify(JSON.parse(readFileSync(join(casesDir, f), 'utf8')))).join('\n') + '\n';
const stdin = runChecker(['-'], { input: ndjson });
outputs.push(stdin.stdout, stdin.stderr);
check('stdin "-": NDJSON, one ok and one invalid, exit 1',
  stdin.status === 1 && /^ok <stdin>:1$/m.test(stdin.stdout) && /^invalid <stdin>:2: 1 issue\(s\)$/m.test(stdin.stdout)
    && stdin.stdout.trimEnd().endsWith('1 passed, 1 failed'), stdin.stdout + stdin.stderr);
check('no arguments: exit 2', runChecker([]).status === 2);
check('unknown option: exit 2', runChecker(['--bogus', validFiles[0]]).status === 2);
check('--profiles without a value: exit 2', runChecker(['--profiles']).status === 2);
const badProfiles = runChecker(['--profiles', 'no-such-profiles-dir', validFiles[0]]);
check('--profiles that cannot be read: exit 2, said on stderr', badProfiles.status === 2 && /no-such-profiles-dir: cannot read/.test(badProfiles.stderr), badProfiles.stderr);
const notDefinitions = runChecker(['--profiles', 'valid/patient-us-core-race-ethnicity.json', validFiles[0]]);
check('--profiles FILE holding no StructureDefinition: exit 2', notDefinitions.status === 2 && /holds no extension StructureDefinition/.test(notDefinitions.stderr), notDefinitions.stderr);
const missing = runChecker([validFiles[0], 'does-not-exist.json']);
check('unreadable file: exit 2, other files still checked', missing.status === 2 && missing.stdout.startsWith('ok ') && /cannot read/.test(missing.stderr),
  `status ${missing.status}\n${missing.stdout}${missing.stderr}`);

// 7. validate-fhir.mjs runs these checks as its layer 4
const vfValid = run(validateFhir, ['validate-fhir/transaction-valid.json']);
const vfInvalid = run(validateFhir, ['validate-fhir/transaction-drug-class-on-condition.json']);
outputs.push(vfValid.stdout, vfValid.stderr, vfInvalid.stdout, vfInvalid.stderr);
check('validate-fhir: a transaction with valid extensions passes', vfValid.status === 0, vfValid.stdout + vfValid.stderr);
check('validate-fhir: drug-class on a Condition fails in layer 4 ("context" at Condition.extension[1])',
  vfInvalid.status === 1 && /^ {2}Condition\/1 Condition\.extension\[1\]: context: /m.test(vfInvalid.stdout)
    && vfInvalid.stdout.split('\n').filter((l) => l.startsWith('  ')).length === 1, vfInvalid.stdout + vfInvalid.stderr);

// 8. The API
const mod = await import(checker);
const registry = mod.loadExtensionDefinitions();
const issues = mod.checkExtensions(JSON.parse(readFileSync(join(casesDir, 'invalid/asserted-date-value-code.json'), 'utf8')), registry, new mod.ExtensionStats());
check('API: loadExtensionDefinitions() loads without errors', registry.loadErrors.length === 0, registry.loadErrors.join('\n'));
check('API: checkExtensions() returns {severity, path, message} issues',
  issues.length === 1 && issues[0].severity === 'error' && issues[0].path === 'Condition.extension[0].valueCode' && issues[0].message.startsWith('value: '),
  JSON.stringify(issues));

// 9. Patient data must not leak into the output
check('no resource content in output', !/Testperson|Alex|Springfield|White, Japanese|self-reported|propranolol/.test(outputs.join('\n')),
  'found a name or free text from a test resource in the output');

console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 ? 1 : 0;
