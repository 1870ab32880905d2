// errors.test.js: every error case over raw HTTP, and the server's robustness.
//
// Each bad request must get a 4xx (or a 503 when full) in the dialect's error shape with a
// message that names the problem; and afterwards the server must still answer and have no
// slot stuck. Requests are written by hand on sockets where the client library would refuse
// to send them (invalid UTF-8, oversized bodies, disconnects).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { URL, KEY, MODEL, health, waitIdle } = require('./common.js');

const { hostname, port } = new globalThis.URL(URL);

// One request on a fresh socket; returns {status, headers, body (string)}.
function raw(method, path, body, { headers = {}, auth = true } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), hostname);
    const buf = body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body);
    const h = { Host: `${hostname}:${port}`, Connection: 'close', 'Content-Type': 'application/json', ...headers };
    if (auth && KEY) h.Authorization = `Bearer ${KEY}`;
    if (!('Content-Length' in h) && !('Transfer-Encoding' in h)) h['Content-Length'] = buf.length;
    let head = `${method} ${path} HTTP/1.1\r\n`;
    for (const [k, v] of Object.entries(h)) if (v !== null) head += `${k}: ${v}\r\n`;
    s.write(head + '\r\n');
    s.write(buf);
    const chunks = [];
    s.on('data', (d) => chunks.push(d));
    // the server may answer before the whole body is sent (a 413) and close: writing then
    // fails, but the answer is there to read
    s.on('error', (e) => { if (!chunks.length) reject(e); });
    s.on('close', () => {
      if (!chunks.length) return;
      const text = Buffer.concat(chunks).toString('utf8');
      const [top, ...rest] = text.split('\r\n\r\n');
      const lines = top.split('\r\n');
      const headersOut = {};
      for (const l of lines.slice(1)) headersOut[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
      resolve({ status: Number(lines[0].split(' ')[1]), headers: headersOut, body: rest.join('\r\n\r\n') });
    });
  });
}

const post = (path, body, opts) => raw('POST', path, typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body), opts);

function openaiError(r, status, pattern) {
  assert.equal(r.status, status, r.body);
  const e = JSON.parse(r.body);
  assert.equal(typeof e.error.message, 'string');
  assert.equal(typeof e.error.type, 'string');
  if (pattern) assert.match(e.error.message, pattern);
}

function anthropicError(r, status, pattern) {
  assert.equal(r.status, status, r.body);
  const e = JSON.parse(r.body);
  assert.equal(e.type, 'error');
  assert.equal(typeof e.error.type, 'string');
  if (pattern) assert.match(e.error.message, pattern);
}

const chat = (extra) => ({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });
const msg = (extra) => ({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });

test('malformed bodies', async () => {
  openaiError(await post('/v1/chat/completions', '{"model": '), 400, /not valid JSON/);
  openaiError(await post('/v1/chat/completions', ''), 400, /not valid JSON/);
  openaiError(await post('/v1/chat/completions', '[1, 2]'), 400, /JSON object/);
  openaiError(await post('/v1/chat/completions', '{"a": 1} trailing'), 400, /not valid JSON/);
  anthropicError(await post('/v1/messages', '{"model": '), 400, /not valid JSON/);
  const head = Buffer.from('{"model": "deepseek-v4-flash", "messages": [{"role": "user", "content": "');
  const bad = Buffer.concat([head, Buffer.from([0xc3, 0x28]), Buffer.from('"}]}')]);
  openaiError(await post('/v1/chat/completions', bad), 400, new RegExp(`UTF-8 \\(byte offset ${head.length}\\)`));
  anthropicError(await post('/v1/messages', bad), 400, /UTF-8/);
});

