/* openai.c: the OpenAI dialect (Chat Completions, Completions, Models), as DeepSeek speaks it.
 *
 * Request mapping (chat):
 *   messages           OpenAI messages; list-of-parts content is joined with "\n" (text parts
 *                      only; a tool result's parts are left to the encoding, which joins them);
 *                      "developer" is OpenAI's new name for "system" and is treated as one;
 *                      an assistant message with reasoning_content is replayed as such; a last
 *                      assistant message with "prefix": true is continued (DeepSeek's chat
 *                      prefix completion)
 *   tools, response_format   attached to the first system message (a blank one is added when
 *                      there is none), where V4's encoding renders them
 *   tool_choice        auto | none (the DSML token is masked) | required | {function: NAME}
 *                      (the DSML opening of a call is forced after the reasoning)
 *   thinking           {"type": "enabled"|"disabled"}, default enabled as on DeepSeek's API;
 *                      reasoning_effort low..high renders as "high", max as "max", none
 *                      disables thinking. In thinking mode temperature, top_p and the penalties
 *                      are ignored, as DeepSeek ignores them.
 *   logit_bias         {"token id": -100..100}, added to the logits before the penalties
 *   ignore_eos         (vLLM / llama.cpp extension) the end-of-sentence token is never sampled
 * Replies carry reasoning_content next to content, tool calls as tool_calls (streamed as
 * deltas: the first with id and name, then argument pieces), and DeepSeek's usage fields. */
#include <stdio.h>
#include <time.h>

#include "serve/server.h"

const char *dsv4_openai_finish(dsv4_finish f) {
    switch (f) {
    case DSV4_FINISH_LENGTH: return "length";
    case DSV4_FINISH_TOOL_CALLS: return "tool_calls";
    default: return "stop";
    }
}

static json_t *usage_json(const dsv4_job *j) {
    int hit = j->n_cached, miss = j->n_prompt - j->n_cached;
    return json_pack("{s:i, s:i, s:i, s:{s:i}, s:i, s:i, s:{s:i}}", "prompt_tokens", j->n_prompt, "completion_tokens",
                     j->n_generated, "total_tokens", j->n_prompt + j->n_generated, "prompt_tokens_details",
                     "cached_tokens", hit, "prompt_cache_hit_tokens", hit, "prompt_cache_miss_tokens", miss,
                     "completion_tokens_details", "reasoning_tokens", j->n_reasoning);
}

/* One entry of logprobs.content. */
static json_t *logprob_entry(const dsv4_server *srv, const dsv4_gen_token *t) {
    json_t *top = json_array();
    for (int k = 0; k < t->n_top; k++)
        json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token", dsv4_token_json_text(srv, t->top_ids[k]),
                                             "logprob", (double)t->top_logprobs[k], "bytes",
                                             dsv4_token_json_bytes(srv, t->top_ids[k])));
    return json_pack("{s:o, s:f, s:o, s:o}", "token", dsv4_token_json_text(srv, t->id), "logprob", (double)t->logprob,
                     "bytes", dsv4_token_json_bytes(srv, t->id), "top_logprobs", top);
}

/* The legacy completions form: tokens, token_logprobs, top_logprobs ({token: logprob}),
 * text_offset, for tokens[0..n) whose text starts at byte *offset. */
