/* anthropic.c: the Anthropic Messages dialect, as DeepSeek's /anthropic endpoint speaks it.
 *
 * A request is translated into the OpenAI-style messages that V4's encoding reads:
 *   system (a string or text blocks)          -> a system message (joined with "\n")
 *   user text blocks                          -> user messages
 *   user tool_result blocks                   -> tool messages (their blocks kept: the
 *                                                encoding joins text blocks itself)
 *   assistant thinking / text / tool_use      -> reasoning_content / content / tool_calls
 *   tools [{name, description, input_schema}] -> function tools
 *   tool_choice auto | any | tool | none      -> auto | required | named | none
 *   thinking {type: enabled|disabled}, output_config.effort; thinking is on by default, as on
 *   DeepSeek's API (off for the model alias deepseek-chat), and budget_tokens is ignored
 *   (DeepSeek ignores it too); ignore_eos (an extension, as on the OpenAI side) keeps the
 *   end-of-sentence token from being sampled
 * The reply's content blocks come in the model's order: thinking, text, tool_use. Usage follows
 * Anthropic's convention: input_tokens counts the prompt tokens not read from the cache, and
 * cache_read_input_tokens the ones that were. Streams follow Anthropic's event sequence
 * (message_start, ping, content_block_start/delta/stop..., message_delta, message_stop);
 * thinking blocks close with a signature_delta (an opaque constant: nothing is verified). */
#include <stdio.h>
#include <time.h>

#include "serve/server.h"

#define SIGNATURE "dsv4"

static const char *stop_reason(dsv4_finish f, int stop_index) {
    switch (f) {
    case DSV4_FINISH_LENGTH: return "max_tokens";
    case DSV4_FINISH_TOOL_CALLS: return "tool_use";
    default: return stop_index >= 0 ? "stop_sequence" : "end_turn";
    }
}

static json_t *usage_json(const dsv4_job *j) {
    return json_pack("{s:i, s:i, s:i, s:i}", "input_tokens", j->n_prompt - j->n_cached, "output_tokens", j->n_generated,
                     "cache_creation_input_tokens", 0, "cache_read_input_tokens", j->n_cached);
}

/* ---- the request --------------------------------------------------------------------------- */

static bool text_of_blocks(const json_t *v, const char *where, const char *sep, dsv4_strbuf *out, dsv4_req_err *e) {
    if (json_is_string(v)) {
        dsv4_strbuf_append(out, json_string_value(v), json_string_length(v));
        return true;
    }
    if (!json_is_array(v)) return dsv4_req_fail(e, 400, "%s: expected a string or a list of text blocks", where);
    size_t k;
    const json_t *b;
    json_array_foreach(v, k, b) {
        const char *type = json_string_value(json_object_get(b, "type"));
        const json_t *text = json_object_get(b, "text");
        if (!type || strcmp(type, "text") || !json_is_string(text))
            return dsv4_req_fail(e, 400, "%s[%zu]: expected {\"type\": \"text\", \"text\": ...}", where, k);
        if (k) dsv4_strbuf_puts(out, sep);
        dsv4_strbuf_append(out, json_string_value(text), json_string_length(text));
    }
    return true;
}

static void push_user_text(json_t *msgs, dsv4_strbuf *text) {
    if (!text->len) return;
    json_array_append_new(msgs, json_pack("{s:s, s:s%}", "role", "user", "content", text->data, text->len));
    dsv4_strbuf_clear(text);
}