test('wrong types and missing fields (OpenAI)', async () => {
  const cases = [
    [{ model: MODEL, max_tokens: 2 }, /messages: expected a non-empty list/],
    [chat({ model: undefined }), /model: missing/],
    [chat({ model: 'gpt-4o' }), /unknown model "gpt-4o"/],
    [chat({ model: 7 }), /model: expected a string/],
    [chat({ model: 'a' + 'é'.repeat(60) }), /unknown model "aé+/], // quoted and cut inside a character
    [chat({ messages: 'hi' }), /messages: expected a non-empty list/],
    [chat({ messages: [] }), /messages: expected a non-empty list/],
    [chat({ messages: ['hi'] }), /messages\[0\]: expected a message object/],
    [chat({ messages: [{ role: 'wizard', content: 'x' }] }), /messages\[0\]\.role: unknown role "wizard"/],
    [chat({ messages: [{ role: 'user', content: 5 }] }), /messages\[0\]\.content: expected a string/],
    [chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }), /content type "image_url" is not supported/],
    [chat({ temperature: 'hot' }), /temperature: expected a number/],
    [chat({ temperature: 3 }), /temperature: 3 is out of range/],
    [chat({ top_p: 2 }), /top_p: 2 is out of range/],
    [chat({ max_tokens: 0 }), /max_tokens: 0 is out of range/],
    [chat({ max_tokens: 'many' }), /max_tokens: expected an integer/],
    [chat({ max_tokens: 1.5 }), /max_tokens: expected an integer/],
    [chat({ stop: 5 }), /stop: expected a string or a list of strings/],
    [chat({ stop: [''] }), /stop: stop sequences must not be empty/],
    [chat({ stop: Array(17).fill('x') }), /at most 16 stop sequences/],
    [chat({ n: 2 }), /n: only 1 choice/],
    [chat({ stream: 'yes' }), /stream: expected true or false/],
    [chat({ top_logprobs: 2 }), /top_logprobs: needs "logprobs": true/],
    [chat({ logprobs: true, top_logprobs: 21 }), /top_logprobs: 21 is out of range/],
    [chat({ tools: {} }), /tools: expected a list/],
    [chat({ tools: [{ type: 'retrieval' }] }), /tools\[0\]\.type: "retrieval" is not supported/],
    [chat({ tools: [{ type: 'function', function: { description: 'x' } }] }), /tools\[0\]\.function\.name: expected a string/],
    [chat({ tool_choice: 'required' }), /tool_choice: "required" needs tools/],
    [chat({ tool_choice: 'sometimes' }), /tool_choice: expected/],
    [chat({ tools: [{ type: 'function', function: { name: 'a' } }], tool_choice: { type: 'function', function: { name: 'b' } } }), /no tool named "b"/],
    [chat({ response_format: { type: 'xml' } }), /response_format\.type/],
    [chat({ thinking: { type: 'sometimes' } }), /thinking: expected/],
    [chat({ reasoning_effort: 'extreme' }), /reasoning_effort: expected/],
    [chat({ messages: [{ role: 'assistant', content: 'x', tool_calls: [{ type: 'function', function: { name: 'f', arguments: '[1]' } }] }, { role: 'user', content: 'y' }] }), /arguments: JSON but not an object/],
    [chat({ stream_options: 'all' }), /stream_options: expected an object/],
    [chat({ logit_bias: [1] }), /logit_bias: expected an object/],
    [chat({ logit_bias: { hello: 1 } }), /logit_bias: "hello" is not a token id/],
    [chat({ logit_bias: { '-3': 1 } }), /logit_bias: "-3" is not a token id/],
    [chat({ logit_bias: { 99999999: 1 } }), /logit_bias: "99999999" is not a token id/],
    [chat({ logit_bias: { 5: 'up' } }), /logit_bias\["5"\]: expected a number/],
    [chat({ logit_bias: { 5: 101 } }), /logit_bias\["5"\]: 101 is out of range/],
    [chat({ ignore_eos: 'yes' }), /ignore_eos: expected true or false/],
  ];
  for (const [body, pattern] of cases) openaiError(await post('/v1/chat/completions', body), 400, pattern);
  openaiError(await post('/v1/completions', { model: MODEL, prompt: 5 }), 400, /prompt: expected a string/);
  openaiError(await post('/v1/completions', { model: MODEL, prompt: 'x', echo: true }), 400, /echo: not supported/);
});

