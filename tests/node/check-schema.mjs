// JSON Schema check of the clinic-record v1 contract.
//
//   node tests/node/check-schema.mjs
//
// Compiles mappings/clinic-record-v1.schema.json with Ajv 8 (draft 2020-12, strict mode, ajv-formats) and asserts:
//   - every example in mappings/examples and every record in tests/contract/valid (each line of an .ndjson file)
//     validates;
//   - every case in tests/contract/invalid whose <name>.expect.json says "schema": "reject" fails validation, and
//     one of the errors names the expected field path (same path convention as the C++ reader);
//   - every case whose expect says "schema": "not-expressible" passes the schema (it breaks only a rule that the
//     C++ reader enforces, listed in the schema's $comment);
//   - cases that are not JSON (JSON.parse fails) are skipped: the C++ reader test covers them.
// Prints one line per failure and, last, "N passed, M failed[, K skipped]". Exits 1 on any failure.

import { readFileSync, readdirSync, existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..");
const schemaPath = process.env.CLINIC_RECORD_SCHEMA
  ? resolve(process.env.CLINIC_RECORD_SCHEMA)
  : join(repo, "mappings", "clinic-record-v1.schema.json");
const examplesDir = join(repo, "mappings", "examples");
const validDir = join(repo, "tests", "contract", "valid");
const invalidDir = join(repo, "tests", "contract", "invalid");
const KINDS = ["consultation", "procedure", "follow_up"];

let passed = 0;
let failed = 0;
let skipped = 0;
const rel = (p) => relative(repo, p);
const fail = (what, why) => {
  failed += 1;
  console.log(`FAIL ${what}: ${why}`);
};

let validate;
try {
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  addFormats(ajv);
  validate = ajv.compile(JSON.parse(readFileSync(schemaPath, "utf8")));
} catch (e) {
  fail(rel(schemaPath), `schema does not compile: ${e.message}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(1);
}

const listDir = (dir, pred) =>
  existsSync(dir) ? readdirSync(dir).filter(pred).sort().map((f) => join(dir, f)) : [];

// The records of a file: [{ label, text }], one per non-blank line for .ndjson.
function recordsOf(file) {
  const text = readFileSync(file, "utf8");
  if (!file.endsWith(".ndjson")) return [{ label: rel(file), text }];
  return text
    .split("\n")
    .map((line, i) => ({ label: `${rel(file)}:${i + 1}`, text: line }))
    .filter((r) => r.text.trim() !== "");
}

const showErrors = (errors) =>
  (errors || []).map((e) => `${e.instancePath || "/"} ${e.message}`).slice(0, 4).join("; ");

// The contract path (root = record_type value or "record", dots, [i]) that an Ajv error names.
function contractPath(record, err) {
  const root =
    record && typeof record === "object" && !Array.isArray(record) && KINDS.includes(record.record_type)
      ? record.record_type
      : "record";
  let path = root;
  let node = record;
  for (const raw of err.instancePath.split("/").slice(1)) {
    const seg = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    path += Array.isArray(node) ? `[${seg}]` : `.${seg}`;
    node = node == null ? undefined : node[seg];
  }
  const p = err.params || {};
  if (err.keyword === "required") path += `.${p.missingProperty}`;
  else if (err.keyword === "additionalProperties") path += `.${p.additionalProperty}`;
  else if (err.keyword === "unevaluatedProperties") path += `.${p.unevaluatedProperty}`;
  return path;
}

// Valid corpus: examples and tests/contract/valid.
const validFiles = [
  ...listDir(examplesDir, (f) => f.endsWith(".json")),
  ...listDir(validDir, (f) => f.endsWith(".json") || f.endsWith(".ndjson")),
];
if (validFiles.length === 0) fail("valid corpus", "no files found");
for (const file of validFiles) {
  const records = recordsOf(file);
  if (records.length === 0) fail(rel(file), "no records");
  for (const { label, text } of records) {
    let record;
    try {
      record = JSON.parse(text);
    } catch (e) {
      fail(label, `valid record is not JSON: ${e.message}`);
      continue;
    }
    if (validate(record)) passed += 1;
    else fail(label, `valid record rejected: ${showErrors(validate.errors)}`);
  }
}

// Invalid corpus: <name>.json or <name>.ndjson with <name>.expect.json.
const invalidFiles = listDir(
  invalidDir,
  (f) => (f.endsWith(".json") && !f.endsWith(".expect.json")) || f.endsWith(".ndjson"),
);
if (invalidFiles.length === 0) fail("invalid corpus", "no cases found");
for (const expectFile of listDir(invalidDir, (f) => f.endsWith(".expect.json"))) {
  const base = expectFile.slice(0, -".expect.json".length);
  if (!existsSync(`${base}.json`) && !existsSync(`${base}.ndjson`)) fail(rel(expectFile), "no case file for it");
}
for (const file of invalidFiles) {
  const expectFile = file.replace(/\.(nd)?json$/, ".expect.json");
  let expect;
  try {
    expect = JSON.parse(readFileSync(expectFile, "utf8"));
  } catch (e) {
    fail(rel(file), `missing or unreadable ${rel(expectFile)}: ${e.message}`);
    continue;
  }
  if (typeof expect.path !== "string" || !["reject", "not-expressible"].includes(expect.schema) || !expect.why) {
    fail(rel(expectFile), 'needs "path" (string), "schema" ("reject" | "not-expressible") and "why"');
    continue;
  }
  let records;
  try {
    records = recordsOf(file).map((r) => JSON.parse(r.text));
  } catch {
    // Not JSON: the reader's parse error case. Check the expect shape and leave it to the C++ test.
    if (expect.path !== "" || typeof expect.message_contains !== "string") {
      fail(rel(file), 'not JSON, so its expect needs "path": "" and "message_contains"');
    } else {
      skipped += 1;
    }
    continue;
  }
  if (expect.path === "") {
    fail(rel(file), 'parses as JSON but its expect has "path": "" (reserved for malformed JSON)');
    continue;
  }
  const results = records.map((r) => ({ record: r, ok: validate(r), errors: validate.errors || [] }));
  const rejected = results.filter((r) => !r.ok);
  if (expect.schema === "not-expressible") {
    if (rejected.length === 0) passed += 1;
    else fail(rel(file), `not-expressible case fails the schema too (more than one rule broken?): ${showErrors(rejected[0].errors)}`);
    continue;
  }
  if (rejected.length === 0) {
    fail(rel(file), `accepted, expected reject at ${expect.path}`);
    continue;
  }
  const named = rejected.flatMap((r) => r.errors.map((e) => contractPath(r.record, e)));
  if (named.includes(expect.path)) passed += 1;
  else fail(rel(file), `rejected, but no error names ${expect.path} (got ${[...new Set(named)].join(", ")})`);
}

console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed ? 1 : 0);
