// common.js: what the server tests share: where the server is, and small helpers.
//
// The driver (tests/serve.test.sh) starts `dsv4 serve` on the random test model with the
// scripted replies of script.json and passes DSV4_URL and DSV4_KEY. Replies that a test checks
// word for word come from that script; everything else is sampled from random weights, so
// those tests check the protocol (shapes, counts, finish reasons), not the text.
'use strict';

const URL = process.env.DSV4_URL;
const KEY = process.env.DSV4_KEY || '';
if (!URL) {
  console.error('DSV4_URL is not set (run through tests/serve.test.sh)');
  process.exit(2);
}

const MODEL = 'deepseek-v4-flash';

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the weather forecast for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, days: { type: 'integer' } },
      required: ['city'],
    },
  },
};

async function health() {
  const r = await fetch(`${URL}/health`);
  return r.json();
}

// Wait until no sequence is active (a cancelled request frees its slot within a step).
async function waitIdle(ms = 5000) {
  const t0 = Date.now();
  for (;;) {
    const h = await health();
    if (h.slots.active === 0 && h.slots.waiting === 0) return h;
    if (Date.now() - t0 > ms) throw new Error(`server still busy after ${ms} ms: ${JSON.stringify(h.slots)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// A user message long enough to be cached (the cache keeps prefixes of 16 tokens or more).
function longText(words) {
  const base = 'the quick brown fox jumps over the lazy dog while counting';
  const out = [];
  for (let i = 0; i < words; i++) out.push(base.split(' ')[i % 10] + (i % 7));
  return out.join(' ');
}

module.exports = { URL, KEY, MODEL, WEATHER_TOOL, health, waitIdle, longText };
