/* request.c: what the OpenAI and Anthropic dialects share.
 *
 * Field access never trusts the client: each accessor checks the JSON type and range and, on
 * failure, writes a message naming the field and what was expected, which the dialect sends
 * back as a 400 in its own error shape. Prompts are rendered by text/chat.c, the official
 * V4 encoding, then tokenized; the prompt must leave room for at least one generated token.
 *
 * The test hook (scripted replies) lives here too, kept apart at the end of the file: it is
 * only active when the server was started with --test-script, and only replaces the choice
 * of tokens, so batching, caching, streaming and parsing run exactly as for sampled text. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/server.h"
#include "text/utf8.h"

bool dsv4_req_fail(dsv4_req_err *e, unsigned status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->status = status;
    return false;
}

/* ---- typed fields -------------------------------------------------------------------------- */

static const json_t *field(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

bool dsv4_req_number(const json_t *obj, const char *key, double lo, double hi, double *out, dsv4_req_err *e) {
    const json_t *v = field(obj, key);
    if (!v) return true;
    if (!json_is_number(v)) return dsv4_req_fail(e, 400, "%s: expected a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return dsv4_req_fail(e, 400, "%s: %g is out of range [%g, %g]", key, x, lo, hi);
    *out = x;
    return true;
}

bool dsv4_req_int(const json_t *obj, const char *key, long long lo, long long hi, long long *out, dsv4_req_err *e) {
    const json_t *v = field(obj, key);
    if (!v) return true;
    long long x;
    if (json_is_integer(v))
        x = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v))
        x = (long long)json_real_value(v);
    else
        return dsv4_req_fail(e, 400, "%s: expected an integer", key);
    if (x < lo || x > hi) return dsv4_req_fail(e, 400, "%s: %lld is out of range [%lld, %lld]", key, x, lo, hi);
    *out = x;
    return true;
}