test('wrong types and missing fields (Anthropic)', async () => {
  const cases = [
    [msg({ max_tokens: undefined }), /max_tokens: missing/],
    [msg({ model: 'gpt-4o' }), /unknown model/],
    [msg({ messages: [] }), /messages: expected a non-empty list/],
    [msg({ messages: [{ role: 'system', content: 'x' }] }), /messages\[0\]\.role: expected "user" or "assistant"/],
    [msg({ messages: [{ role: 'user', content: 7 }] }), /messages\[0\]\.content: expected a string or a list/],
    [msg({ messages: [{ role: 'user', content: [{ type: 'image', source: {} }] }] }), /content type "image" is not supported/],
    [msg({ messages: [{ role: 'user', content: [{ type: 'tool_result' }] }] }), /tool_use_id: expected a string/],
    [msg({ messages: [{ role: 'assistant', content: [{ type: 'tool_use', id: 'a', name: 'f', input: 'x' }] }] }), /tool_use block needs/],
    [msg({ system: 5 }), /system: expected a string or a list of text blocks/],
    [msg({ ignore_eos: 1 }), /ignore_eos: expected true or false/],
    [msg({ tools: [{ type: 'web_search_20250305', name: 'web_search' }] }), /tool type "web_search_20250305" is not supported/],
    [msg({ tools: [{ input_schema: {} }] }), /tools\[0\]: expected/],
    [msg({ tool_choice: { type: 'any' } }), /needs tools/],
    [msg({ tool_choice: { type: 'tool', name: 'x' }, tools: [{ name: 'y', input_schema: { type: 'object' } }] }), /no tool named "x"/],
    [msg({ thinking: { type: 'maybe' } }), /thinking: expected/],
    [msg({ stop_sequences: 5 }), /stop_sequences: expected/],
    [msg({ temperature: -1 }), /temperature: -1 is out of range/],
  ];
  for (const [body, pattern] of cases) anthropicError(await post('/v1/messages', body), 400, pattern);
});

test('a prompt longer than the context', async () => {
  const long = 'word '.repeat(6000);
  openaiError(await post('/v1/chat/completions', chat({ messages: [{ role: 'user', content: long }] })), 400, /context of \d+ tokens/);
  anthropicError(await post('/v1/messages', msg({ messages: [{ role: 'user', content: long }] })), 400, /context of \d+ tokens/);
  // counting is not generating: a count may exceed the context
  const c = await post('/v1/messages/count_tokens', { model: MODEL, messages: [{ role: 'user', content: long }] });
  assert.equal(c.status, 200, c.body);
  assert.ok(JSON.parse(c.body).input_tokens > 4096);
});

