// openai.test.js: the server driven by the official `openai` npm client.
//
// Non-streaming and streaming chat, thinking on and off, a tool-call round trip with the result
// sent back (reasoning_content replayed), streamed tool-call deltas, tool_choice, logprobs, stop
// sequences, response_format, prefix completion, legacy and FIM completions, usage and context
// caching, and several requests at once.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const OpenAI = require('openai').default;
const { URL, KEY, MODEL, WEATHER_TOOL, waitIdle, longText } = require('./common.js');

const client = new OpenAI({ baseURL: `${URL}/v1`, apiKey: KEY, maxRetries: 0 });

function checkUsage(u, completion) {
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  assert.equal(u.prompt_cache_hit_tokens + u.prompt_cache_miss_tokens, u.prompt_tokens);
  assert.equal(u.prompt_tokens_details.cached_tokens, u.prompt_cache_hit_tokens);
  if (completion !== undefined) assert.equal(u.completion_tokens, completion);
}

test('models', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes('deepseek-v4-flash') && ids.includes('deepseek-v4-pro'), ids.join(','));
  const one = await client.models.retrieve('deepseek-v4-pro');
  assert.equal(one.id, 'deepseek-v4-pro');
});

test('chat, thinking off: sampled text, finish length, usage', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 6, thinking: { type: 'disabled' },
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, MODEL);
  const c = r.choices[0];
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.equal(c.message.reasoning_content, undefined);
  assert.ok(['length', 'stop'].includes(c.finish_reason));
  checkUsage(r.usage, c.finish_reason === 'length' ? 6 : undefined);
  assert.equal(r.usage.completion_tokens_details.reasoning_tokens, 0);
});

test('chat, thinking on (scripted): reasoning_content and content', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Think about it: what is six times seven?' }], max_tokens: 100,
  });
  const m = r.choices[0].message;
  assert.equal(m.reasoning_content, 'Let me think step by step.');
  assert.equal(m.content, 'The answer is 42.');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok(r.usage.completion_tokens_details.reasoning_tokens > 0);
  assert.ok(r.usage.completion_tokens_details.reasoning_tokens < r.usage.completion_tokens);
  // the same in a stream
  const s = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Think about it: what is six times seven?' }], max_tokens: 100,
    stream: true, stream_options: { include_usage: true },
  });
  let reasoning = '', content = '', finish = null, usage = null, role = null;
  for await (const ch of s) {
    if (ch.usage) usage = ch.usage;
    if (!ch.choices.length) continue;
    const d = ch.choices[0].delta;
    if (d.role) role = d.role;
    if (d.reasoning_content) reasoning += d.reasoning_content;
    if (d.content) content += d.content;
    if (ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason;
  }
  assert.equal(role, 'assistant');
  assert.equal(reasoning, 'Let me think step by step.');
  assert.equal(content, 'The answer is 42.');
  assert.equal(finish, 'stop');
  checkUsage(usage, r.usage.completion_tokens);
});

test('chat, thinking off (scripted): the reply has no reasoning', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Think about it: what is six times seven?' }], max_tokens: 100,
    thinking: { type: 'disabled' },
  });
  assert.equal(r.choices[0].message.content, 'The answer is 42.');
  assert.equal(r.choices[0].message.reasoning_content, undefined);
});

test('streaming with include_usage: chunks add up to the usage', async () => {
  const s = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Hi' }, { type: 'text', text: 'there' }] }],
    max_tokens: 7, stream: true, stream_options: { include_usage: true }, thinking: { type: 'disabled' },
  });
  let n = 0, finish = null, usage = null;
  for await (const ch of s) {
    assert.equal(ch.object, 'chat.completion.chunk');
    if (ch.usage) usage = ch.usage;
    if (ch.choices.length && ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason;
    n++;
  }
  assert.ok(n >= 3);
  assert.ok(['length', 'stop'].includes(finish));
  checkUsage(usage, finish === 'length' ? 7 : undefined);
});