bool dsv4_req_bool(const json_t *obj, const char *key, bool *out, dsv4_req_err *e) {
    const json_t *v = field(obj, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return dsv4_req_fail(e, 400, "%s: expected true or false", key);
    *out = json_is_true(v);
    return true;
}

bool dsv4_req_string(const json_t *obj, const char *key, const char **out, dsv4_req_err *e) {
    const json_t *v = field(obj, key);
    if (!v) return true;
    if (!json_is_string(v)) return dsv4_req_fail(e, 400, "%s: expected a string", key);
    *out = json_string_value(v);
    return true;
}

bool dsv4_req_stops(const json_t *obj, const char *key, dsv4_job *j, dsv4_req_err *e) {
    const json_t *v = field(obj, key);
    if (!v) return true;
    const char *stops[DSV4_MAX_STOPS];
    int n = 0;
    if (json_is_string(v)) {
        stops[n++] = json_string_value(v);
    } else if (json_is_array(v)) {
        if (json_array_size(v) > DSV4_MAX_STOPS)
            return dsv4_req_fail(e, 400, "%s: at most %d stop sequences (got %zu)", key, DSV4_MAX_STOPS,
                                 json_array_size(v));
        size_t i;
        const json_t *s;
        json_array_foreach(v, i, s) {
            if (!json_is_string(s)) return dsv4_req_fail(e, 400, "%s[%zu]: expected a string", key, i);
            stops[n++] = json_string_value(s);
        }
    } else {
        return dsv4_req_fail(e, 400, "%s: expected a string or a list of strings", key);
    }
    for (int i = 0; i < n; i++)
        if (!stops[i][0]) return dsv4_req_fail(e, 400, "%s: stop sequences must not be empty", key);
    if (!dsv4_job_set_stops(j, stops, n)) return dsv4_req_fail(e, 500, "out of memory");
    return true;
}

bool dsv4_req_model(const dsv4_server *srv, const json_t *body, bool anthropic, const char **model, dsv4_req_err *e) {
    static const char *const names[] = {"deepseek-v4-flash", "deepseek-v4-pro", "deepseek-chat", "deepseek-reasoner"};
    const json_t *v = json_object_get(body, "model");
    if (!v)
        return dsv4_req_fail(e, 400, "model: missing (this server serves deepseek-v4-flash, deepseek-v4-pro, %s)",
                             srv->model_name);
    if (!json_is_string(v)) return dsv4_req_fail(e, 400, "model: expected a string");
    const char *m = json_string_value(v);
    *model = m;
    for (size_t i = 0; i < DSV4_ARRAY_LEN(names); i++)
        if (!strcmp(m, names[i])) return true;
    if (!strcmp(m, srv->model_name)) return true;
    if (anthropic && !strncmp(m, "claude", 6)) return true;
    return dsv4_req_fail(e, 400,
                         "model: unknown model \"%.100s\" (this server serves deepseek-v4-flash, deepseek-v4-pro, %s)",
                         m, srv->model_name);
}

bool dsv4_req_logit_bias(dsv4_server *srv, const json_t *body, bool openai, dsv4_job *j, dsv4_req_err *e) {
    bool ignore_eos = false;
    if (!dsv4_req_bool(body, "ignore_eos", &ignore_eos, e)) return false;
    const json_t *lb = openai ? field(body, "logit_bias") : NULL;
    if (lb && !json_is_object(lb))
        return dsv4_req_fail(e, 400, "logit_bias: expected an object mapping token ids to biases");
    size_t n = (lb ? json_object_size(lb) : 0) + ignore_eos;
    if (n > DSV4_MAX_LOGIT_BIAS)
        return dsv4_req_fail(e, 400, "logit_bias: at most %d tokens (got %zu)", DSV4_MAX_LOGIT_BIAS, n);
    if (!n) return true;
    dsv4_logit_bias *b = calloc(n, sizeof *b);
    if (!b) return dsv4_req_fail(e, 500, "out of memory");
    free(j->bias);
    j->bias = b;
    int vocab = dsv4_model_vocab(srv->m), k = 0;
    const char *key;
    const json_t *v;
    if (lb) json_object_foreach((json_t *)lb, key, v) {
        char *end;
        errno = 0;
        long id = strtol(key, &end, 10);
        if (!*key || *end || errno || id < 0 || id >= vocab)
            return dsv4_req_fail(e, 400, "logit_bias: \"%.40s\" is not a token id (0 to %d)", key, vocab - 1);
        if (!json_is_number(v)) return dsv4_req_fail(e, 400, "logit_bias[\"%s\"]: expected a number", key);
        double x = json_number_value(v);
        if (!(x >= -100 && x <= 100))
            return dsv4_req_fail(e, 400, "logit_bias[\"%s\"]: %g is out of range [-100, 100]", key, x);
        b[k++] = (dsv4_logit_bias){(int32_t)id, (float)x};
    }
    if (ignore_eos) b[k++] = (dsv4_logit_bias){srv->tok_eos, -INFINITY};
    j->gen.sampling.bias = b;
    j->gen.sampling.n_bias = k;
    return true;
}

/* ---- prompts ----------------------------------------------------------------------------- */

static void script_apply(dsv4_server *srv, const char *prompt, size_t len, dsv4_job *j);

static bool finish_prompt(dsv4_server *srv, const char *text, size_t len, bool generate, dsv4_job *j, dsv4_req_err *e) {
    int32_t *ids;
    size_t n;
    if (dsv4_tokenize(srv->tok, text, len, &ids, &n)) return dsv4_req_fail(e, 400, "prompt: %s", dsv4_errmsg());
    j->prompt = ids;
    j->n_prompt = (int)n;
    if (generate && (long long)n + 1 > srv->ctx)
        return dsv4_req_fail(e, 400,
                             "the prompt has %zu tokens, more than this server's context of %d tokens allows "
                             "(the prompt and at least one output token must fit; see --ctx)",
                             n, srv->ctx);
    for (int i = j->n_prompt; i-- > 0;)
        if (ids[i] == srv->tok_assistant) {
            j->user_end = i + 1;
            break;
        }
    j->gen.in_reasoning = n > 0 && ids[n - 1] == srv->tok_think;
    j->gen.eos_id = srv->tok_eos;
    if (srv->script) script_apply(srv, text, len, j);
    return true;
}

bool dsv4_req_chat_prompt(dsv4_server *srv, const json_t *messages, const dsv4_chat_opts *opts, bool generate,
                          dsv4_job *j, dsv4_req_err *e) {
    char *text;
    size_t len;
    if (dsv4_chat_render(messages, opts, &text, &len)) return dsv4_req_fail(e, 400, "%s", dsv4_errmsg());
    bool ok = finish_prompt(srv, text, len, generate, j, e);
    free(text);
    return ok;
}

bool dsv4_req_text_prompt(dsv4_server *srv, const char *text, size_t len, dsv4_job *j, dsv4_req_err *e) {
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    dsv4_strbuf_puts(&b, DSV4_TOK_BOS);
    dsv4_strbuf_append(&b, text, len);
    bool ok = dsv4_strbuf_status(&b) == DSV4_OK ? finish_prompt(srv, b.data, b.len, true, j, e)
                                                : dsv4_req_fail(e, 500, "out of memory");
    dsv4_strbuf_free(&b);
    return ok;
}

bool dsv4_req_force_tool(dsv4_server *srv, dsv4_job *j, const char *name, dsv4_req_err *e) {
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    dsv4_strbuf_puts(&b, "\n\n<" DSV4_TOK_DSML "tool_calls>\n<" DSV4_TOK_DSML "invoke name=\"");
    if (name) {
        dsv4_strbuf_puts(&b, name);
        dsv4_strbuf_puts(&b, "\">\n");
    }
    size_t n = 0;
    bool ok = dsv4_strbuf_status(&b) == DSV4_OK && !dsv4_tokenize(srv->tok, b.data, b.len, &j->forced, &n);
    dsv4_strbuf_free(&b);
    j->n_forced = (int)n;
    return ok ? true : dsv4_req_fail(e, 400, "tool_choice: %s", dsv4_errmsg());
}

bool dsv4_req_max_tokens(dsv4_server *srv, dsv4_job *j, long long asked, dsv4_req_err *e) {
    long long room = (long long)srv->ctx - j->n_prompt;
    if (asked == 0) return dsv4_req_fail(e, 400, "max_tokens: must be at least 1");
    long long n = asked > 0 ? asked : 32768;
    j->gen.max_tokens = (int)DSV4_MIN(n, room);
    return true;
}

bool dsv4_req_submit(dsv4_server *srv, dsv4_job *j, dsv4_req_err *e) {
    if (dsv4_sched_submit(srv->sched, j)) return true;
    dsv4_sched_stats st;
    dsv4_sched_stats_get(srv->sched, &st);
    return dsv4_req_fail(e, 503,
                         "the server is busy: %d requests are running and %d waiting (the queue holds %d); retry later",
                         st.active, st.waiting, st.queue);
}

uint64_t dsv4_req_seed(dsv4_server *srv) {
    uint64_t n = (uint64_t)atomic_fetch_add(&srv->next_id, 1);
    return (n * 0x9E3779B97F4A7C15ull) ^ (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
}

void dsv4_req_id(dsv4_server *srv, const char *prefix, char *buf, size_t len) {
    long long n = atomic_fetch_add(&srv->next_id, 1);
    snprintf(buf, len, "%s%08llx%06llx", prefix, srv->started_unix & 0xffffffffLL, n & 0xffffffLL);
}

/* ---- results ------------------------------------------------------------------------------- */

void dsv4_collect_event(dsv4_server *srv, dsv4_collect *c, const dsv4_event *ev, const char *id_prefix) {
    switch (ev->kind) {
    case DSV4_EV_REASONING: dsv4_strbuf_append(&c->reasoning, ev->text, ev->len); break;
    case DSV4_EV_CONTENT: dsv4_strbuf_append(&c->content, ev->text, ev->len); break;
    case DSV4_EV_CALL_START: {
        dsv4_call *nc = realloc(c->calls, (size_t)(c->n_calls + 1) * sizeof *nc);
        if (!nc) return;
        c->calls = nc;
        dsv4_call *call = &c->calls[c->n_calls++];
        memset(call, 0, sizeof *call);
        call->name = strdup(ev->name ? ev->name : "");
        dsv4_req_id(srv, id_prefix, call->id, sizeof call->id);
        break;
    }
    case DSV4_EV_CALL_ARGS: break; /* the whole arguments come with CALL_END */
    case DSV4_EV_CALL_END:
        if (c->n_calls > 0) {
            dsv4_call *call = &c->calls[c->n_calls - 1];
            dsv4_strbuf_clear(&call->args);
            dsv4_strbuf_append(&call->args, ev->text, ev->len);
        }
        break;
    case DSV4_EV_TOKEN:
        if (c->n_tokens == c->cap_tokens) {
            int cap = c->cap_tokens ? 2 * c->cap_tokens : 64;
            dsv4_gen_token *nt = realloc(c->tokens, (size_t)cap * sizeof *nt);
            if (!nt) return;
            c->tokens = nt;
            c->cap_tokens = cap;
        }
        c->tokens[c->n_tokens++] = ev->token;
        break;
    }
}

void dsv4_collect_free(dsv4_collect *c) {
    dsv4_strbuf_free(&c->reasoning);
    dsv4_strbuf_free(&c->content);
    for (int i = 0; i < c->n_calls; i++) {
        free(c->calls[i].name);
        dsv4_strbuf_free(&c->calls[i].args);
    }
    free(c->calls);
    free(c->tokens);
    memset(c, 0, sizeof *c);
}

json_t *dsv4_token_json_text(const dsv4_server *srv, int32_t id) {
    size_t n = 0;
    const uint8_t *b = dsv4_token_bytes(srv->tok, id, &n);
    if (!b) return json_string("");
    char *out = malloc(DSV4_UTF8_LOSSY_MAX(n) + 1);
    if (!out) return json_string("");
    size_t used;
    size_t len = dsv4_utf8_lossy(b, n, true, (uint8_t *)out, &used);
    json_t *s = json_stringn(out, len);
    free(out);
    return s ? s : json_string("");
}

json_t *dsv4_token_json_bytes(const dsv4_server *srv, int32_t id) {
    size_t n = 0;
    const uint8_t *b = dsv4_token_bytes(srv->tok, id, &n);
    json_t *a = json_array();
    for (size_t i = 0; b && i < n; i++) json_array_append_new(a, json_integer(b[i]));
    return a;
}

/* ---- the test hook: scripted replies ------------------------------------------------------- */

struct dsv4_script {
    json_t *rules;
};

dsv4_status dsv4_script_load(const char *path, dsv4_script **out) {
    *out = NULL;
    json_error_t jerr;
    json_t *r = json_load_file(path, 0, &jerr);
    if (!r) return dsv4_error(DSV4_EFORMAT, "%s: line %d: %s", path, jerr.line, jerr.text);
    size_t i;
    json_t *rule;
    if (!json_is_array(r)) {
        json_decref(r);
        return dsv4_error(DSV4_EFORMAT, "%s: expected a list of rules", path);
    }
    json_array_foreach(r, i, rule) {
        if (!json_is_string(json_object_get(rule, "match"))) {
            json_decref(r);
            return dsv4_error(DSV4_EFORMAT, "%s: rule %zu has no \"match\" string", path, i);
        }
    }
    dsv4_script *s = dsv4_calloc(1, sizeof *s, "script");
    if (!s) {
        json_decref(r);
        return DSV4_ENOMEM;
    }
    s->rules = r;
    *out = s;
    return DSV4_OK;
}

void dsv4_script_free(dsv4_script *s) {
    if (!s) return;
    json_decref(s->rules);
    free(s);
}

/* The reply text of a rule: [reasoning </think>] content [DSML tool calls] */
static bool script_reply(const json_t *rule, bool thinking, dsv4_strbuf *out) {
    const char *reasoning = json_string_value(json_object_get(rule, "reasoning"));
    const char *content = json_string_value(json_object_get(rule, "content"));
    if (thinking) {
        if (reasoning) dsv4_strbuf_puts(out, reasoning);
        dsv4_strbuf_puts(out, DSV4_TOK_THINK_END);
    }
    if (content) dsv4_strbuf_puts(out, content);
    const json_t *calls = json_object_get(rule, "tool_calls");
    if (json_is_array(calls) && json_array_size(calls)) {
        json_t *oa = json_array();
        size_t i;
        const json_t *c;
        json_array_foreach(calls, i, c) {
            char *args = json_dumps(json_object_get(c, "arguments"), JSON_COMPACT | JSON_ENCODE_ANY);
            json_array_append_new(oa, json_pack("{s:s, s:{s:O, s:s}}", "type", "function", "function", "name",
                                                json_object_get(c, "name"), "arguments", args ? args : "{}"));
            free(args);
        }
        bool ok = !dsv4_chat_render_tool_calls(out, oa, "script tool_calls");
        json_decref(oa);
        if (!ok) return false;
    }
    return dsv4_strbuf_status(out) == DSV4_OK;
}

static void script_apply(dsv4_server *srv, const char *prompt, size_t len, dsv4_job *j) {
    /* the last user turn: after the last <｜User｜> */
    const char *turn = prompt;
    for (const char *p = prompt; (p = memmem(p, len - (size_t)(p - prompt), DSV4_TOK_USER, strlen(DSV4_TOK_USER)));
         p += strlen(DSV4_TOK_USER))
        turn = p;
    size_t turn_len = len - (size_t)(turn - prompt);
    size_t i;
    const json_t *rule;
    json_array_foreach(srv->script->rules, i, rule) {
        const char *m = json_string_value(json_object_get(rule, "match"));
        if (!memmem(turn, turn_len, m, strlen(m))) continue;
        dsv4_strbuf b = DSV4_STRBUF_INIT;
        int32_t *ids = NULL;
        size_t n = 0;
        if (script_reply(rule, j->gen.in_reasoning, &b) &&
            !dsv4_tokenize(srv->tok, b.data ? b.data : "", b.len, &ids, &n)) {
            int32_t *all = realloc(ids, (n + 1) * sizeof *all);
            if (all) {
                all[n] = srv->tok_eos;
                j->script = all;
                j->n_script = (int)n + 1;
            } else {
                free(ids);
            }
        }
        dsv4_strbuf_free(&b);
        return;
    }
}
