// serve_fuzz.js: throws malformed and mutated requests at `dsv4 serve` (see bench/serve_fuzz.sh).
//
//   node serve_fuzz.js URL SECONDS [SEED] [CONCURRENCY]
//
// Each request starts from a valid one (OpenAI chat with tools and tool results, completions
// with FIM, Anthropic messages with every block type, count_tokens) and is mutated: fields
// dropped, retyped (numbers, strings, lists, objects, null, booleans), set to extreme values or
// long strings, nested deeply; the JSON text truncated or spliced with random and invalid UTF-8
// bytes; the HTTP framing broken (wrong Content-Length, chunked, random paths and methods); or
// the client hangs up in the middle of the upload or the stream. Written on raw sockets.
//
// A finding is a 5xx other than 503, a reply that is not HTTP, an error body that is not the
// dialect's JSON error shape, or a connection the server drops on a request it had received
// whole. Prints a JSON summary; exits 1 on findings.
'use strict';
const net = require('node:net');

const [url, secondsArg, seedArg, concArg] = process.argv.slice(2);
const { hostname, port } = new URL(url);
const KEY = process.env.DSV4_KEY || '';
const SECONDS = Number(secondsArg || 60), CONC = Number(concArg || 8);

// xorshift32: a repeatable run for a given seed
let state = Number(seedArg || 1) >>> 0 || 1;
function rnd() {
  state ^= state << 13; state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5; state >>>= 0;
  return state / 4294967296;
}
const pick = (a) => a[Math.floor(rnd() * a.length)];
const int = (n) => Math.floor(rnd() * n);

const tool = { type: 'function', function: { name: 'get_weather', description: 'w', parameters: { type: 'object', properties: { city: { type: 'string' } } } } };
const seeds = [
  ['/v1/chat/completions', () => ({
    model: 'deepseek-v4-flash', max_tokens: 1 + int(4), stream: rnd() < 0.5, tools: [tool],
    stream_options: { include_usage: true }, logprobs: rnd() < 0.3, top_logprobs: 2, stop: ['x'],
    thinking: { type: pick(['enabled', 'disabled']) }, reasoning_effort: pick(['high', 'max', 'low']),
    tool_choice: pick(['auto', 'none', 'required', { type: 'function', function: { name: 'get_weather' } }]),
    response_format: { type: pick(['text', 'json_object']) },
    messages: [
      { role: 'system', content: 'sys' },
      { role: 'user', content: [{ type: 'text', text: 'weather?' }] },
      { role: 'assistant', content: '', reasoning_content: 'r', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: 'sunny' },
      { role: 'user', content: 'thanks' },
    ],
  })],
  ['/v1/completions', () => ({ model: 'deepseek-v4-flash', prompt: 'def f(', suffix: rnd() < 0.5 ? 'return 1' : undefined, max_tokens: 1 + int(3), stream: rnd() < 0.5, logprobs: 1 })],
  ['/v1/messages', () => ({
    model: pick(['deepseek-v4-flash', 'claude-sonnet-4']), max_tokens: 1 + int(4), stream: rnd() < 0.5,
    system: [{ type: 'text', text: 'sys' }], stop_sequences: ['x'], thinking: { type: pick(['enabled', 'disabled']) },
    tools: [{ name: 'get_weather', description: 'w', input_schema: { type: 'object' } }],
    tool_choice: pick([{ type: 'auto' }, { type: 'any' }, { type: 'none' }, { type: 'tool', name: 'get_weather' }]),
    messages: [
      { role: 'user', content: 'weather?' },
      { role: 'assistant', content: [{ type: 'thinking', thinking: 't', signature: 's' }, { type: 'text', text: 'a' }, { type: 'tool_use', id: 't1', name: 'get_weather', input: { city: 'P' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: 'sunny' }] }, { type: 'text', text: 'ok' }] },
    ],
  })],
  ['/v1/messages/count_tokens', () => ({ model: 'deepseek-v4-flash', messages: [{ role: 'user', content: 'hi' }] })],
];

const weird = () => pick([
  null, true, false, 0, -1, 1e308, -1e308, 2 ** 53 + 1, 0.5, NaN, '', 'x', 'x'.repeat(int(20000)),
  '\u0000', '\ud800', '<｜User｜>', '<｜DSML｜tool_calls>', '</think>', [], [null], {}, { type: 'text' },
  Array.from({ length: int(50) }, () => int(100)), JSON.parse('['.repeat(200) + ']'.repeat(200)),
]);

function mutate(v, depth = 0) {
  if (rnd() < 0.08) return weird();
  if (Array.isArray(v)) {
    const a = v.map((x) => mutate(x, depth + 1));
    if (rnd() < 0.1 && a.length) a.splice(int(a.length), 1);
    if (rnd() < 0.1) a.push(weird());
    if (rnd() < 0.05) a.reverse();
    return a;
  }
  if (v && typeof v === 'object') {
    const o = {};
    for (const [k, x] of Object.entries(v)) {
      if (rnd() < 0.07) continue; // dropped
      o[rnd() < 0.02 ? k + 'x' : k] = mutate(x, depth + 1);
    }
    if (rnd() < 0.05) o[pick(['role', 'content', 'type', 'n', 'max_tokens', 'tools', 'stream'])] = weird();
    return o;
  }
  return v;
}

