// make_inputs.js: the inputs of the tokenizer oracle test and benchmark, as JSON lines.
//
//   node make_inputs.js corpus SOURCE_DIR SHARED_DIR   {"text": ...} lines: the hand-written
//        corpus (tests/data/tokenizer_corpus.jsonl), chunks of the shared spec documents and
//        chat renderings, chunks of this repository's C sources, and seeded random strings
//   node make_inputs.js ids TOKENIZER.json             {"ids": [...]} lines for decoding: random
//        ids, runs of single-byte tokens that cut UTF-8 sequences, prefixes of real encodings
//   node make_inputs.js bench SOURCE_DIR SHARED_DIR MB  {"text": ...} lines of about MB megabytes
//
// Everything is deterministic (a fixed-seed PRNG), so a failure can be reproduced.
'use strict';
const fs = require('fs');
const path = require('path');

// mulberry32: a tiny, well-known 32-bit PRNG; good enough to vary test strings.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// Split a document into chunks of at most `max` characters at blank lines.
function chunks(text, max) {
  const paras = text.split(/(?<=\n\n)/);
  const res = [];
  let cur = '';
  for (const p of paras) {
    if (cur && cur.length + p.length > max) {
      res.push(cur);
      cur = '';
    }
    cur += p;
  }
  if (cur) res.push(cur);
  return res;
}

function listFiles(dir, exts) {
  const res = [];
  if (!fs.existsSync(dir)) return res;
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name < b.name ? -1 : 1)) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) res.push(...listFiles(p, exts));
    else if (exts.some((x) => e.name.endsWith(x))) res.push(p);
  }
  return res;
}

// Documents: the shared spec (English technical prose, math, tables, code), the chat
// renderings (special tokens and DSML), and our own sources (C code and comments).
function documents(sourceDir, sharedDir) {
  const files = [
    ...listFiles(path.join(sharedDir, 'spec'), ['.md']),
    ...listFiles(path.join(sharedDir, 'encoding'), ['.txt']),
    ...listFiles(path.join(sourceDir, 'src'), ['.c', '.h']),
    ...listFiles(path.join(sourceDir, 'tools'), ['.c', '.h']),
  ];
  if (files.length === 0) throw new Error('no documents found under ' + sourceDir + ' and ' + sharedDir);
  return files.map((f) => fs.readFileSync(f, 'utf8'));
}

// Code point ranges for random text. Each lies in blocks whose general categories have not
// changed from Unicode 14 to Unicode 17, so the test does not depend on which Unicode version
// the regex engine's tables have (PCRE2 10.42: 14; the oracle's Oniguruma: 16).
const RANGES = [
  [0x20, 0x7e, 30], [0x00, 0x1f, 2], [0x7f, 0xff, 4], [0x100, 0x24f, 3], [0x250, 0x2ff, 1],
  [0x300, 0x36f, 3], [0x370, 0x3ff, 2], [0x400, 0x52f, 3], [0x531, 0x58a, 1], [0x591, 0x5f4, 1],
  [0x600, 0x6ff, 2], [0x900, 0x97f, 2], [0xe01, 0xe5b, 1], [0x10a0, 0x10ff, 1], [0x1100, 0x11ff, 1],
  [0x1e00, 0x1eff, 1], [0x1f00, 0x1ffe, 1], [0x2000, 0x206f, 4], [0x2070, 0x209c, 1],
  [0x20a0, 0x20c0, 1], [0x2100, 0x218b, 1], [0x2190, 0x23ff, 1], [0x2460, 0x24ff, 1],
  [0x2500, 0x26ff, 1], [0x2700, 0x27bf, 1], [0x3000, 0x303f, 3], [0x3041, 0x30ff, 4],
  [0x3105, 0x312f, 1], [0x3200, 0x32ff, 1], [0x4e00, 0x9fff, 8], [0xac00, 0xd7a3, 2],
  [0xe000, 0xf8ff, 1], [0xfb00, 0xfb4f, 1], [0xfe00, 0xfe0f, 1], [0xfe30, 0xfe4f, 1],
  [0xff00, 0xffef, 3], [0xfff9, 0xffff, 1], [0x10000, 0x1007f, 1], [0x1d400, 0x1d7ff, 1],
  [0x1f000, 0x1f02b, 1], [0x1f300, 0x1f64f, 4], [0x1f680, 0x1f6d7, 1], [0x1f900, 0x1f9ff, 2],
  [0x20000, 0x2a6df, 1], [0xe0001, 0xe007f, 1], [0xf0000, 0xf00ff, 1],
];
const RANGE_WEIGHT = RANGES.reduce((s, r) => s + r[2], 0);

const SPECIALS = [
  '<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>', '<｜User｜>', '<｜Assistant｜>', '<think>',
  '</think>', '｜DSML｜', '<|EOT|>', '<｜tool▁calls▁begin｜>', '<｜tool▁sep｜>', '<dsml:', '</dsml:',
  '<｜place▁holder▁no▁17｜>', '<|place_holder_mm_span_0100|>', '<｜/table>｜', '<｜table｜>',
  '<｜image｜>', '<｜latest_reminder｜>', '<｜fim▁hole｜>',
];
const SPACES = [' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', '\r', ' \n', '\u00a0', '\u3000',
  '\u2028', '\u0085', '\u200b', '\u2003', '\x0b', '\x0c', '\u1680', '\u202f'];