/* One message's content blocks into OpenAI-style messages. */
static bool convert_blocks(const json_t *content, bool assistant, size_t i, json_t *msgs, dsv4_req_err *e) {
    dsv4_strbuf text = DSV4_STRBUF_INIT, reasoning = DSV4_STRBUF_INIT;
    json_t *calls = json_array();
    bool ok = true;
    size_t k;
    const json_t *b;
    json_array_foreach(content, k, b) {
        const char *type = json_string_value(json_object_get(b, "type"));
        if (!json_is_object(b) || !type) {
            ok = dsv4_req_fail(e, 400, "messages[%zu].content[%zu]: expected a content block with a \"type\"", i, k);
            break;
        }
        if (!strcmp(type, "text")) {
            const json_t *t = json_object_get(b, "text");
            if (!json_is_string(t)) {
                ok = dsv4_req_fail(e, 400, "messages[%zu].content[%zu].text: expected a string", i, k);
                break;
            }
            if (text.len) dsv4_strbuf_putc(&text, '\n');
            dsv4_strbuf_append(&text, json_string_value(t), json_string_length(t));
        } else if (assistant && !strcmp(type, "thinking")) {
            const json_t *t = json_object_get(b, "thinking");
            if (!json_is_string(t)) {
                ok = dsv4_req_fail(e, 400, "messages[%zu].content[%zu].thinking: expected a string", i, k);
                break;
            }
            dsv4_strbuf_append(&reasoning, json_string_value(t), json_string_length(t));
        } else if (assistant && !strcmp(type, "redacted_thinking")) {
            continue; /* nothing we can read */
        } else if (assistant && !strcmp(type, "tool_use")) {
            const json_t *id = json_object_get(b, "id"), *name = json_object_get(b, "name"),
                         *input = json_object_get(b, "input");
            if (!json_is_string(id) || !json_is_string(name) || (input && !json_is_object(input))) {
                ok = dsv4_req_fail(
                    e, 400,
                    "messages[%zu].content[%zu]: a tool_use block needs a string id and name and an object input", i,
                    k);
                break;
            }
            char *args = input ? json_dumps(input, JSON_COMPACT) : strdup("{}");
            json_array_append_new(calls, json_pack("{s:O, s:s, s:{s:O, s:s}}", "id", id, "type", "function", "function",
                                                   "name", name, "arguments", args ? args : "{}"));
            free(args);
        } else if (!assistant && !strcmp(type, "tool_result")) {
            const json_t *id = json_object_get(b, "tool_use_id"), *c = json_object_get(b, "content");
            if (!json_is_string(id)) {
                ok = dsv4_req_fail(e, 400, "messages[%zu].content[%zu].tool_use_id: expected a string", i, k);
                break;
            }
            if (c && !json_is_string(c) && !json_is_array(c)) {
                ok = dsv4_req_fail(e, 400, "messages[%zu].content[%zu].content: expected a string or a list of blocks",
                                   i, k);
                break;
            }
            push_user_text(msgs, &text);
            json_t *result = c ? json_incref((json_t *)c) : json_string("");
            json_array_append_new(msgs,
                                  json_pack("{s:s, s:O, s:o}", "role", "tool", "tool_call_id", id, "content", result));
        } else {
            ok = dsv4_req_fail(e, 400, "messages[%zu].content[%zu]: content type \"%.40s\" is not supported here", i, k,
                               type);
            break;
        }
    }
    if (ok && assistant) {
        json_t *m = json_pack("{s:s, s:s%}", "role", "assistant", "content", text.data ? text.data : "", text.len);
        if (reasoning.len) json_object_set_new(m, "reasoning_content", json_stringn(reasoning.data, reasoning.len));
        if (json_array_size(calls)) json_object_set(m, "tool_calls", calls);
        json_array_append_new(msgs, m);
    } else if (ok) {
        push_user_text(msgs, &text);
    }
    json_decref(calls);
    dsv4_strbuf_free(&text);
    dsv4_strbuf_free(&reasoning);
    return ok;
}