function bodyBytes(obj) {
  let s = JSON.stringify(obj);
  if (s === undefined) s = 'null';
  const r = rnd();
  if (r < 0.05) return Buffer.from(s.slice(0, int(s.length)));           // truncated
  if (r < 0.10) {                                                           // random bytes spliced in
    const b = Buffer.from(s), at = int(b.length);
    const junk = Buffer.from(Array.from({ length: 1 + int(8) }, () => int(256)));
    return Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]);
  }
  if (r < 0.12) return Buffer.from(Array.from({ length: int(3000) }, () => int(256))); // noise
  if (r < 0.14) return Buffer.from(s.replace(/"max_tokens":\d+/, '"max_tokens":1,"max_tokens":2'));
  return Buffer.from(s);
}

const stats = { requests: 0, byStatus: {}, hangups: 0, findings: [] };

function finding(what, req) {
  if (stats.findings.length < 20) stats.findings.push({ what, req: req.slice(0, 300) });
}

function one() {
  return new Promise((resolve) => {
    const [path0, make] = pick(seeds);
    const path = rnd() < 0.03 ? pick(['/', '/v1', '/v1/models/x', '/v1/chat/completions/../x', '/%00', '/v1/messages?x=1']) : path0;
    const method = rnd() < 0.03 ? pick(['GET', 'PUT', 'DELETE', 'OPTIONS']) : 'POST';
    const body = bodyBytes(mutate(make()));
    const hang = rnd() < 0.07 ? pick(['upload', 'stream']) : null;
    const framing = rnd();
    const headers = [`${method} ${path} HTTP/1.1`, 'Host: fuzz', 'Content-Type: application/json', 'Connection: close'];
    if (rnd() < 0.97) headers.push(rnd() < 0.5 ? `Authorization: Bearer ${KEY}` : `x-api-key: ${KEY}`);
    let payload = body;
    if (framing < 0.08) {
      headers.push('Transfer-Encoding: chunked');
      payload = Buffer.concat([Buffer.from(body.length.toString(16) + '\r\n'), body, Buffer.from('\r\n0\r\n\r\n')]);
    } else if (framing < 0.10) {
      headers.push(`Content-Length: ${body.length + 1 + int(10)}`); // promises more than it sends
    } else {
      headers.push(`Content-Length: ${body.length}`);
    }
    const s = net.connect(Number(port), hostname);
    const chunks = [];
    let closedByUs = false, sentAll = false;
    const timer = setTimeout(() => { closedByUs = true; s.destroy(); }, framing >= 0.08 && framing < 0.10 ? 300 : 15000);
    s.on('connect', () => {
      s.write(headers.join('\r\n') + '\r\n\r\n');
      if (hang === 'upload') {
        s.write(payload.subarray(0, int(payload.length)));
        setTimeout(() => { closedByUs = true; s.destroy(); }, int(50));
      } else {
        s.write(payload, () => { sentAll = true; });
      }
    });
    s.on('data', (d) => {
      chunks.push(d);
      if (hang === 'stream' && !closedByUs) { closedByUs = true; setTimeout(() => s.destroy(), int(100)); }
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      stats.requests++;
      const text = Buffer.concat(chunks).toString('utf8');
      const req = `${method} ${path} ${body.toString('utf8')}`;
      if (closedByUs) { stats.hangups++; return resolve(); }
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      if (!m) {
        if (sentAll) finding('connection closed without a reply', req);
        return resolve();
      }
      const status = Number(m[1]);
      stats.byStatus[status] = (stats.byStatus[status] || 0) + 1;
      if (status >= 500 && status !== 503) finding(`status ${status}: ${text.slice(0, 200)}`, req);
      if (status >= 400 && !text.includes('text/event-stream')) {
        const bodyText = text.slice(text.indexOf('\r\n\r\n') + 4);
        try {
          const e = JSON.parse(bodyText);
          const ok = (e.error && typeof e.error.message === 'string') || (e.type === 'error' && e.error && typeof e.error.message === 'string');
          if (!ok) finding(`error without the error shape: ${bodyText.slice(0, 200)}`, req);
        } catch (_) {
          finding(`error body is not JSON: ${bodyText.slice(0, 200)}`, req);
        }
      }
      resolve();
    });
  });
}

async function worker(deadline) {
  while (Date.now() < deadline) await one();
}

(async () => {
  const deadline = Date.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: CONC }, () => worker(deadline)));
  console.log(JSON.stringify(stats, null, 1));
  process.exit(stats.findings.length ? 1 : 0);
})();