static json_t *legacy_logprobs(const dsv4_server *srv, const dsv4_gen_token *t, int n, size_t *offset) {
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (int i = 0; i < n; i++) {
        json_t *text = dsv4_token_json_text(srv, t[i].id);
        json_array_append_new(offs, json_integer((json_int_t)*offset));
        *offset += json_string_length(text);
        json_array_append_new(tokens, text);
        json_array_append_new(lps, json_real(t[i].logprob));
        json_t *top = json_object();
        for (int k = 0; k < t[i].n_top; k++) {
            json_t *tt = dsv4_token_json_text(srv, t[i].top_ids[k]);
            json_object_set_new(top, json_string_value(tt), json_real(t[i].top_logprobs[k]));
            json_decref(tt);
        }
        json_array_append_new(tops, top);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}

/* ---- the request ------------------------------------------------------------------------------ */

typedef struct params {
    const char *model;
    bool stream, include_usage, logprobs;
    long long top_logprobs, max_tokens;
} params;

/* Sampling, stop strings, logprobs and streaming fields, common to both endpoints. */
static bool common_fields(dsv4_server *srv, const json_t *body, bool thinking, dsv4_job *j, params *p,
                          dsv4_req_err *e) {
    dsv4_sampler_params sp = dsv4_sampler_defaults();
    double temperature = sp.temperature, top_p = sp.top_p, presence = 0, frequency = 0, min_p = 0, rep = 1;
    long long top_k = 0, seed = -1, n = 1;
    if (!dsv4_req_number(body, "temperature", 0, 2, &temperature, e) ||
        !dsv4_req_number(body, "top_p", 0, 1, &top_p, e) ||
        !dsv4_req_number(body, "presence_penalty", -2, 2, &presence, e) ||
        !dsv4_req_number(body, "frequency_penalty", -2, 2, &frequency, e) ||
        !dsv4_req_number(body, "min_p", 0, 1, &min_p, e) ||
        !dsv4_req_number(body, "repetition_penalty", 1e-3, 10, &rep, e) ||
        !dsv4_req_int(body, "top_k", 0, 1 << 30, &top_k, e) ||
        !dsv4_req_int(body, "seed", -(1LL << 62), 1LL << 62, &seed, e) || !dsv4_req_int(body, "n", 1, 128, &n, e) ||
        !dsv4_req_bool(body, "stream", &p->stream, e) || !dsv4_req_stops(body, "stop", j, e))
        return false;
    if (n != 1) return dsv4_req_fail(e, 400, "n: only 1 choice per request is supported");
    const json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return dsv4_req_fail(e, 400, "stream_options: expected an object");
        if (!dsv4_req_bool(so, "include_usage", &p->include_usage, e)) return false;
    }
    if (!thinking) { /* DeepSeek ignores these in thinking mode; so do we */
        sp.temperature = (float)temperature;
        sp.top_p = top_p > 0 ? (float)top_p : 1.0f;
        if (top_p <= 0) sp.temperature = 0;
        sp.presence_penalty = (float)presence;
        sp.frequency_penalty = (float)frequency;
        sp.min_p = (float)min_p;
        sp.top_k = (int)top_k;
        sp.repetition_penalty = (float)rep;
    }
    j->gen.sampling = sp;
    j->gen.seed = seed >= 0 ? (uint64_t)seed : dsv4_req_seed(srv);
    return dsv4_req_logit_bias(srv, body, true, j, e);
}

static bool max_tokens_field(const json_t *body, params *p, dsv4_req_err *e) {
    p->max_tokens = -1;
    long long a = -1, b = -1;
    if (!dsv4_req_int(body, "max_tokens", 1, 1LL << 31, &a, e) ||
        !dsv4_req_int(body, "max_completion_tokens", 1, 1LL << 31, &b, e))
        return false;
    p->max_tokens = b > 0 ? b : a;
    return true;
}

