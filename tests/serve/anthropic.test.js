// anthropic.test.js: the server driven by the official `@anthropic-ai/sdk` npm client.
//
// Messages with thinking on and off, the streaming event sequence (checked event by event and
// through the SDK's own accumulator), a tool_use round trip with the tool_result sent back,
// stop_sequences, system blocks, count_tokens, cache usage, and the SDK's view of an error.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const Anthropic = require('@anthropic-ai/sdk').default;
const { URL, KEY, longText } = require('./common.js');

const client = new Anthropic({ baseURL: URL, apiKey: KEY, maxRetries: 0 });
const MODEL = 'deepseek-v4-flash';

const WEATHER = {
  name: 'get_weather',
  description: 'Get the weather forecast for a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] },
};

function checkUsage(u) {
  assert.equal(typeof u.input_tokens, 'number');
  assert.equal(typeof u.output_tokens, 'number');
  assert.equal(typeof u.cache_read_input_tokens, 'number');
}

test('message, thinking disabled: one text block', async () => {
  const m = await client.messages.create({
    model: MODEL, max_tokens: 6, messages: [{ role: 'user', content: 'Hello' }], thinking: { type: 'disabled' },
  });
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.ok(m.id.startsWith('msg_'));
  assert.equal(m.content.length, 1);
  assert.equal(m.content[0].type, 'text');
  assert.ok(['max_tokens', 'end_turn'].includes(m.stop_reason));
  checkUsage(m.usage);
  if (m.stop_reason === 'max_tokens') assert.equal(m.usage.output_tokens, 6);
});

test('message, thinking on (scripted): a thinking block then text', async () => {
  const m = await client.messages.create({
    model: 'claude-sonnet-4-5', max_tokens: 100, thinking: { type: 'enabled', budget_tokens: 1024 },
    system: [{ type: 'text', text: 'You are terse.' }, { type: 'text', text: 'Answer with a number.' }],
    messages: [{ role: 'user', content: [{ type: 'text', text: 'Think about it: six times seven?' }] }],
  });
  assert.equal(m.model, 'claude-sonnet-4-5');
  assert.deepEqual(m.content.map((b) => b.type), ['thinking', 'text']);
  assert.equal(m.content[0].thinking, 'Let me think step by step.');
  assert.equal(typeof m.content[0].signature, 'string');
  assert.equal(m.content[1].text, 'The answer is 42.');
  assert.equal(m.stop_reason, 'end_turn');
});

test('stream: the event sequence, and the SDK accumulates the same message', async () => {
  const stream = client.messages.stream({
    model: MODEL, max_tokens: 100, messages: [{ role: 'user', content: 'Think about it: six times seven?' }],
  });
  const types = [];
  stream.on('streamEvent', (e) => types.push(e.type));
  const m = await stream.finalMessage();
  assert.equal(types[0], 'message_start');
  assert.equal(types[types.length - 1], 'message_stop');
  assert.equal(types[types.length - 2], 'message_delta');
  const starts = types.filter((t) => t === 'content_block_start').length;
  assert.equal(starts, types.filter((t) => t === 'content_block_stop').length);
  assert.equal(starts, 2);
  assert.deepEqual(m.content.map((b) => b.type), ['thinking', 'text']);
  assert.equal(m.content[0].thinking, 'Let me think step by step.');
  assert.equal(m.content[0].signature, 'dsv4');
  assert.equal(m.content[1].text, 'The answer is 42.');
  assert.equal(m.stop_reason, 'end_turn');
  checkUsage(m.usage);
  assert.ok(m.usage.output_tokens > 5);
});

test('tool_use round trip with tool_result; the second turn is cached', async () => {
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const m1 = await client.messages.create({ model: MODEL, max_tokens: 300, tools: [WEATHER], messages });
  assert.equal(m1.stop_reason, 'tool_use');
  assert.deepEqual(m1.content.map((b) => b.type), ['thinking', 'tool_use']);
  const use = m1.content[1];
  assert.equal(use.name, 'get_weather');
  assert.deepEqual(use.input, { city: 'Paris', days: 3 });
  assert.ok(use.id.startsWith('toolu_'));
  messages.push({ role: 'assistant', content: m1.content });
  messages.push({ role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: [{ type: 'text', text: 'sunny, 25C' }] }] });
  const m2 = await client.messages.create({ model: MODEL, max_tokens: 300, tools: [WEATHER], messages });
  assert.equal(m2.stop_reason, 'end_turn');
  assert.equal(m2.content[m2.content.length - 1].text, 'It is sunny in Paris.');
  const prompt1 = m1.usage.input_tokens + m1.usage.cache_read_input_tokens;
  assert.ok(m2.usage.cache_read_input_tokens >= prompt1, JSON.stringify(m2.usage));
});

test('streamed tool_use: input_json_delta pieces parse to the input', async () => {
  const stream = client.messages.stream({
    model: MODEL, max_tokens: 300, tools: [WEATHER], tool_choice: { type: 'auto' },
    messages: [{ role: 'user', content: 'Tell me the weather in Paris' }],
  });
  let partial = '';
  stream.on('streamEvent', (e) => {
    if (e.type === 'content_block_delta' && e.delta.type === 'input_json_delta') partial += e.delta.partial_json;
  });
  const m = await stream.finalMessage();
  assert.equal(m.stop_reason, 'tool_use');
  const use = m.content.find((b) => b.type === 'tool_use');
  assert.deepEqual(use.input, { city: 'Paris', days: 3 });
  assert.deepEqual(JSON.parse(partial), use.input);
});

test('tool_choice tool forces the named tool', async () => {
  const m = await client.messages.create({
    model: MODEL, max_tokens: 40, tools: [WEATHER], tool_choice: { type: 'tool', name: 'get_weather' },
    thinking: { type: 'disabled' }, messages: [{ role: 'user', content: 'Hello' }],
  });
  const use = m.content.find((b) => b.type === 'tool_use');
  assert.ok(use, JSON.stringify(m.content));
  assert.equal(use.name, 'get_weather');
});

test('stop_sequences: stop_reason stop_sequence names it', async () => {
  const m = await client.messages.create({
    model: MODEL, max_tokens: 100, stop_sequences: ['STOP'], thinking: { type: 'disabled' },
    messages: [{ role: 'user', content: 'Say the magic words' }],
  });
  assert.equal(m.stop_reason, 'stop_sequence');
  assert.equal(m.stop_sequence, 'STOP');
  assert.equal(m.content[0].text, 'alpha beta ');
});

test('count_tokens and cache reads', async () => {
  const body = { model: MODEL, messages: [{ role: 'user', content: `${process.pid}-${Date.now()} ${longText(200)}` }] };
  const c = await client.messages.countTokens(body);
  assert.ok(c.input_tokens > 100);
  const a = await client.messages.create({ ...body, max_tokens: 1, thinking: { type: 'disabled' } });
  const b = await client.messages.create({ ...body, max_tokens: 1, thinking: { type: 'disabled' } });
  assert.equal(a.usage.input_tokens + a.usage.cache_read_input_tokens, b.usage.input_tokens + b.usage.cache_read_input_tokens);
  assert.ok(b.usage.cache_read_input_tokens > 0);
  assert.equal(b.usage.input_tokens, 0);
});

test('errors come back as Anthropic errors', async () => {
  await assert.rejects(
    client.messages.create({ model: 'gpt-4o', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 400 && e.error.type === 'error' && e.error.error.type === 'invalid_request_error' &&
      /unknown model/.test(e.error.error.message));
});