test('bodies over the size limit: announced and chunked', async () => {
  const big = '{"model": "x", "pad": "' + 'a'.repeat(1100 * 1024) + '"}';
  openaiError(await post('/v1/chat/completions', big), 413, /larger than this server's limit/);
  const chunked = Buffer.from(`${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`);
  anthropicError(await post('/v1/messages', chunked, { headers: { 'Transfer-Encoding': 'chunked', 'Content-Length': null } }), 413, /limit/);
});

test('authentication, unknown paths and methods', async () => {
  if (KEY) {
    openaiError(await post('/v1/chat/completions', chat(), { auth: false }), 401, /API key/);
    openaiError(await post('/v1/chat/completions', chat(), { auth: false, headers: { Authorization: 'Bearer wrong' } }), 401);
    anthropicError(await post('/v1/messages', msg(), { auth: false, headers: { 'x-api-key': 'wrong' } }), 401, /API key/);
    const ok = await post('/v1/messages', msg(), { auth: false, headers: { 'x-api-key': KEY } });
    assert.equal(ok.status, 200, ok.body);
    assert.equal((await raw('GET', '/health', undefined, { auth: false })).status, 200);
  }
  openaiError(await raw('GET', '/v1/nothing'), 404, /no such endpoint/);
  openaiError(await raw('GET', '/v1/chat/completions'), 405, /use POST/);
  openaiError(await raw('GET', '/v1/models/gpt-4o'), 404, /does not exist/);
  // the paths without /v1 and with DeepSeek's prefixes
  assert.equal((await post('/chat/completions', chat())).status, 200);
  assert.equal((await post('/anthropic/v1/messages', msg())).status, 200);
  assert.equal((await post('/beta/completions', { model: MODEL, prompt: 'x', max_tokens: 1 })).status, 200);
});

// Open a streaming request and return the socket once its first event has arrived (a reply
// that is not a stream fails the test).
function openStream(body, path = '/v1/chat/completions') {
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), hostname);
    const data = JSON.stringify(body);
    s.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${KEY}\r\n` +
      `Content-Length: ${Buffer.byteLength(data)}\r\n\r\n${data}`);
    let got = '';
    s.on('error', reject);
    s.on('data', (d) => {
      got += d.toString();
      if (s.got !== undefined || !got.includes('\r\n\r\n')) return;
      if (!got.startsWith('HTTP/1.1 200')) { s.destroy(); reject(new Error(`not a stream: ${got}`)); }
      else if (got.includes('data:')) { s.got = got; resolve(s); }
    });
  });
}

async function waitActive(n, ms = 5000) {
  const t0 = Date.now();
  while ((await health()).slots.active < n) {
    if (Date.now() - t0 > ms) throw new Error(`fewer than ${n} active sequences after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a client that disconnects frees its slot at once', async () => {
  await waitIdle();
  const before = (await health()).engine.jobs_cancelled;
  const s = await openStream(chat({ max_tokens: 100000, stream: true, ignore_eos: true, thinking: { type: 'disabled' } }));
  await waitActive(1);
  s.destroy();
  const h = await waitIdle(2000);
  assert.equal(h.engine.jobs_cancelled, before + 1);
  // the same for a request that is not streamed
  const t = net.connect(Number(port), hostname);
  const data = JSON.stringify(chat({ max_tokens: 100000, ignore_eos: true }));
  t.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: ${data.length}\r\n\r\n${data}`);
  await waitActive(1);
  t.destroy();
  assert.equal((await waitIdle(2000)).engine.jobs_cancelled, before + 2);
});

test('a full queue answers 503 with Retry-After; queued streams get keep-alives', async () => {
  const h0 = await waitIdle();
  const capacity = h0.slots.parallel + h0.slots.queue;
  const streams = [];
  for (let i = 0; i < capacity; i++)
    streams.push(await openStream(msg({ max_tokens: 100000, stream: true, ignore_eos: true, thinking: { type: 'disabled' } }), '/v1/messages'));
  const r = await post('/v1/chat/completions', chat());
  openaiError(r, 503, /busy/);
  assert.equal(r.headers['retry-after'], '1');
  anthropicError(await post('/v1/messages', msg()), 503, /busy/);
  // the last stream waits in the queue: it is sent pings (--keepalive 1 in the test)
  const last = streams[streams.length - 1];
  let seen = '';
  last.on('data', (d) => { seen += d.toString(); });
  await new Promise((res) => setTimeout(res, 1500));
  assert.ok(((last.got + seen).match(/event: ping/g) || []).length >= 2, last.got + seen); // the first follows message_start
  for (const s of streams) s.destroy();
  await waitIdle(3000);
  assert.equal((await post('/v1/chat/completions', chat())).status, 200);
});

test('keep-alive connections serve several requests', async () => {
  const agentBody = JSON.stringify(chat());
  const results = await new Promise((resolve, reject) => {
    const s = net.connect(Number(port), hostname);
    const one = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: ${agentBody.length}\r\n\r\n${agentBody}`;
    let got = '';
    s.write(one);
    s.on('data', (d) => {
      got += d.toString();
      const n = (got.match(/HTTP\/1\.1 200/g) || []).length;
      if (n === 1 && !s.second && got.includes('"usage"')) { s.second = true; s.write(one); }
      if (n === 2 && got.lastIndexOf('"usage"') > got.lastIndexOf('HTTP/1.1 200')) { s.destroy(); resolve(n); }
    });
    s.on('error', reject);
  });
  assert.equal(results, 2);
});

test('the server is healthy afterwards, no slot stuck', async () => {
  const h = await waitIdle();
  assert.equal(h.status, 'ok');
  assert.equal(h.engine.jobs_failed, 0);
});