/* Text of a content value: a string, null, or a list of {"type": "text", "text": ...} parts. */
static bool content_text(const json_t *content, size_t i, json_t **out, dsv4_req_err *e) {
    if (!json_is_array(content)) {
        *out = json_incref((json_t *)content);
        return true;
    }
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    size_t k;
    const json_t *part;
    json_array_foreach(content, k, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        const json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !type) {
            dsv4_strbuf_free(&b);
            return dsv4_req_fail(e, 400, "messages[%zu].content[%zu]: expected {\"type\": \"text\", \"text\": ...}", i,
                                 k);
        }
        if (strcmp(type, "text")) {
            dsv4_strbuf_free(&b);
            return dsv4_req_fail(
                e, 400, "messages[%zu].content[%zu]: content type \"%.40s\" is not supported (text only)", i, k, type);
        }
        if (!json_is_string(text)) {
            dsv4_strbuf_free(&b);
            return dsv4_req_fail(e, 400, "messages[%zu].content[%zu].text: expected a string", i, k);
        }
        if (b.len) dsv4_strbuf_putc(&b, '\n');
        dsv4_strbuf_append(&b, json_string_value(text), json_string_length(text));
    }
    *out = json_stringn(b.data ? b.data : "", b.len);
    dsv4_strbuf_free(&b);
    return *out != NULL || dsv4_req_fail(e, 500, "out of memory");
}

/* The messages as text/chat.h reads them, with tools and response_format in place. */
static bool convert_messages(const json_t *in, const json_t *tools, const json_t *format, json_t **out,
                             dsv4_req_err *e) {
    if (!json_is_array(in) || !json_array_size(in)) return dsv4_req_fail(e, 400, "messages: expected a non-empty list");
    json_t *msgs = json_array();
    size_t i;
    const json_t *m;
    json_array_foreach(in, i, m) {
        if (!json_is_object(m)) {
            json_decref(msgs);
            return dsv4_req_fail(e, 400, "messages[%zu]: expected a message object", i);
        }
        json_t *c = json_copy((json_t *)m), *text = NULL;
        const char *role = json_string_value(json_object_get(c, "role"));
        if (role && !strcmp(role, "developer")) json_object_set_new(c, "role", json_string("system"));
        const json_t *content = json_object_get(c, "content");
        if (content &&
            !(role && !strcmp(role, "tool") && json_is_array(content))) { /* the encoding joins a tool's blocks */
            if (!content_text(content, i, &text, e)) {
                json_decref(c);
                json_decref(msgs);
                return false;
            }
            json_object_set_new(c, "content", text);
        }
        json_t *prefix = json_object_get(c, "prefix");
        if (prefix && json_is_true(prefix) && i + 1 == json_array_size(in) && role && !strcmp(role, "assistant"))
            json_object_set_new(c, "wo_eos", json_true());
        json_object_del(c, "prefix");
        json_array_append_new(msgs, c);
    }
    if (tools || format) {
        json_t *first = json_array_get(msgs, 0);
        const char *role = json_string_value(json_object_get(first, "role"));
        if (!role || strcmp(role, "system")) {
            first = json_pack("{s:s, s:s}", "role", "system", "content", "");
            json_array_insert_new(msgs, 0, first);
        }
        if (tools) json_object_set(first, "tools", (json_t *)tools);
        if (format) json_object_set(first, "response_format", (json_t *)format);
    }
    *out = msgs;
    return true;
}

/* tools: [{"type": "function", "function": {"name": ..., ...}}]; returns NULL for none. */
static bool tools_field(const json_t *body, const json_t **tools, dsv4_req_err *e) {
    const json_t *t = json_object_get(body, "tools");
    *tools = NULL;
    if (!t || json_is_null(t)) return true;
    if (!json_is_array(t)) return dsv4_req_fail(e, 400, "tools: expected a list");
    size_t i;
    const json_t *tool;
    json_array_foreach(t, i, tool) {
        const char *type = json_string_value(json_object_get(tool, "type"));
        const json_t *fn = json_object_get(tool, "function");
        if (!json_is_object(tool)) return dsv4_req_fail(e, 400, "tools[%zu]: expected an object", i);
        if (type && strcmp(type, "function"))
            return dsv4_req_fail(e, 400, "tools[%zu].type: \"%.40s\" is not supported (only \"function\")", i, type);
        if (!json_is_object(fn)) return dsv4_req_fail(e, 400, "tools[%zu].function: expected an object", i);
        if (!json_is_string(json_object_get(fn, "name")))
            return dsv4_req_fail(e, 400, "tools[%zu].function.name: expected a string", i);
    }
    *tools = json_array_size(t) ? t : NULL;
    return true;
}