const WORDS = ['the', 'The', ' of', 'token', 'Hello', 'world', 'ing', 'un', "'s", "n't", 'DSML',
  'User', 'think', 'pad', 'x', 'a', 'I', 'é', 'ü', 'ß', '你好', '世界', 'です', '한국', 'мир'];

function randomString(r) {
  const pick = (a) => a[Math.floor(r() * a.length)];
  const atoms = 1 + Math.floor(r() * 24);
  let s = '';
  for (let i = 0; i < atoms; i++) {
    const k = r();
    if (k < 0.35) {
      let w = r() * RANGE_WEIGHT;
      let range = RANGES[0];
      for (const rg of RANGES) if ((w -= rg[2]) < 0) { range = rg; break; }
      const n = 1 + Math.floor(r() * 4);
      for (let j = 0; j < n; j++) s += String.fromCodePoint(range[0] + Math.floor(r() * (range[1] - range[0] + 1)));
    } else if (k < 0.55) {
      s += pick(WORDS);
    } else if (k < 0.7) {
      s += pick(SPACES).repeat(1 + Math.floor(r() * 3));
    } else if (k < 0.8) {
      s += String(Math.floor(r() * 10 ** (1 + Math.floor(r() * 9))));
    } else if (k < 0.9) {
      s += pick(SPECIALS);
    } else { // a fragment of a special token: a near-miss
      const t = pick(SPECIALS);
      const a = Math.floor(r() * t.length), b = a + 1 + Math.floor(r() * (t.length - a));
      s += [...t].slice(a, b).join('');
    }
  }
  return s;
}

function corpus(sourceDir, sharedDir) {
  const hand = fs.readFileSync(path.join(sourceDir, 'tests/data/tokenizer_corpus.jsonl'), 'utf8');
  for (const line of hand.split('\n')) if (line.trim()) out(JSON.parse(line));
  for (const doc of documents(sourceDir, sharedDir)) for (const c of chunks(doc, 4000)) out({ text: c });
  const r = rng(20240917);
  for (let i = 0; i < 1500; i++) out({ text: randomString(r) });
}

function bench(sourceDir, sharedDir, mb) {
  const docs = documents(sourceDir, sharedDir);
  const hand = fs.readFileSync(path.join(sourceDir, 'tests/data/tokenizer_corpus.jsonl'), 'utf8')
    .split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l).text);
  const r = rng(7);
  const pieces = [...docs.flatMap((d) => chunks(d, 4000)), ...hand];
  let bytes = 0, doc = '';
  while (bytes < mb * 1e6) {
    doc += pieces[Math.floor(r() * pieces.length)];
    if (doc.length > 20000) {
      out({ text: doc });
      bytes += Buffer.byteLength(doc);
      doc = '';
    }
  }
}

function ids(tokenizerPath) {
  const { Tokenizer } = require('tokenizers');
  const tok = Tokenizer.fromFile(tokenizerPath);
  const vocab = tok.getVocabSize(true);
  const r = rng(99);
  // the single-byte tokens of the bytes that only occur inside multi-byte UTF-8
  const byteIds = [];
  for (let b = 0x80; b < 0x100; b++) {
    const ch = b >= 0xa1 && b !== 0xad ? String.fromCharCode(b) : null;
    const id = ch ? tok.tokenToId(ch) : null;
    if (id != null) byteIds.push(id);
  }
  const lists = [];
  for (let i = 0; i < 300; i++) { // anything at all
    const n = 1 + Math.floor(r() * 40);
    lists.push(Array.from({ length: n }, () => Math.floor(r() * vocab)));
  }
  for (let i = 0; i < 200; i++) { // loose bytes of multi-byte characters, mixed with ASCII
    const n = 1 + Math.floor(r() * 12);
    lists.push(Array.from({ length: n }, () => r() < 0.8 ? byteIds[Math.floor(r() * byteIds.length)] : 32 + Math.floor(r() * 90)));
  }
  return { tok, lists, r };
}

async function idsMain(tokenizerPath) {
  const { tok, lists, r } = ids(tokenizerPath);
  // real encodings of random strings, cut at a random token: often mid-character
  for (let i = 0; i < 300; i++) {
    const enc = await tok.encode(randomString(r), null, { addSpecialTokens: false });
    const all = enc.getIds();
    lists.push(all.slice(0, Math.floor(r() * (all.length + 1))));
  }
  lists.push([]);
  for (const l of lists) out({ ids: l });
}

const [mode, a, b, c] = process.argv.slice(2);
if (mode === 'corpus' && a && b) corpus(a, b);
else if (mode === 'bench' && a && b && c) bench(a, b, Number(c));
else if (mode === 'ids' && a) idsMain(a).catch((e) => { console.error(e); process.exit(1); });
else {
  console.error('usage: node make_inputs.js corpus SOURCE_DIR SHARED_DIR | ids TOKENIZER.json | bench SOURCE_DIR SHARED_DIR MB');
  process.exit(2);
}
