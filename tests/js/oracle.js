// oracle.js: the Hugging Face tokenizers library (native binding, npm `tokenizers`) run over
// JSON lines, the reference that dsv4's tokenizer is compared with.
//
//   node oracle.js encode TOKENIZER.json IN.jsonl   {"text": ...} -> {"ids": [...]}
//   node oracle.js decode TOKENIZER.json IN.jsonl   {"ids": [...]} -> {"text": ...}
//
// Encoding is encode(text, null, {addSpecialTokens: false}), no BOS; decoding is
// decode(ids, skipSpecialTokens = false). Blank lines are skipped, as `dsv4 tokenize` does.
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
  const [mode, tokPath, inPath] = process.argv.slice(2);
  if (!['encode', 'decode'].includes(mode) || !tokPath || !inPath) {
    console.error('usage: node oracle.js encode|decode TOKENIZER.json IN.jsonl');
    process.exit(2);
  }
  const tok = Tokenizer.fromFile(tokPath);
  const lines = fs.readFileSync(inPath, 'utf8').split('\n').filter((l) => l.trim());
  const outLines = [];
  for (const line of lines) {
    const obj = JSON.parse(line);
    if (mode === 'encode') {
      const enc = await tok.encode(obj.text, null, { addSpecialTokens: false });
      outLines.push(JSON.stringify({ ids: enc.getIds() }));
    } else {
      outLines.push(JSON.stringify({ text: await tok.decode(obj.ids, false) }));
    }
  }
  process.stdout.write(outLines.join('\n') + (outLines.length ? '\n' : ''));
}
main().catch((e) => { console.error(e); process.exit(1); });