static bool has_tool(const json_t *tools, const char *name) {
    size_t i;
    const json_t *t;
    json_array_foreach(
        tools, i,
        t) if (!strcmp(json_string_value(json_object_get(json_object_get(t, "function"), "name")), name)) return true;
    return false;
}

/* tool_choice: sets ban_dsml / the forced call opening. */
static bool tool_choice_field(dsv4_server *srv, const json_t *body, const json_t *tools, dsv4_job *j, dsv4_req_err *e) {
    const json_t *tc = json_object_get(body, "tool_choice");
    j->ban_dsml = !tools;
    if (!tc || json_is_null(tc)) return true;
    const char *mode = json_string_value(tc), *name = NULL;
    if (json_is_object(tc)) {
        const json_t *fn = json_object_get(tc, "function");
        name = json_string_value(json_object_get(fn, "name"));
        if (!name)
            return dsv4_req_fail(e, 400,
                                 "tool_choice: expected {\"type\": \"function\", \"function\": {\"name\": ...}}");
        mode = "named";
    } else if (!mode || (strcmp(mode, "auto") && strcmp(mode, "none") && strcmp(mode, "required"))) {
        return dsv4_req_fail(e, 400, "tool_choice: expected \"auto\", \"none\", \"required\" or a named function");
    }
    if (!strcmp(mode, "none")) {
        j->ban_dsml = true;
        return true;
    }
    if (!strcmp(mode, "auto")) return true;
    if (!tools) return dsv4_req_fail(e, 400, "tool_choice: \"%s\" needs tools", mode);
    if (name && !has_tool(tools, name))
        return dsv4_req_fail(e, 400, "tool_choice: no tool named \"%.100s\" in tools", name);
    return dsv4_req_force_tool(srv, j, name, e);
}

static bool response_format_field(const json_t *body, const json_t **format, dsv4_req_err *e) {
    const json_t *rf = json_object_get(body, "response_format");
    *format = NULL;
    if (!rf || json_is_null(rf)) return true;
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!json_is_object(rf) || !type) return dsv4_req_fail(e, 400, "response_format: expected {\"type\": ...}");
    if (!strcmp(type, "text")) return true;
    if (!strcmp(type, "json_object")) {
        *format = rf;
        return true;
    }
    if (!strcmp(type, "json_schema")) {
        const json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
        if (!json_is_object(schema))
            return dsv4_req_fail(e, 400, "response_format.json_schema.schema: expected an object");
        *format = schema;
        return true;
    }
    return dsv4_req_fail(e, 400, "response_format.type: expected \"text\", \"json_object\" or \"json_schema\"");
}

/* thinking and reasoning_effort into render options. */
static bool thinking_fields(const json_t *body, const char *model, dsv4_chat_opts *co, dsv4_req_err *e) {
    bool on = strcmp(model, "deepseek-chat") != 0;
    const json_t *th = json_object_get(body, "thinking");
    if (th && !json_is_null(th)) {
        const char *type = json_string_value(json_object_get(th, "type"));
        if (!json_is_object(th) || !type || (strcmp(type, "enabled") && strcmp(type, "disabled")))
            return dsv4_req_fail(e, 400, "thinking: expected {\"type\": \"enabled\"} or {\"type\": \"disabled\"}");
        on = !strcmp(type, "enabled");
    }
    const char *effort = NULL;
    if (!dsv4_req_string(body, "reasoning_effort", &effort, e)) return false;
    co->reasoning_effort = DSV4_EFFORT_HIGH;
    if (effort) {
        static const char *const high[] = {"minimal", "low", "medium", "high", "xhigh"};
        bool known = false;
        for (size_t i = 0; i < DSV4_ARRAY_LEN(high); i++) known |= !strcmp(effort, high[i]);
        if (!strcmp(effort, "max") || !strcmp(effort, "ultra"))
            co->reasoning_effort = DSV4_EFFORT_MAX;
        else if (!strcmp(effort, "none"))
            on = false;
        else if (!known)
            return dsv4_req_fail(e, 400, "reasoning_effort: expected none, minimal, low, medium, high, xhigh or max");
    }
    co->thinking_mode = on ? DSV4_MODE_THINKING : DSV4_MODE_CHAT;
    return true;
}