static bool convert_tools(const json_t *body, json_t **out, dsv4_req_err *e) {
    const json_t *tools = json_object_get(body, "tools");
    *out = NULL;
    if (!tools || json_is_null(tools)) return true;
    if (!json_is_array(tools)) return dsv4_req_fail(e, 400, "tools: expected a list");
    json_t *oa = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const char *type = json_string_value(json_object_get(t, "type"));
        const json_t *name = json_object_get(t, "name"), *schema = json_object_get(t, "input_schema");
        if (!json_is_object(t) || (type && strcmp(type, "custom")) || !json_is_string(name)) {
            json_decref(oa);
            if (type && strcmp(type, "custom"))
                return dsv4_req_fail(e, 400, "tools[%zu]: tool type \"%.40s\" is not supported (only custom tools)", i,
                                     type);
            return dsv4_req_fail(e, 400, "tools[%zu]: expected {\"name\": ..., \"input_schema\": {...}}", i);
        }
        json_t *fn = json_pack("{s:O}", "name", name);
        const json_t *desc = json_object_get(t, "description");
        if (json_is_string(desc)) json_object_set(fn, "description", (json_t *)desc);
        json_object_set_new(fn, "parameters", json_is_object(schema) ? json_incref((json_t *)schema) : json_object());
        json_array_append_new(oa, json_pack("{s:s, s:o}", "type", "function", "function", fn));
    }
    if (!json_array_size(oa)) {
        json_decref(oa);
        oa = NULL;
    }
    *out = oa;
    return true;
}

/* The messages (and system + tools) as text/chat.h reads them. */
static bool convert_request(const json_t *body, const json_t *tools, json_t **out, dsv4_req_err *e) {
    const json_t *in = json_object_get(body, "messages"), *system = json_object_get(body, "system");
    if (!json_is_array(in) || !json_array_size(in)) return dsv4_req_fail(e, 400, "messages: expected a non-empty list");
    json_t *msgs = json_array();
    if ((system && !json_is_null(system)) || tools) {
        dsv4_strbuf st = DSV4_STRBUF_INIT;
        if (system && !json_is_null(system) && !text_of_blocks(system, "system", "\n", &st, e)) {
            dsv4_strbuf_free(&st);
            json_decref(msgs);
            return false;
        }
        json_t *sm = json_pack("{s:s, s:s%}", "role", "system", "content", st.data ? st.data : "", st.len);
        if (tools) json_object_set(sm, "tools", (json_t *)tools);
        json_array_append_new(msgs, sm);
        dsv4_strbuf_free(&st);
    }
    size_t i;
    const json_t *m;
    json_array_foreach(in, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        bool ok = true;
        if (!json_is_object(m) || !role || (strcmp(role, "user") && strcmp(role, "assistant")))
            ok = dsv4_req_fail(e, 400, "messages[%zu].role: expected \"user\" or \"assistant\"", i);
        else if (json_is_string(content))
            json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", role, "content", content));
        else if (json_is_array(content))
            ok = convert_blocks(content, !strcmp(role, "assistant"), i, msgs, e);
        else
            ok = dsv4_req_fail(e, 400, "messages[%zu].content: expected a string or a list of content blocks", i);
        if (!ok) {
            json_decref(msgs);
            return false;
        }
    }
    *out = msgs;
    return true;
}

static bool thinking_fields(const json_t *body, const char *model, dsv4_chat_opts *co, dsv4_req_err *e) {
    bool on = strcmp(model, "deepseek-chat") != 0; /* DeepSeek's alias for thinking off */
    const json_t *th = json_object_get(body, "thinking");
    if (th && !json_is_null(th)) {
        const char *type = json_string_value(json_object_get(th, "type"));
        if (!json_is_object(th) || !type ||
            (strcmp(type, "enabled") && strcmp(type, "disabled") && strcmp(type, "adaptive")))
            return dsv4_req_fail(e, 400, "thinking: expected {\"type\": \"enabled\"} or {\"type\": \"disabled\"}");
        on = strcmp(type, "disabled") != 0;
    }
    co->thinking_mode = on ? DSV4_MODE_THINKING : DSV4_MODE_CHAT;
    co->reasoning_effort = DSV4_EFFORT_HIGH;
    const json_t *oc = json_object_get(body, "output_config");
    const char *effort = NULL;
    if (oc && json_is_object(oc) && !dsv4_req_string(oc, "effort", &effort, e)) return false;
    if (effort) {
        if (!strcmp(effort, "max"))
            co->reasoning_effort = DSV4_EFFORT_MAX;
        else if (strcmp(effort, "low") && strcmp(effort, "medium") && strcmp(effort, "high"))
            return dsv4_req_fail(e, 400, "output_config.effort: expected low, medium, high or max");
    }
    return true;
}

