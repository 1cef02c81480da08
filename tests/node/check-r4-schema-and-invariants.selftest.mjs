#!/usr/bin/env node
// Self-test of check-r4-schema-and-invariants.mjs against the bundles in r4-independent.test-cases/:
//   valid/*            every bundle in these files must be reported "ok" (copies of golden bundles, and one
//                      with a contained resource, extensions, a narrative and references resolve() follows)
//   invalid/*.json     each breaks exactly one JSON Schema rule or one FHIRPath invariant of a golden copy;
//                      expectations.json gives, per file, the element path(s) the issues must be reported at
//                      and the schema keyword or invariant key the message must name
// Runs the real CLI (so output format, exit codes, stderr notes and the summary line are covered too).
// Usage: node tests/node/check-r4-schema-and-invariants.selftest.mjs   Prints "N passed, M failed"; exit 1 on failure.

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const checker = join(here, 'check-r4-schema-and-invariants.mjs');
const casesDir = join(here, 'r4-independent.test-cases');
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

const runs = [];
function run(args, input) {
  const r = spawnSync(process.execPath, [checker, ...args], { cwd: casesDir, input, encoding: 'utf8', maxBuffer: 64 << 20 });
  const result = { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  runs.push(result);
  return result;
}
const lastLine = (s) => s.trimEnd().split('\n').at(-1);

/** Parses stdout into {file -> [{status, line, count, issues: [{label, path, message}]}]} and the summary. */
function parseOutput(stdout) {
  const byFile = new Map();
  let current = null;
  const lines = stdout.trimEnd().split('\n');
  for (const line of lines.slice(0, -1)) {
    const head = /^(ok|invalid) (.+?):(\d+)(?: \(identifier "(?:[^"\\]|\\.)*"\))?(?:: (\d+) issue\(s\))?$/.exec(line);
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
const show = (blocks) => (blocks ?? []).flatMap((b) => [`${b.status} line ${b.line}`, ...b.issues.map((i) => `  ${i.label} ${i.path}: ${i.message}`)]).join('\n') || '(no output for this file)';

// The manifest and the folder must agree
check('every invalid case has an expectation', invalidFiles.every((f) => expectations[f]),
  invalidFiles.filter((f) => !expectations[f]).join(', '));
check('every expectation has an invalid case', Object.keys(expectations).every((f) => invalidFiles.includes(f)),
  Object.keys(expectations).filter((f) => !invalidFiles.includes(f)).join(', '));

// 1. One run over all cases (--verbose only adds to stderr; its lines are checked in 3.)
const all = run(['--verbose', ...validFiles, ...invalidFiles]);
let parsed;
try {
  parsed = parseOutput(all.stdout);
} catch (err) {
  check('checker output is parseable', false, `${err.message}\n${all.stderr}`);
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
    // A case named for an invariant must fail by that invariant, a schema case by the JSON Schema
    const kind = /^invalid\/(schema|invariant)-/.exec(f)?.[1];
    if (kind === 'schema' && !atFirst.some((i) => i.message.startsWith('JSON Schema '))) problems.push('not reported by the JSON Schema');
    if (kind === 'invariant' && !atFirst.some((i) => new RegExp(`^invariant ${exp.message} failed`).test(i.message))) {
      problems.push(`not reported as invariant ${exp.message}`);
    }
  }
  check(`invalid: ${f} (${exp.breaks})`, problems.length === 0, problems.join('\n') + '\n' + show(blocks));
}
check('exit status 1 when a bundle is invalid', all.status === 1, `status ${all.status}\n${all.stderr}`);
check('summary line', lastLine(all.stdout) === `${validBundles} passed, ${invalidFiles.length} failed`, `got: ${lastLine(all.stdout)}`);

// 2. Valid bundles as NDJSON on stdin (without --verbose)
const ndjson = validFiles
  .flatMap((f) => {
    const text = readFileSync(join(casesDir, f), 'utf8');
    return f.endsWith('.ndjson') ? text.split('\n').filter((l) => l.trim()) : [JSON.stringify(JSON.parse(text))];
  })
  .join('\n');
const stdin = run(['-'], ndjson + '\n');
check('stdin "-": all valid, exit 0', stdin.status === 0 && /^ok <stdin>:1\b/m.test(stdin.stdout), `status ${stdin.status}\n${stdin.stdout}${stdin.stderr}`);
check('stdin "-": summary line', lastLine(stdin.stdout) === `${validBundles} passed, 0 failed`, `got: ${lastLine(stdin.stdout)}`);

// 3. --verbose: counts on stderr
const verbose = all;
check('--verbose: constraints counted, none uncompilable', /\d+ constraint evaluation\(s\) of \d+ distinct invariant\(s\), \d+ failed/.test(verbose.stderr)
  && /192 distinct expressions, 0 not compilable/.test(verbose.stderr), verbose.stderr);
check('--verbose: resolve() follows a urn:uuid reference inside the Bundle and leaves a conditional one unresolved',
  /resolve\(\): [1-9]\d* reference\(s\) resolved in the Bundle, [1-9]\d* unresolved \(conditional reference\)/.test(verbose.stderr), verbose.stderr);
check('--verbose: the corrected expressions are listed', /evaluated as HL7's validator corrects it: ref-1/.test(verbose.stderr), verbose.stderr);
check('--verbose: what fhirpath.js cannot evaluate is listed (dom-3 with contained, ele-1 on xhtml)',
  /skipped \d+x dom-3: fhirpath\.js: Expected singleton/.test(verbose.stderr) && /skipped \d+x ele-1: .*xhtml/.test(verbose.stderr), verbose.stderr);

// 4. Never a silent skip: without --verbose, stderr still says that evaluations were skipped
check('skipped evaluations are announced on stderr without --verbose', /constraint evaluation\(s\) skipped.*dom-3/.test(stdin.stderr), stdin.stderr);

// 5. --as-published: the published R4 ref-1 gives no result on a display-only Reference (the golden
//    bundles have them); and an unreadable file is reported while the other files are still checked
const published = run(['--as-published', 'valid/consultation-recommend-botox.json', 'does-not-exist.ndjson']);
check('--as-published: published ref-1 fails on a display-only Reference',
  /^ {2}Encounter\/4 Encounter\.location\[0\]\.location: invariant ref-1 failed \(the expression gave no result\)/m.test(published.stdout),
  published.stdout);
check('unreadable file: exit 2, other files still checked', published.status === 2 && published.stdout.startsWith('invalid ')
  && /cannot read does-not-exist\.ndjson/.test(published.stderr), `status ${published.status}\n${published.stdout}${published.stderr}`);

// 6. Usage and IO errors
check('no arguments: exit 2', run([]).status === 2);
check('unknown option: exit 2', run(['--bogus', validFiles[0]]).status === 2);
const empty = run(['-'], '\n');
check('no bundle in the input: exit 2', empty.status === 2 && lastLine(empty.stdout) === '0 passed, 0 failed', `status ${empty.status}\n${empty.stdout}`);

// 7. Patient data must not leak into any output (stdout or stderr, of any run above)
const personal = new Set();
for (const f of [...validFiles, ...invalidFiles]) {
  const text = readFileSync(join(casesDir, f), 'utf8');
  const bundles = [];
  try {
    bundles.push(JSON.parse(text));
  } catch {
    for (const l of text.split('\n')) {
      try {
        bundles.push(JSON.parse(l));
      } catch {
        // not-json.json
      }
    }
  }
  for (const b of bundles) {
    for (const e of b?.entry ?? []) {
      const r = e?.resource;
      if (!r || !/^Patient/.test(r.resourceType)) continue;
      for (const n of r.name ?? []) for (const s of [n.family, ...(n.given ?? [])]) if (typeof s === 'string') personal.add(s);
      for (const x of [...(r.identifier ?? []), ...(r.telecom ?? [])]) if (typeof x.value === 'string') personal.add(x.value);
      if (typeof r.birthDate === 'string') personal.add(r.birthDate);
    }
  }
}
const everything = runs.map((r) => r.stdout + r.stderr).join('\n');
const leaked = [...personal].filter((s) => s.length >= 4 && everything.includes(s));
check(`no resource content in output (${personal.size} names/identifiers/telecoms/birth dates looked for)`, personal.size > 0 && leaked.length === 0,
  `found in the output: ${leaked.length} value(s)`);

console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 ? 1 : 0;
