// engram_vocab.js: DeepSeek-V4.1's Engram compressed vocabulary computed with the Hugging Face
// tokenizers library (npm `tokenizers`, the Rust implementation), the oracle of dsv4's
// dsv4_engram_token_map.
//
//   node engram_vocab.js TOKENIZER.json VOCAB   -> one compressed id per line, ids 0..VOCAB-1
//
// As the official engram.py: each id is decoded alone (decode([id], skipSpecialTokens=false));
// text holding U+FFFD is keyed by its raw token string; otherwise by the normalised text, or
// the text itself when that is empty; new ids in first-seen order. The normaliser is
// NFKC, NFD, StripAccents, Lowercase from the library; this binding's replace() takes only
// literal patterns, so the two regex steps ([ \t\r\n]+ -> " ", ^ $ -> U+E000) and Strip
// (Rust's char::is_whitespace, i.e. White_Space) are written here with the same definitions.
'use strict';
const { Tokenizer, sequenceNormalizer, nfkcNormalizer, nfdNormalizer, stripAccentsNormalizer, lowercase } =
  require('tokenizers');

async function main() {
  const [tokPath, vocabArg] = process.argv.slice(2);
  if (!tokPath || !vocabArg) {
    console.error('usage: node engram_vocab.js TOKENIZER.json VOCAB');
    process.exit(2);
  }
  const tok = Tokenizer.fromFile(tokPath);
  const norm = sequenceNormalizer([nfkcNormalizer(), nfdNormalizer(), stripAccentsNormalizer(), lowercase()]);
  const keys = new Map();
  const out = [];
  for (let id = 0; id < Number(vocabArg); id++) {
    const text = await tok.decode([id], false);
    let key;
    if (text.includes('\ufffd')) {
      key = tok.idToToken(id) ?? '';
    } else {
      let s = norm.normalizeString(text).replace(/[ \t\r\n]+/g, ' ');
      if (s === ' ') s = '\ue000';
      s = s.replace(/^\p{White_Space}+|\p{White_Space}+$/gu, '').replace(/\ue000/g, ' ');
      key = s.length ? s : text;
    }
    if (!keys.has(key)) keys.set(key, keys.size);
    out.push(keys.get(key));
  }
  process.stdout.write(out.join('\n') + '\n');
  console.error(`compressed vocabulary: ${keys.size} ids`);
}
main().catch((e) => { console.error(e); process.exit(1); });