static bool logprob_fields(const json_t *body, params *p, dsv4_job *j, dsv4_req_err *e) {
    p->top_logprobs = -1;
    const json_t *lp = json_object_get(body, "logprobs");
    if (lp && json_is_integer(lp)) { /* the completions endpoint: an integer */
        if (!dsv4_req_int(body, "logprobs", 0, DSV4_MAX_TOP_LOGPROBS, &p->top_logprobs, e)) return false;
        p->logprobs = true;
    } else if (!dsv4_req_bool(body, "logprobs", &p->logprobs, e)) {
        return false;
    } else {
        long long top = -1;
        if (!dsv4_req_int(body, "top_logprobs", 0, DSV4_MAX_TOP_LOGPROBS, &top, e)) return false;
        if (top >= 0 && !p->logprobs) return dsv4_req_fail(e, 400, "top_logprobs: needs \"logprobs\": true");
        if (p->logprobs) p->top_logprobs = top > 0 ? top : 0;
    }
    j->want_tokens = p->logprobs;
    j->gen.top_logprobs = p->logprobs ? (int)p->top_logprobs : -1;
    return true;
}

/* ---- streaming -------------------------------------------------------------------------------- */

typedef struct oa_stream {
    dsv4_server *srv;
    char id[64], *model;
    long long created;
    bool chat, include_usage, logprobs;
    dsv4_gen_token *pending; /* tokens whose logprobs have not been sent */
    int n_pending, cap_pending;
    size_t text_offset;
    char (*call_ids)[48];
    int n_calls;
} oa_stream;

static json_t *take_logprobs(oa_stream *s) {
    if (!s->logprobs || !s->n_pending) return json_null();
    json_t *lp;
    if (s->chat) {
        json_t *content = json_array();
        for (int i = 0; i < s->n_pending; i++) json_array_append_new(content, logprob_entry(s->srv, &s->pending[i]));
        lp = json_pack("{s:o}", "content", content);
    } else {
        lp = legacy_logprobs(s->srv, s->pending, s->n_pending, &s->text_offset);
    }
    s->n_pending = 0;
    return lp;
}

static void emit_chunk(oa_stream *s, dsv4_strbuf *out, json_t *delta, const char *finish) {
    json_t *choice;
    if (s->chat)
        choice = json_pack("{s:i, s:o, s:o, s:s?}", "index", 0, "delta", delta, "logprobs", take_logprobs(s),
                           "finish_reason", finish);
    else {
        const json_t *text = json_object_get(delta, "content");
        choice = json_pack("{s:s%, s:i, s:o, s:s?}", "text", text ? json_string_value(text) : "",
                           text ? json_string_length(text) : (size_t)0, "index", 0, "logprobs", take_logprobs(s),
                           "finish_reason", finish);
        json_decref(delta);
    }
    dsv4_sse(out, NULL,
             json_pack("{s:s, s:s, s:I, s:s, s:s, s:[o]}", "id", s->id, "object",
                       s->chat ? "chat.completion.chunk" : "text_completion", "created", s->created, "model", s->model,
                       "system_fingerprint", "dsv4", "choices", choice));
}

static void oa_begin(void *state, dsv4_strbuf *out) {
    oa_stream *s = state;
    if (s->chat) emit_chunk(s, out, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL);
}

