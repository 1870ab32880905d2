// tokenizer_bench.js: encoding speed of the Hugging Face tokenizers library (native binding).
//
//   node tokenizer_bench.js TOKENIZER.json IN.jsonl
//
// Times encode(text, null, {addSpecialTokens: false}) over every {"text": ...} line, one call
// at a time, best of 3 passes, and prints "hf: BYTES bytes, TOKENS tokens, SECONDS s, MB/s".
// It also prints the same for encodeBatch, which spreads the lines over all cores.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '../tests/js/node_modules/tokenizers'));

async function main() {
  const [tokPath, inPath] = process.argv.slice(2);
  const tok = Tokenizer.fromFile(tokPath);
  const texts = fs.readFileSync(inPath, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l).text);
  const bytes = texts.reduce((s, t) => s + Buffer.byteLength(t), 0);
  const opts = { addSpecialTokens: false };
  let best = Infinity, tokens = 0;
  for (let pass = 0; pass < 3; pass++) {
    tokens = 0;
    const t0 = process.hrtime.bigint();
    for (const t of texts) tokens += (await tok.encode(t, null, opts)).getIds().length;
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  console.log(`hf: ${bytes} bytes, ${tokens} tokens, ${best.toFixed(3)} s, ${(bytes / best / 1e6).toFixed(2)} MB/s`);
  const t0 = process.hrtime.bigint();
  await tok.encodeBatch(texts, opts);
  const batch = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`hf-batch (all cores): ${(bytes / batch / 1e6).toFixed(2)} MB/s`);
}
main().catch((e) => { console.error(e); process.exit(1); });
