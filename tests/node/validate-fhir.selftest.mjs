#!/usr/bin/env node
// Self-test of validate-fhir.mjs against the bundles in validate-fhir.test-cases/:
//   valid/*            every bundle in these files must be reported "ok"
//   invalid/*.json     each breaks exactly one rule; expectations.json gives, per file, the element
//                      path(s) the issues must be reported at and a word the message must contain
// Runs the real CLI (so output format, exit codes and the summary line are covered too).
// Usage: node tests/node/validate-fhir.selftest.mjs      Prints "N passed, M failed"; exit 1 on failure.

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const validator = join(here, 'validate-fhir.mjs');
const casesDir = join(here, 'validate-fhir.test-cases');
const expectations = JSON.parse(readFileSync(join(casesDir, 'expectations.json'), 'utf8'));
const list = (sub) => readdirSync(join(casesDir, sub)).filter((f) => /\.(json|ndjson)$/.test(f)).sort().map((f) => `${sub}/${f}`);
const validFiles = list('valid');
const invalidFiles = list('invalid');

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

function run(args, input) {
  const r = spawnSync(process.execPath, [validator, ...args], { cwd: casesDir, input, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Parses the validator's stdout into {file -> [{status, line, issues: [{label, path, message}]}]} and the summary. */
function parseOutput(stdout) {
  const byFile = new Map();
  let current = null;
  const lines = stdout.trimEnd().split('\n');
  for (const line of lines.slice(0, -1)) {
    const head = /^(ok|invalid) (.+?):(\d+)(?: \(identifier .*\))?(?:: (\d+) issue\(s\))?$/.exec(line);
    const issue = /^ {2}(\S+) (\S+): (.*)$/.exec(line);
    if (head) {
      current = { status: head[1], line: Number(head[3]), count: head[4] && Number(head[4]), issues: [] };
      if (!byFile.has(head[2])) byFile.set(head[2], []);
      byFile.get(head[2]).push(current);
    } else if (issue && current) {
      current.issues.push({ label: issue[1], path: issue[2], message: issue[3] });
    } else {
      throw new Error(`unexpected output line: ${line}`);
    }
  }
  return { byFile, summary: lines.at(-1) };
}
const show = (blocks) => (blocks ?? []).flatMap((b) => [`${b.status} line ${b.line}`, ...b.issues.map((i) => `  ${i.path}: ${i.message}`)]).join('\n') || '(no output for this file)';

// The manifest and the folder must agree
check('every invalid case has an expectation', invalidFiles.every((f) => expectations[f]),
  invalidFiles.filter((f) => !expectations[f]).join(', '));
check('every expectation has an invalid case', Object.keys(expectations).every((f) => invalidFiles.includes(f)),
  Object.keys(expectations).filter((f) => !invalidFiles.includes(f)).join(', '));

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
  check(`valid: ${f}`, blocks.length > 0 && blocks.every((b) => b.status === 'ok'), show(blocks));
}
check('valid: two-bundles.ndjson yields two bundles', (parsed.byFile.get('valid/two-bundles.ndjson') ?? []).length === 2);

for (const f of invalidFiles) {
  const exp = expectations[f] ?? { paths: [], message: '' };
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
    if (!atFirst.some((i) => i.message.toLowerCase().includes(exp.message.toLowerCase()))) {
      problems.push(`no issue at ${exp.paths[0]} mentioning "${exp.message}"`);
    }
    const stray = b.issues.filter((i) => !exp.paths.includes(i.path));
    if (stray.length) problems.push(`issues at unexpected paths (case should break exactly one rule): ${stray.map((i) => i.path).join(', ')}`);
  }
  check(`invalid: ${f} (${exp.breaks})`, problems.length === 0, problems.join('\n') + '\n' + show(blocks));
}
check('exit status 1 when a bundle is invalid', all.status === 1, `status ${all.status}\n${all.stderr}`);
check('summary line', all.stdout.trimEnd().split('\n').at(-1) === `${validBundles} passed, ${invalidFiles.length} failed`,
  `got: ${all.stdout.trimEnd().split('\n').at(-1)}`);

// 2. Valid bundles as NDJSON on stdin
const ndjson = validFiles
  .flatMap((f) => {
    const text = readFileSync(join(casesDir, f), 'utf8');
    return f.endsWith('.ndjson') ? text.split('\n').filter((l) => l.trim()) : [JSON.stringify(JSON.parse(text))];
  })
  .join('\n');
const stdin = run(['-'], ndjson + '\n');
check('stdin "-": all valid, exit 0', stdin.status === 0 && /^ok <stdin>:1\b/m.test(stdin.stdout), `status ${stdin.status}\n${stdin.stdout}${stdin.stderr}`);
check('stdin "-": summary line', stdin.stdout.trimEnd().split('\n').at(-1) === `${validBundles} passed, 0 failed`,
  `got: ${stdin.stdout.trimEnd().split('\n').at(-1)}`);

// 3. Usage and IO errors
check('no arguments: exit 2', run([]).status === 2);
check('unknown option: exit 2', run(['--bogus', validFiles[0]]).status === 2);
const missing = run([validFiles[0], 'does-not-exist.ndjson']);
check('unreadable file: exit 2, other files still validated', missing.status === 2 && missing.stdout.startsWith('ok ') && /cannot read/.test(missing.stderr),
  `status ${missing.status}\n${missing.stdout}${missing.stderr}`);

// 4. Patient data must not leak into the output
check('no resource content in output', !/Testperson|TEST-000|Test patient|test@example\.org/.test(all.stdout + stdin.stdout), 'found a name/identifier from a test resource in the output');

console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 ? 1 : 0;