test('tool call round trip, result sent back with reasoning_content; the second turn is cached', async () => {
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const r1 = await client.chat.completions.create({ model: MODEL, messages, tools: [WEATHER_TOOL], max_tokens: 300 });
  const m1 = r1.choices[0].message;
  assert.equal(r1.choices[0].finish_reason, 'tool_calls');
  assert.equal(m1.tool_calls.length, 1);
  const call = m1.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris', days: 3 });
  assert.ok(call.id.startsWith('call_'));
  assert.equal(m1.reasoning_content, 'The user wants the weather, so I call the tool.');
  messages.push(m1, { role: 'tool', tool_call_id: call.id, content: 'sunny, 25C' });
  const r2 = await client.chat.completions.create({ model: MODEL, messages, tools: [WEATHER_TOOL], max_tokens: 300 });
  assert.equal(r2.choices[0].message.content, 'It is sunny in Paris.');
  assert.equal(r2.choices[0].finish_reason, 'stop');
  checkUsage(r2.usage);
  // the first turn's prompt and output were cached: only the tool result is new
  assert.ok(r2.usage.prompt_cache_hit_tokens >= r1.usage.prompt_tokens, JSON.stringify(r2.usage));
});

test('streamed tool call: id and name first, then argument deltas', async () => {
  const s = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'And the weather in Paris tomorrow?' }], tools: [WEATHER_TOOL],
    max_tokens: 300, stream: true,
  });
  const calls = [];
  let finish = null, reasoning = '';
  for await (const ch of s) {
    const c = ch.choices[0];
    if (!c) continue;
    if (c.finish_reason) finish = c.finish_reason;
    if (c.delta.reasoning_content) reasoning += c.delta.reasoning_content;
    for (const tc of c.delta.tool_calls || []) {
      if (tc.id) calls[tc.index] = { id: tc.id, name: tc.function.name, args: tc.function.arguments || '' };
      else calls[tc.index].args += tc.function.arguments;
    }
  }
  assert.equal(finish, 'tool_calls');
  assert.equal(reasoning, 'The user wants the weather, so I call the tool.');
  assert.equal(calls.length, 1);
  assert.equal(calls[0].name, 'get_weather');
  assert.deepEqual(JSON.parse(calls[0].args), { city: 'Paris', days: 3 });
});

test('tool_choice: a named function is forced, none forbids calls', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Hello' }], tools: [WEATHER_TOOL], max_tokens: 40,
    tool_choice: { type: 'function', function: { name: 'get_weather' } }, thinking: { type: 'disabled' },
  });
  const m = r.choices[0].message;
  assert.ok(m.tool_calls && m.tool_calls.length >= 1, JSON.stringify(m));
  assert.equal(m.tool_calls[0].function.name, 'get_weather');
  const none = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Hello' }], tools: [WEATHER_TOOL], max_tokens: 12, tool_choice: 'none',
    thinking: { type: 'disabled' },
  });
  assert.equal(none.choices[0].message.tool_calls, undefined);
});

test('logprobs with top_logprobs', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, logprobs: true, top_logprobs: 3,
    thinking: { type: 'disabled' }, temperature: 0.7, seed: 7,
  });
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, r.usage.completion_tokens);
  for (const t of lp) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    assert.ok(Array.isArray(t.bytes));
    assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[2].logprob);
  }
  // the same seed gives the same text
  const again = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, thinking: { type: 'disabled' },
    temperature: 0.7, seed: 7,
  });
  assert.equal(again.choices[0].message.content, r.choices[0].message.content);
});

