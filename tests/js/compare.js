// compare.js: compare the oracle's JSON lines with dsv4's, value by value.
//
//   node compare.js WHAT INPUT.jsonl EXPECTED.jsonl GOT.jsonl
//
// WHAT names the comparison in the report. Prints each mismatch (up to 10) with its line
// number, input and the first differing position, then a summary line "N passed, M failed";
// exits 1 on any mismatch or a differing number of lines.
'use strict';
const fs = require('fs');

const [what, inPath, expPath, gotPath] = process.argv.slice(2);
const read = (p) => fs.readFileSync(p, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
const input = read(inPath), expected = read(expPath), got = read(gotPath);

const value = (o) => ('ids' in o ? o.ids : o.text);
const show = (v) => JSON.stringify(v).slice(0, 300);
function firstDiff(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

let passed = 0, failed = 0;
if (expected.length !== input.length || got.length !== input.length) {
  console.error(`${what}: line counts differ: input ${input.length}, expected ${expected.length}, got ${got.length}`);
  failed++;
}
const n = Math.min(input.length, expected.length, got.length);
for (let i = 0; i < n; i++) {
  const e = value(expected[i]), g = value(got[i]);
  const d = firstDiff(e, g);
  if (d < 0) { passed++; continue; }
  failed++;
  if (failed <= 10) {
    console.error(`${what}: MISMATCH at input line ${i + 1}, first difference at index ${d}`);
    console.error(`  input:    ${show(value(input[i]))}`);
    console.error(`  expected: ${show(Array.isArray(e) ? e.slice(Math.max(0, d - 3), d + 8) : e.slice(Math.max(0, d - 20), d + 40))}`);
    console.error(`  got:      ${show(Array.isArray(g) ? g.slice(Math.max(0, d - 3), d + 8) : g.slice(Math.max(0, d - 20), d + 40))}`);
  }
}
console.log(`${what}: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