static void oa_event(void *state, const dsv4_event *ev, dsv4_strbuf *out) {
    oa_stream *s = state;
    switch (ev->kind) {
    case DSV4_EV_TOKEN:
        if (s->n_pending == s->cap_pending) {
            int cap = s->cap_pending ? 2 * s->cap_pending : 16;
            dsv4_gen_token *np = realloc(s->pending, (size_t)cap * sizeof *np);
            if (!np) return;
            s->pending = np;
            s->cap_pending = cap;
        }
        s->pending[s->n_pending++] = ev->token;
        break;
    case DSV4_EV_REASONING:
        if (s->chat) emit_chunk(s, out, json_pack("{s:s%}", "reasoning_content", ev->text, ev->len), NULL);
        break;
    case DSV4_EV_CONTENT: emit_chunk(s, out, json_pack("{s:s%}", "content", ev->text, ev->len), NULL); break;
    case DSV4_EV_CALL_START: {
        char(*ids)[48] = realloc(s->call_ids, (size_t)(s->n_calls + 1) * sizeof *ids);
        if (!ids) return;
        s->call_ids = ids;
        dsv4_req_id(s->srv, "call_", ids[s->n_calls], sizeof ids[0]);
        emit_chunk(s, out,
                   json_pack("{s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "tool_calls", "index", ev->call, "id",
                             ids[s->n_calls], "type", "function", "function", "name", ev->name ? ev->name : "",
                             "arguments", ""),
                   NULL);
        s->n_calls++;
        break;
    }
    case DSV4_EV_CALL_ARGS:
        emit_chunk(s, out,
                   json_pack("{s:[{s:i, s:{s:s%}}]}", "tool_calls", "index", ev->call, "function", "arguments",
                             ev->text, ev->len),
                   NULL);
        break;
    case DSV4_EV_CALL_END: break;
    }
}

static void oa_end(void *state, dsv4_job *j, dsv4_strbuf *out) {
    oa_stream *s = state;
    if (j->error) {
        dsv4_sse(out, NULL, json_pack("{s:{s:s, s:s}}", "error", "message", j->error, "type", "api_error"));
    } else {
        emit_chunk(s, out, json_object(), dsv4_openai_finish(j->finish));
        if (s->include_usage)
            dsv4_sse(out, NULL,
                     json_pack("{s:s, s:s, s:I, s:s, s:s, s:[], s:o}", "id", s->id, "object",
                               s->chat ? "chat.completion.chunk" : "text_completion", "created", s->created, "model",
                               s->model, "system_fingerprint", "dsv4", "choices", "usage", usage_json(j)));
    }
    dsv4_strbuf_puts(out, "data: [DONE]\n\n");
}

static void oa_keepalive(void *state, dsv4_strbuf *out) {
    (void)state;
    dsv4_strbuf_puts(out, ": keep-alive\n\n");
}

static void oa_free(void *state) {
    oa_stream *s = state;
    free(s->model);
    free(s->pending);
    free(s->call_ids);
    free(s);
}

/* ---- answering ------------------------------------------------------------------------------ */