test('logit_bias and ignore_eos', async () => {
  const ask = (extra) => client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Bias me' }], max_tokens: 3, temperature: 0,
    thinking: { type: 'disabled' }, logprobs: true, ...extra,
  });
  // +100 on one token makes greedy decoding repeat it
  const lifted = await ask({ logit_bias: { 300: 100 } });
  const toks = lifted.choices[0].logprobs.content.map((t) => t.token);
  assert.equal(toks.length, 3);
  assert.ok(toks[0] === toks[1] && toks[1] === toks[2], JSON.stringify(toks));
  assert.equal(lifted.choices[0].message.content, toks.join(''));
  // the end-of-sentence token (id 1) lifted ends the reply at once; ignore_eos overrides it
  const eos = await ask({ logit_bias: { 1: 100 } });
  assert.equal(eos.choices[0].finish_reason, 'stop');
  assert.equal(eos.choices[0].message.content, '');
  const kept = await ask({ logit_bias: { 1: 100 }, ignore_eos: true, max_tokens: 8 });
  assert.equal(kept.choices[0].finish_reason, 'length');
  assert.equal(kept.usage.completion_tokens, 8);
  const free = await ask({ max_tokens: 8, ignore_eos: true });
  assert.equal(kept.choices[0].message.content, free.choices[0].message.content);
});

test('stop sequence ends the text before it', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Say the magic words' }], max_tokens: 100, stop: ['STOP'],
  });
  assert.equal(r.choices[0].message.content, 'alpha beta ');
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('response_format json_object, prefix completion, developer role are accepted', async () => {
  const plain = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Reply in JSON' }], max_tokens: 1, thinking: { type: 'disabled' },
  });
  const json = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Reply in JSON' }], max_tokens: 1, thinking: { type: 'disabled' },
    response_format: { type: 'json_object' },
  });
  assert.ok(json.usage.prompt_tokens > plain.usage.prompt_tokens); // the format instruction is in the prompt
  const prefix = await client.chat.completions.create({
    model: MODEL, max_tokens: 3, thinking: { type: 'disabled' },
    messages: [{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: 'Count' }, { role: 'assistant', content: 'one two', prefix: true }],
  });
  assert.equal(typeof prefix.choices[0].message.content, 'string');
});

test('completions: plain and fill-in-the-middle', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'def add(a, b):', max_tokens: 4, logprobs: 2 });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
  assert.equal(r.choices[0].logprobs.tokens.length, r.usage.completion_tokens);
  const fim = await client.completions.create({ model: MODEL, prompt: 'def add(a, b):\n    return ', suffix: '\n\nprint(add(1, 2))', max_tokens: 4 });
  assert.ok(fim.usage.prompt_tokens > r.usage.prompt_tokens);
  const s = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 4, stream: true });
  let text = '', finish = null;
  for await (const ch of s) {
    text += ch.choices[0].text;
    if (ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason;
  }
  assert.ok(['length', 'stop'].includes(finish));
});

test('context caching: a repeated long prompt reports cache hits', async () => {
  const messages = [{ role: 'user', content: `${process.pid}-${Date.now()} ${longText(300)}` }];
  const t0 = Date.now();
  const a = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 1, thinking: { type: 'disabled' } });
  const t1 = Date.now();
  const b = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 1, thinking: { type: 'disabled' } });
  const t2 = Date.now();
  assert.equal(a.usage.prompt_cache_hit_tokens, 0);
  assert.equal(b.usage.prompt_cache_hit_tokens, b.usage.prompt_tokens); // the whole prompt, with its logits
  assert.equal(b.usage.prompt_cache_miss_tokens, 0);
  console.log(`# cache: ${a.usage.prompt_tokens} prompt tokens, first ${t1 - t0} ms, cached ${t2 - t1} ms`);
});

test('several requests at once all complete', async () => {
  const jobs = [];
  for (let i = 0; i < 6; i++)
    jobs.push(client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: `Request number ${i}` }], max_tokens: 8, stream: i % 2 === 0,
      thinking: { type: 'disabled' },
    }).then(async (r) => {
      if (!r.choices) { let n = 0; for await (const ch of r) n++; return n > 0; }
      return r.choices[0].finish_reason !== null;
    }));
  const ok = await Promise.all(jobs);
  assert.ok(ok.every(Boolean));
  await waitIdle();
});