static bool tool_choice_field(dsv4_server *srv, const json_t *body, const json_t *tools, dsv4_job *j, dsv4_req_err *e) {
    const json_t *tc = json_object_get(body, "tool_choice");
    j->ban_dsml = !tools;
    if (!tc || json_is_null(tc)) return true;
    const char *type = json_string_value(json_object_get(tc, "type"));
    if (!json_is_object(tc) || !type)
        return dsv4_req_fail(e, 400, "tool_choice: expected {\"type\": \"auto\"|\"any\"|\"tool\"|\"none\"}");
    if (!strcmp(type, "none")) {
        j->ban_dsml = true;
        return true;
    }
    if (!strcmp(type, "auto")) return true;
    if (strcmp(type, "any") && strcmp(type, "tool"))
        return dsv4_req_fail(e, 400, "tool_choice.type: expected \"auto\", \"any\", \"tool\" or \"none\"");
    if (!tools) return dsv4_req_fail(e, 400, "tool_choice: \"%s\" needs tools", type);
    const char *name = NULL;
    if (!strcmp(type, "tool")) {
        name = json_string_value(json_object_get(tc, "name"));
        if (!name) return dsv4_req_fail(e, 400, "tool_choice.name: expected a string");
        bool found = false;
        size_t i;
        const json_t *t;
        json_array_foreach(tools, i, t) found |=
            !strcmp(json_string_value(json_object_get(json_object_get(t, "function"), "name")), name);
        if (!found) return dsv4_req_fail(e, 400, "tool_choice: no tool named \"%.100s\" in tools", name);
    }
    return dsv4_req_force_tool(srv, j, name, e);
}

/* Everything up to a rendered, tokenized prompt in the job. */
static bool prepare(dsv4_server *srv, const json_t *body, dsv4_job *j, const char **model, bool *stream, bool counting,
                    dsv4_req_err *e) {
    dsv4_chat_opts co = {0};
    json_t *tools = NULL, *messages = NULL;
    long long max_tokens = -1;
    double temperature = 1, top_p = 1;
    bool ok = dsv4_req_model(srv, body, true, model, e) && thinking_fields(body, *model, &co, e) &&
              convert_tools(body, &tools, e) && convert_request(body, tools, &messages, e) &&
              dsv4_req_chat_prompt(srv, messages, &co, !counting, j, e);
    if (ok && !counting) {
        const json_t *mt = json_object_get(body, "max_tokens");
        if (!mt || json_is_null(mt)) ok = dsv4_req_fail(e, 400, "max_tokens: missing (required)");
        ok = ok && dsv4_req_int(body, "max_tokens", 1, 1LL << 31, &max_tokens, e) &&
             dsv4_req_number(body, "temperature", 0, 2, &temperature, e) &&
             dsv4_req_number(body, "top_p", 0, 1, &top_p, e) && dsv4_req_bool(body, "stream", stream, e) &&
             dsv4_req_stops(body, "stop_sequences", j, e) && tool_choice_field(srv, body, tools, j, e) &&
             dsv4_req_max_tokens(srv, j, max_tokens, e);
        if (ok && co.thinking_mode == DSV4_MODE_CHAT) { /* thinking mode ignores them, as DeepSeek does */
            j->gen.sampling.temperature = (float)temperature;
            j->gen.sampling.top_p = top_p > 0 ? (float)top_p : 1.0f;
            if (top_p <= 0) j->gen.sampling.temperature = 0;
        }
        ok = ok && dsv4_req_logit_bias(srv, body, false, j, e);
        j->gen.seed = dsv4_req_seed(srv);
    }
    json_decref(tools);
    json_decref(messages);
    return ok;
}

/* ---- streaming -------------------------------------------------------------------------------- */

typedef enum block_kind { BLOCK_NONE, BLOCK_THINKING, BLOCK_TEXT, BLOCK_TOOL } block_kind;

typedef struct an_stream {
    dsv4_server *srv;
    char id[64], *model;
    int n_prompt;
    block_kind open;
    int index; /* of the open block; the next one gets index + 1 */
} an_stream;