static int run(dsv4_http_req *rq, dsv4_job *j, const params *p, bool chat) {
    dsv4_server *srv = dsv4_http_server(rq);
    dsv4_req_err e = {0};
    char id[64];
    dsv4_req_id(srv, chat ? "chatcmpl-" : "cmpl-", id, sizeof id);
    if (!dsv4_req_submit(srv, j, &e)) return dsv4_http_error(rq, &e);
    long long created = (long long)time(NULL);
    if (p->stream) {
        oa_stream *s = calloc(1, sizeof *s);
        if (s) {
            s->srv = srv;
            snprintf(s->id, sizeof s->id, "%s", id);
            s->model = strdup(p->model);
            s->created = created;
            s->chat = chat;
            s->include_usage = p->include_usage;
            s->logprobs = p->logprobs;
        }
        if (!s || !s->model) {
            if (s) oa_free(s);
            dsv4_job_cancel(j);
            return dsv4_http_abort(rq);
        }
        dsv4_stream_fmt fmt = {s, oa_begin, oa_event, oa_end, oa_keepalive, oa_free};
        return dsv4_http_stream(rq, j, &fmt);
    }
    dsv4_collect c = {0};
    if (!dsv4_http_wait(rq, j, &c, "call_")) {
        dsv4_collect_free(&c);
        return dsv4_http_abort(rq);
    }
    if (j->error) {
        dsv4_collect_free(&c);
        dsv4_req_fail(&e, 500, "%s", j->error);
        return dsv4_http_error(rq, &e);
    }
    json_t *choice;
    if (chat) {
        json_t *msg = json_pack("{s:s}", "role", "assistant");
        bool thinking = j->gen.in_reasoning;
        if (c.n_calls && !c.content.len)
            json_object_set_new(msg, "content", json_null());
        else
            json_object_set_new(msg, "content", json_stringn(c.content.data ? c.content.data : "", c.content.len));
        if (thinking)
            json_object_set_new(msg, "reasoning_content",
                                json_stringn(c.reasoning.data ? c.reasoning.data : "", c.reasoning.len));
        if (c.n_calls) {
            json_t *calls = json_array();
            for (int i = 0; i < c.n_calls; i++)
                json_array_append_new(calls,
                                      json_pack("{s:s, s:s, s:{s:s, s:s%}}", "id", c.calls[i].id, "type", "function",
                                                "function", "name", c.calls[i].name ? c.calls[i].name : "", "arguments",
                                                c.calls[i].args.data ? c.calls[i].args.data : "{}",
                                                c.calls[i].args.data ? c.calls[i].args.len : (size_t)2));
            json_object_set_new(msg, "tool_calls", calls);
        }
        json_t *lp = json_null();
        if (p->logprobs) {
            json_t *content = json_array();
            for (int i = 0; i < c.n_tokens; i++) json_array_append_new(content, logprob_entry(srv, &c.tokens[i]));
            lp = json_pack("{s:o}", "content", content);
        }
        choice = json_pack("{s:i, s:o, s:o, s:s}", "index", 0, "message", msg, "logprobs", lp, "finish_reason",
                           dsv4_openai_finish(j->finish));
    } else {
        size_t off = 0;
        choice =
            json_pack("{s:s%, s:i, s:o, s:s}", "text", c.content.data ? c.content.data : "", c.content.len, "index", 0,
                      "logprobs", p->logprobs ? legacy_logprobs(srv, c.tokens, c.n_tokens, &off) : json_null(),
                      "finish_reason", dsv4_openai_finish(j->finish));
    }
    json_t *reply = json_pack("{s:s, s:s, s:I, s:s, s:s, s:[o], s:o}", "id", id, "object",
                              chat ? "chat.completion" : "text_completion", "created", created, "model", p->model,
                              "system_fingerprint", "dsv4", "choices", choice, "usage", usage_json(j));
    dsv4_collect_free(&c);
    return dsv4_http_json(rq, 200, reply);
}

int dsv4_openai_chat(dsv4_http_req *rq, const json_t *body) {
    dsv4_server *srv = dsv4_http_server(rq);
    dsv4_req_err e = {0};
    params p = {0};
    dsv4_chat_opts co = {0};
    const json_t *tools = NULL, *format = NULL;
    json_t *messages = NULL;
    dsv4_job *j = dsv4_job_new();
    if (!j) return dsv4_http_abort(rq);
    bool ok = dsv4_req_model(srv, body, false, &p.model, &e) && thinking_fields(body, p.model, &co, &e) &&
              tools_field(body, &tools, &e) && response_format_field(body, &format, &e) &&
              convert_messages(json_object_get(body, "messages"), tools, format, &messages, &e) &&
              common_fields(srv, body, co.thinking_mode == DSV4_MODE_THINKING, j, &p, &e) &&
              max_tokens_field(body, &p, &e) && logprob_fields(body, &p, j, &e) &&
              dsv4_req_chat_prompt(srv, messages, &co, true, j, &e) && tool_choice_field(srv, body, tools, j, &e) &&
              dsv4_req_max_tokens(srv, j, p.max_tokens, &e);
    json_decref(messages);
    int ret = ok ? run(rq, j, &p, true) : dsv4_http_error(rq, &e);
    dsv4_job_unref(j);
    return ret;
}

