// serve_load.js: load generator for `dsv4 serve` (used by bench/serve_load.sh).
//
//   node serve_load.js URL throughput CLIENTS TOKENS   CLIENTS streams at once, TOKENS each
//   node serve_load.js URL cache WORDS                 one long prompt twice: times and cache hits
//
// Streams are read with fetch and parsed as SSE by hand, so the client costs little next to
// the server. Every stream must end with usage and [DONE]; anything else counts as an error.
// Prints one JSON line.
'use strict';

const [url, mode, a, b] = process.argv.slice(2);
const KEY = process.env.DSV4_KEY || 'none';

async function stream(i, tokens) {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` },
    body: JSON.stringify({
      model: 'deepseek-v4-flash', max_tokens: tokens, stream: true, stream_options: { include_usage: true },
      thinking: { type: 'disabled' }, seed: i,
      messages: [{ role: 'user', content: `Client ${i}: tell me a long story about the sea.` }],
    }),
  });
  if (r.status !== 200) return { error: `HTTP ${r.status}: ${await r.text()}` };
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '', usage = null, done = false, first = null, finish = null;
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    buf += dec.decode(value, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith('data: ')) continue;
      const data = ev.slice(6);
      if (data === '[DONE]') { done = true; continue; }
      const j = JSON.parse(data);
      if (j.usage) usage = j.usage;
      const c = j.choices && j.choices[0];
      if (c && c.delta && (c.delta.content || c.delta.reasoning_content) && first === null) first = performance.now() - t0;
      if (c && c.finish_reason) finish = c.finish_reason;
    }
  }
  if (!done || !usage || !finish) return { error: `stream ended early (done ${done}, usage ${!!usage}, finish ${finish})` };
  return { tokens: usage.completion_tokens, ttft: first, ms: performance.now() - t0 };
}

async function throughput(clients, tokens) {
  const t0 = performance.now();
  const res = await Promise.all(Array.from({ length: clients }, (_, i) => stream(i, tokens).catch((e) => ({ error: String(e) }))));
  const seconds = (performance.now() - t0) / 1000;
  const ok = res.filter((r) => !r.error);
  const total = ok.reduce((s, r) => s + r.tokens, 0);
  const ttft = ok.map((r) => r.ttft).sort((x, y) => x - y);
  console.log(JSON.stringify({
    clients, max_tokens: tokens, seconds: +seconds.toFixed(2), completion_tokens: total,
    tokens_per_s: +(total / seconds).toFixed(1), errors: res.length - ok.length,
    first_error: (res.find((r) => r.error) || {}).error,
    ttft_ms_median: ttft.length ? Math.round(ttft[ttft.length >> 1]) : null,
  }));
}

async function cache(words) {
  const base = 'the quick brown fox jumps over the lazy dog while counting'.split(' ');
  const text = Array.from({ length: words }, (_, i) => base[i % base.length] + (i % 13)).join(' ');
  const body = JSON.stringify({
    model: 'deepseek-v4-flash', max_tokens: 1, thinking: { type: 'disabled' },
    messages: [{ role: 'user', content: `${Date.now()} ${text}` }],
  });
  const ask = async () => {
    const t0 = performance.now();
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` }, body,
    });
    const j = await r.json();
    return { ms: +(performance.now() - t0).toFixed(1), usage: j.usage };
  };
  const first = await ask();
  const second = await ask();
  console.log(JSON.stringify({
    prompt_tokens: first.usage.prompt_tokens, first_ms: first.ms, first_cached: first.usage.prompt_cache_hit_tokens,
    second_ms: second.ms, second_cached: second.usage.prompt_cache_hit_tokens, speedup: +(first.ms / second.ms).toFixed(1),
  }));
}

(mode === 'throughput' ? throughput(Number(a), Number(b)) : cache(Number(a))).catch((e) => {
  console.error(e);
  process.exit(1);
});