static void close_block(an_stream *s, dsv4_strbuf *out) {
    if (s->open == BLOCK_NONE) return;
    if (s->open == BLOCK_THINKING)
        dsv4_sse(out, "content_block_delta",
                 json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_delta", "index", s->index, "delta",
                           "type", "signature_delta", "signature", SIGNATURE));
    dsv4_sse(out, "content_block_stop", json_pack("{s:s, s:i}", "type", "content_block_stop", "index", s->index));
    s->open = BLOCK_NONE;
    s->index++;
}

static void open_block(an_stream *s, dsv4_strbuf *out, block_kind kind, json_t *block) {
    close_block(s, out);
    s->open = kind;
    dsv4_sse(out, "content_block_start",
             json_pack("{s:s, s:i, s:o}", "type", "content_block_start", "index", s->index, "content_block", block));
}

static void delta(an_stream *s, dsv4_strbuf *out, json_t *d) {
    dsv4_sse(out, "content_block_delta",
             json_pack("{s:s, s:i, s:o}", "type", "content_block_delta", "index", s->index, "delta", d));
}

static void an_begin(void *state, dsv4_strbuf *out) {
    an_stream *s = state;
    dsv4_sse(out, "message_start",
             json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:[], s:n, s:n, s:{s:i, s:i, s:i, s:i}}}", "type", "message_start",
                       "message", "id", s->id, "type", "message", "role", "assistant", "model", s->model, "content",
                       "stop_reason", "stop_sequence", "usage", "input_tokens", s->n_prompt, "output_tokens", 0,
                       "cache_creation_input_tokens", 0, "cache_read_input_tokens", 0));
    dsv4_sse(out, "ping", json_pack("{s:s}", "type", "ping"));
}

static void an_event(void *state, const dsv4_event *ev, dsv4_strbuf *out) {
    an_stream *s = state;
    switch (ev->kind) {
    case DSV4_EV_REASONING:
        if (s->open != BLOCK_THINKING)
            open_block(s, out, BLOCK_THINKING,
                       json_pack("{s:s, s:s, s:s}", "type", "thinking", "thinking", "", "signature", ""));
        delta(s, out, json_pack("{s:s, s:s%}", "type", "thinking_delta", "thinking", ev->text, ev->len));
        break;
    case DSV4_EV_CONTENT:
        if (s->open != BLOCK_TEXT) open_block(s, out, BLOCK_TEXT, json_pack("{s:s, s:s}", "type", "text", "text", ""));
        delta(s, out, json_pack("{s:s, s:s%}", "type", "text_delta", "text", ev->text, ev->len));
        break;
    case DSV4_EV_CALL_START: {
        char id[48];
        dsv4_req_id(s->srv, "toolu_", id, sizeof id);
        open_block(s, out, BLOCK_TOOL,
                   json_pack("{s:s, s:s, s:s, s:{}}", "type", "tool_use", "id", id, "name", ev->name ? ev->name : "",
                             "input"));
        break;
    }
    case DSV4_EV_CALL_ARGS:
        if (s->open == BLOCK_TOOL)
            delta(s, out, json_pack("{s:s, s:s%}", "type", "input_json_delta", "partial_json", ev->text, ev->len));
        break;
    case DSV4_EV_CALL_END: close_block(s, out); break;
    case DSV4_EV_TOKEN: break;
    }
}