int dsv4_openai_completions(dsv4_http_req *rq, const json_t *body) {
    dsv4_server *srv = dsv4_http_server(rq);
    dsv4_req_err e = {0};
    params p = {0};
    dsv4_job *j = dsv4_job_new();
    if (!j) return dsv4_http_abort(rq);
    const json_t *prompt = json_object_get(body, "prompt");
    if (json_is_array(prompt) && json_array_size(prompt) == 1) prompt = json_array_get(prompt, 0);
    const char *suffix = NULL;
    bool echo = false, ok = dsv4_req_model(srv, body, false, &p.model, &e) &&
                            dsv4_req_string(body, "suffix", &suffix, &e) && dsv4_req_bool(body, "echo", &echo, &e);
    if (ok && !json_is_string(prompt))
        ok = dsv4_req_fail(&e, 400, "prompt: expected a string (or a list holding one string)");
    if (ok && echo) ok = dsv4_req_fail(&e, 400, "echo: not supported");
    ok = ok && common_fields(srv, body, false, j, &p, &e) && max_tokens_field(body, &p, &e) &&
         logprob_fields(body, &p, j, &e);
    if (ok) {
        dsv4_strbuf text = DSV4_STRBUF_INIT;
        if (suffix) dsv4_strbuf_puts(&text, "<｜fim▁begin｜>");
        dsv4_strbuf_append(&text, json_string_value(prompt), json_string_length(prompt));
        if (suffix) {
            dsv4_strbuf_puts(&text, "<｜fim▁hole｜>");
            dsv4_strbuf_puts(&text, suffix);
            dsv4_strbuf_puts(&text, "<｜fim▁end｜>");
        }
        ok = dsv4_strbuf_status(&text) == DSV4_OK
                 ? dsv4_req_text_prompt(srv, text.data ? text.data : "", text.len, j, &e)
                 : dsv4_req_fail(&e, 500, "out of memory");
        dsv4_strbuf_free(&text);
    }
    j->ban_dsml = true; /* raw text: no tool calls */
    ok = ok && dsv4_req_max_tokens(srv, j, p.max_tokens > 0 ? p.max_tokens : 16, &e);
    int ret = ok ? run(rq, j, &p, false) : dsv4_http_error(rq, &e);
    dsv4_job_unref(j);
    return ret;
}

int dsv4_openai_models(dsv4_http_req *rq, const char *one) {
    dsv4_server *srv = dsv4_http_server(rq);
    const char *names[] = {"deepseek-v4-flash", "deepseek-v4-pro", srv->model_name};
    long long created = srv->started_unix;
    json_t *data = json_array();
    for (size_t i = 0; i < DSV4_ARRAY_LEN(names); i++) {
        if (i == 2 && (!strcmp(names[2], names[0]) || !strcmp(names[2], names[1]))) continue;
        json_t *m = json_pack("{s:s, s:s, s:I, s:s}", "id", names[i], "object", "model", "created", created, "owned_by",
                              "deepseek");
        if (one && !strcmp(one, names[i])) {
            json_decref(data);
            return dsv4_http_json(rq, 200, m);
        }
        json_array_append_new(data, m);
    }
    json_decref(one ? data : NULL);
    if (one) {
        dsv4_req_err e;
        dsv4_req_fail(&e, 404, "model \"%.100s\" does not exist", one);
        return dsv4_http_error(rq, &e);
    }
    return dsv4_http_json(rq, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}