static void an_end(void *state, dsv4_job *j, dsv4_strbuf *out) {
    an_stream *s = state;
    close_block(s, out);
    if (j->error) {
        dsv4_sse(out, "error",
                 json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", "api_error", "message", j->error));
        return;
    }
    const char *seq = j->stop_index >= 0 ? j->gen.stop[j->stop_index] : NULL;
    dsv4_sse(out, "message_delta",
             json_pack("{s:s, s:{s:s, s:s?}, s:o}", "type", "message_delta", "delta", "stop_reason",
                       stop_reason(j->finish, j->stop_index), "stop_sequence", seq, "usage", usage_json(j)));
    dsv4_sse(out, "message_stop", json_pack("{s:s}", "type", "message_stop"));
}

static void an_keepalive(void *state, dsv4_strbuf *out) {
    (void)state;
    dsv4_sse(out, "ping", json_pack("{s:s}", "type", "ping"));
}

static void an_free(void *state) {
    an_stream *s = state;
    free(s->model);
    free(s);
}

/* ---- the endpoints ------------------------------------------------------------------------ */

static json_t *reply_message(dsv4_server *srv, const char *id, const char *model, dsv4_job *j, dsv4_collect *c) {
    json_t *content = json_array();
    if (j->gen.in_reasoning)
        json_array_append_new(content, json_pack("{s:s, s:s%, s:s}", "type", "thinking", "thinking",
                                                 c->reasoning.data ? c->reasoning.data : "", c->reasoning.len,
                                                 "signature", SIGNATURE));
    if (c->content.len || !c->n_calls)
        json_array_append_new(content, json_pack("{s:s, s:s%}", "type", "text", "text",
                                                 c->content.data ? c->content.data : "", c->content.len));
    for (int i = 0; i < c->n_calls; i++) {
        json_t *input = c->calls[i].args.data ? json_loadb(c->calls[i].args.data, c->calls[i].args.len, 0, NULL) : NULL;
        if (!json_is_object(input)) {
            json_decref(input);
            input = json_object();
        }
        json_array_append_new(content, json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", c->calls[i].id,
                                                 "name", c->calls[i].name ? c->calls[i].name : "", "input", input));
    }
    (void)srv;
    const char *seq = j->stop_index >= 0 ? j->gen.stop[j->stop_index] : NULL;
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s?, s:o}", "id", id, "type", "message", "role", "assistant",
                     "model", model, "content", content, "stop_reason", stop_reason(j->finish, j->stop_index),
                     "stop_sequence", seq, "usage", usage_json(j));
}

int dsv4_anthropic_messages(dsv4_http_req *rq, const json_t *body) {
    dsv4_server *srv = dsv4_http_server(rq);
    dsv4_req_err e = {0};
    const char *model = NULL;
    bool stream = false;
    dsv4_job *j = dsv4_job_new();
    if (!j) return dsv4_http_abort(rq);
    int ret;
    char id[64];
    dsv4_req_id(srv, "msg_", id, sizeof id);
    if (!prepare(srv, body, j, &model, &stream, false, &e) || !dsv4_req_submit(srv, j, &e)) {
        ret = dsv4_http_error(rq, &e);
    } else if (stream) {
        an_stream *s = calloc(1, sizeof *s);
        if (s) {
            s->srv = srv;
            snprintf(s->id, sizeof s->id, "%s", id);
            s->model = strdup(model);
            s->n_prompt = j->n_prompt;
        }
        if (!s || !s->model) {
            if (s) an_free(s);
            dsv4_job_cancel(j);
            ret = dsv4_http_abort(rq);
        } else {
            dsv4_stream_fmt fmt = {s, an_begin, an_event, an_end, an_keepalive, an_free};
            ret = dsv4_http_stream(rq, j, &fmt);
        }
    } else {
        dsv4_collect c = {0};
        if (!dsv4_http_wait(rq, j, &c, "toolu_")) {
            ret = dsv4_http_abort(rq);
        } else if (j->error) {
            dsv4_req_fail(&e, 500, "%s", j->error);
            ret = dsv4_http_error(rq, &e);
        } else {
            ret = dsv4_http_json(rq, 200, reply_message(srv, id, model, j, &c));
        }
        dsv4_collect_free(&c);
    }
    dsv4_job_unref(j);
    return ret;
}

int dsv4_anthropic_count_tokens(dsv4_http_req *rq, const json_t *body) {
    dsv4_server *srv = dsv4_http_server(rq);
    dsv4_req_err e = {0};
    const char *model = NULL;
    bool stream = false;
    dsv4_job *j = dsv4_job_new();
    if (!j) return dsv4_http_abort(rq);
    int ret = prepare(srv, body, j, &model, &stream, true, &e)
                  ? dsv4_http_json(rq, 200, json_pack("{s:i}", "input_tokens", j->n_prompt))
                  : dsv4_http_error(rq, &e);
    dsv4_job_unref(j);
    return ret;
}
