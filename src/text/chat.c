/* chat.c: messages to a DeepSeek-V4 prompt (the encode_messages() of encoding_dsv4.py).
 *
 * The reference works in three passes over Python dicts, and so do we, over a light view
 * of the caller's JSON (nothing is copied or modified):
 *
 *  1. Merge. V4 has no tool role: tool results travel inside user turns as
 *     <tool_result>...</tool_result> blocks. A run of consecutive user and tool messages
 *     becomes one user turn made of blocks (a user message does not join a turn that carries
 *     a task). Only task survives from the user message that opened the turn; its other
 *     fields, tools included, are dropped, as merge_tool_messages() does.
 *  2. Order. The tool results of a turn are stably sorted by the position of their
 *     tool_call_id in the latest assistant tool_calls (unknown ids count as position 0).
 *     The `context` messages set that starting order but are merged and sorted on their own.
 *  3. Drop. In thinking mode with drop_thinking (and no message carrying tools), turns before
 *     the last user/developer turn lose their reasoning, and developer (and unknown-role)
 *     turns there disappear. The context is dropped separately to count how many of the
 *     resulting turns are already encoded, which is what the reference does.
 *
 * Then every turn after the context renders on its own (render_turn), looking at its
 * neighbours only to decide the transition: after a user/developer turn that is last or
 * followed by an assistant/latest_reminder turn comes "<｜Assistant｜>" and <think> or
 * </think>, or the turn's quick-instruction task token.
 *
 * Input is validated up front, message by message, so rendering itself cannot fail on
 * types; the rules follow what the reference accepts (see chat.h). */
#include "text/chat.h"

#include <stdio.h>

#include "base/base.h"
#include "text/pyjson.h"

/* The fixed preamble of reasoning_effort="max" (REASONING_EFFORT_MAX in the reference). */
static const char effort_max_preamble[] =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to "
    "resolve the root cause, rigorously stress-testing your logic against all potential paths, "
    "edge cases, and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, "
    "considered alternative, and rejected hypothesis to ensure absolutely no assumption is left "
    "unchecked.\n\n";

/* Quick-instruction tasks and their tokens. */
static const struct {
    const char *name, *token;
} tasks[] = {
    {"action", "<｜action｜>"}, {"query", "<｜query｜>"}, {"authority", "<｜authority｜>"},
    {"domain", "<｜domain｜>"}, {"title", "<｜title｜>"}, {"read_url", "<｜read_url｜>"},
};

typedef enum role {
    ROLE_SYSTEM,
    ROLE_USER,
    ROLE_ASSISTANT,
    ROLE_TOOL,
    ROLE_DEVELOPER,
    ROLE_LATEST_REMINDER,
    ROLE_OTHER, /* kept, and an error only if it has to be rendered */
} role;

static const char *const role_names[] = {"system", "user", "assistant", "tool", "developer", "latest_reminder"};

/* One piece of a user turn: the text of a user message, or the result of a tool. */
typedef struct block {
    bool is_tool_result;
    const json_t *content; /* the message's content; NULL when absent */
    const char *tool_use_id;
} block;

/* A message after merging. Turns other than user point at their message; a user turn owns
 * its blocks. */
typedef struct turn {
    role role;
    const char *role_name;
    const json_t *msg;  /* the message (for a user turn: the one that opened it) */
    const char *list;   /* "messages" or "context", for error messages */
    size_t index;       /* the message's index in that list */
    const json_t *task; /* NULL when absent or null */
    block *blocks;
    size_t n_blocks;
} turn;

/* A list of turns (pointers into one storage array, so lists can share turns). */
typedef struct turns {
    turn **items;
    size_t n;
} turns;

/* ---- validation ----------------------------------------------------------------------- */

/* A JSON string equal to a C string (jansson strings may hold NUL bytes). */
static bool json_str_is(const json_t *v, const char *s) {
    return json_is_string(v) && json_string_length(v) == strlen(s) && !strcmp(json_string_value(v), s);
}

static role role_of(const json_t *name) {
    for (size_t i = 0; i < DSV4_ARRAY_LEN(role_names); i++)
        if (json_str_is(name, role_names[i])) return (role)i;
    return ROLE_OTHER;
}

static const char *task_token(const json_t *name) {
    for (size_t i = 0; i < DSV4_ARRAY_LEN(tasks); i++)
        if (json_str_is(name, tasks[i].name)) return tasks[i].token;
    return NULL;
}

static bool is_string_or_null(const json_t *v) { return !v || json_is_string(v) || json_is_null(v); }

static dsv4_status bad(const char *list, size_t i, const char *field, const char *what) {
    return dsv4_error(DSV4_EINVAL, "%s[%zu].%s: %s", list, i, field, what);
}

/* A tool result's content: a string, null, or a list of {"type": ..., "text": ...} blocks. */
static dsv4_status check_tool_content(const json_t *content, const char *list, size_t i) {
    if (is_string_or_null(content)) return DSV4_OK;
    if (!json_is_array(content)) return bad(list, i, "content", "expected a string, null or a list of blocks");
    size_t k;
    const json_t *b;
    json_array_foreach(content, k, b) {
        char field[64];
        snprintf(field, sizeof field, "content[%zu]", k);
        if (!json_is_object(b)) return bad(list, i, field, "expected an object");
        const json_t *type = json_object_get(b, "type"), *text = json_object_get(b, "text");
        if (!is_string_or_null(type)) return bad(list, i, field, "\"type\" must be a string");
        if (json_str_is(type, "text") && text && !json_is_string(text))
            return bad(list, i, field, "\"text\" must be a string");
    }
    return DSV4_OK;
}

static dsv4_status check_message(const json_t *m, const char *list, size_t i) {
    if (!json_is_object(m)) return dsv4_error(DSV4_EINVAL, "%s[%zu]: expected a message object", list, i);
    const json_t *r = json_object_get(m, "role");
    if (!json_is_string(r)) return bad(list, i, "role", r ? "expected a string" : "missing");
    role ro = role_of(r);
    const json_t *content = json_object_get(m, "content");
    switch (ro) {
    case ROLE_SYSTEM:
    case ROLE_ASSISTANT:
    case ROLE_LATEST_REMINDER:
        if (!is_string_or_null(content)) return bad(list, i, "content", "expected a string or null");
        break;
    case ROLE_USER:
        if (content && !json_is_string(content)) return bad(list, i, "content", "expected a string");
        break;
    case ROLE_DEVELOPER:
        if (!json_is_string(content) || !json_string_length(content))
            return bad(list, i, "content", "a developer message needs non-empty text");
        break;
    case ROLE_TOOL: {
        dsv4_status st = check_tool_content(content, list, i);
        if (st) return st;
        if (!is_string_or_null(json_object_get(m, "tool_call_id")))
            return bad(list, i, "tool_call_id", "expected a string");
        break;
    }
    case ROLE_OTHER: break;
    }
    if (ro == ROLE_ASSISTANT) {
        if (!is_string_or_null(json_object_get(m, "reasoning_content")))
            return bad(list, i, "reasoning_content", "expected a string or null");
        /* tool_calls are checked as they are rendered (dsv4_chat_render_tool_calls). */
    }
    /* Tools switch reasoning-dropping off wherever they are; their entries are checked as
     * they are rendered (dsv4_chat_render_tools). */
    const json_t *tools = json_object_get(m, "tools");
    if (tools && !json_is_null(tools) && !json_is_array(tools)) return bad(list, i, "tools", "expected a list");
    const json_t *task = json_object_get(m, "task");
    if (task && !json_is_null(task) && !task_token(task))
        return bad(list, i, "task", "expected one of action, query, authority, domain, title, read_url");
    return DSV4_OK;
}

/* ---- merging tool results into user turns ------------------------------------------- */

static const json_t *non_null(const json_t *v) { return v && !json_is_null(v) ? v : NULL; }

static dsv4_status add_block(turn *t, bool is_tool_result, const json_t *m) {
    block *nb = realloc(t->blocks, (t->n_blocks + 1) * sizeof *nb);
    if (!nb) return dsv4_error(DSV4_ENOMEM, "out of memory merging tool results");
    t->blocks = nb;
    const json_t *id = json_object_get(m, "tool_call_id");
    nb[t->n_blocks++] = (block){
        .is_tool_result = is_tool_result,
        .content = json_object_get(m, "content"),
        .tool_use_id = json_is_string(id) ? json_string_value(id) : "",
    };
    return DSV4_OK;
}

/* merge_tool_messages(): appends the turns of `msgs` to *out (sized by the caller). */
static dsv4_status merge(const json_t *msgs, const char *list, turn *storage, turns *out) {
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *name = json_string_value(json_object_get(m, "role"));
        role ro = role_of(json_object_get(m, "role"));
        turn *last = out->n ? out->items[out->n - 1] : NULL;
        bool into_last = last && last->role == ROLE_USER &&
                         (ro == ROLE_TOOL || (ro == ROLE_USER && !last->task));
        if ((ro == ROLE_TOOL || ro == ROLE_USER) && into_last) {
            dsv4_status st = add_block(last, ro == ROLE_TOOL, m);
            if (st) return st;
            continue;
        }
        turn *t = &storage[out->n];
        *t = (turn){.role = ro, .role_name = name, .msg = m, .list = list, .index = i,
                    .task = ro == ROLE_TOOL ? NULL : non_null(json_object_get(m, "task"))};
        if (ro == ROLE_TOOL || ro == ROLE_USER) {
            t->role = ROLE_USER;
            dsv4_status st = add_block(t, ro == ROLE_TOOL, m);
            if (st) return st;
        }
        out->items[out->n++] = t;
    }
    return DSV4_OK;
}

/* ---- ordering tool results ------------------------------------------------------------- */

/* The reference's last_tool_call_order: the tool_calls of the latest assistant message
 * that has any, whose positions order the results that follow. */
typedef struct call_order {
    const json_t *calls; /* that tool_calls array, or NULL */
} call_order;

static const char *call_id(const json_t *tc) {
    const char *id = json_string_value(json_object_get(tc, "id"));
    if (id && *id) return id;
    return json_string_value(json_object_get(json_object_get(tc, "function"), "id"));
}

static void note_calls(call_order *order, const json_t *msg) {
    const json_t *calls = json_object_get(msg, "tool_calls");
    if (dsv4_pyjson_truthy(calls ? calls : json_null())) order->calls = calls;
}

/* The sort key of a result: like the reference's dict, a repeated id maps to its last
 * position and an unknown one to 0. */
static long position_of(const call_order *order, const char *id) {
    long pos = 0;
    size_t k;
    const json_t *tc;
    json_array_foreach(order->calls, k, tc) {
        const char *cid = call_id(tc);
        if (cid && *cid && !strcmp(cid, id)) pos = (long)k;
    }
    return pos;
}

/* The reference sorts only when some call has an id (its dict is not empty). */
static bool order_is_empty(const call_order *order) {
    size_t k;
    const json_t *tc;
    json_array_foreach(order->calls, k, tc) {
        const char *cid = call_id(tc);
        if (cid && *cid) return false;
    }
    return true;
}

/* sort_tool_results_by_call_order() over a list of turns. */
static void sort_results(const turns *list, call_order *order) {
    for (size_t t = 0; t < list->n; t++) {
        turn *tu = list->items[t];
        if (tu->role == ROLE_ASSISTANT) {
            note_calls(order, tu->msg);
            continue;
        }
        if (tu->role != ROLE_USER || order_is_empty(order)) continue;
        size_t n_results = 0;
        for (size_t b = 0; b < tu->n_blocks; b++) n_results += tu->blocks[b].is_tool_result;
        if (n_results < 2) continue;
        /* Insertion sort of the result blocks in place, skipping text blocks: stable. */
        for (size_t b = 1; b < tu->n_blocks; b++) {
            if (!tu->blocks[b].is_tool_result) continue;
            long key = position_of(order, tu->blocks[b].tool_use_id);
            size_t at = b;
            for (size_t prev = b; prev-- > 0;) {
                if (!tu->blocks[prev].is_tool_result) continue;
                if (position_of(order, tu->blocks[prev].tool_use_id) <= key) break;
                at = prev;
            }
            if (at == b) continue;
            /* Rotate the result blocks between `at` and `b` one result slot to the right. */
            block moving = tu->blocks[b];
            size_t dst = b;
            for (size_t src = b; src-- > at;) {
                if (!tu->blocks[src].is_tool_result) continue;
                tu->blocks[dst] = tu->blocks[src];
                dst = src;
            }
            tu->blocks[dst] = moving;
        }
    }
}

/* ---- dropping past reasoning ------------------------------------------------------------ */

static long last_user_index(const turns *list) {
    for (size_t i = list->n; i-- > 0;)
        if (list->items[i]->role == ROLE_USER || list->items[i]->role == ROLE_DEVELOPER) return (long)i;
    return -1;
}

/* _drop_thinking_messages(): before the last user turn, keep user, system, latest_reminder
 * (and the reference's "direct_search_results") turns and assistant turns, drop the rest.
 * The assistant turns kept there lose their reasoning, which render_turn already leaves
 * out of every turn before the last user turn when dropping is on, so no mark is needed. */
static void drop_thinking(const turns *in, turns *out) {
    long last_user = last_user_index(in);
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        turn *t = in->items[i];
        bool keep = (long)i >= last_user || t->role == ROLE_USER || t->role == ROLE_SYSTEM ||
                    t->role == ROLE_LATEST_REMINDER || t->role == ROLE_ASSISTANT ||
                    (t->role == ROLE_OTHER && !strcmp(t->role_name, "direct_search_results"));
        if (keep) out->items[out->n++] = t;
    }
}

/* ---- rendering one turn ------------------------------------------------------------- */

typedef struct render_ctx {
    const dsv4_chat_opts *opts;
    bool drop; /* effective drop_thinking */
    const turns *list;
    long last_user;
} render_ctx;

static void put_json_string(dsv4_strbuf *out, const json_t *v) {
    dsv4_strbuf_append(out, json_string_value(v), json_string_length(v));
}

/* `content or ""` of a string-or-null field. */
static void put_text(dsv4_strbuf *out, const json_t *v) {
    if (json_is_string(v)) put_json_string(out, v);
}

static void put_tool_result(dsv4_strbuf *out, const json_t *content) {
    dsv4_strbuf_puts(out, "<tool_result>");
    if (!content) {
        /* msg.get("content", "") */
    } else if (json_is_null(content)) {
        dsv4_strbuf_puts(out, "None"); /* the reference formats Python's None */
    } else if (json_is_string(content)) {
        put_json_string(out, content);
    } else {
        size_t k;
        const json_t *b;
        json_array_foreach(content, k, b) {
            if (k) dsv4_strbuf_puts(out, "\n\n");
            const json_t *type = json_object_get(b, "type");
            if (json_str_is(type, "text")) {
                put_text(out, json_object_get(b, "text"));
            } else {
                dsv4_strbuf_puts(out, "[Unsupported ");
                if (json_is_string(type)) put_json_string(out, type);
                else dsv4_strbuf_puts(out, "None");
                dsv4_strbuf_putc(out, ']');
            }
        }
    }
    dsv4_strbuf_puts(out, "</tool_result>");
}

/* The tools and response-format sections that follow a system or developer text. */
static dsv4_status put_sections(dsv4_strbuf *out, const turn *t) {
    const json_t *tools = json_object_get(t->msg, "tools");
    if (tools && dsv4_pyjson_truthy(tools)) {
        char where[64];
        snprintf(where, sizeof where, "%s[%zu].tools", t->list, t->index);
        dsv4_strbuf_puts(out, "\n\n");
        dsv4_status st = dsv4_chat_render_tools(out, tools, where);
        if (st) return st;
    }
    const json_t *format = json_object_get(t->msg, "response_format");
    if (format && dsv4_pyjson_truthy(format)) {
        dsv4_strbuf_puts(out, "\n\n## Response Format:\n\nYou MUST strictly adhere to the following "
                              "schema to reply:\n");
        dsv4_pyjson_dump(out, format);
    }
    return DSV4_OK;
}

static dsv4_status render_assistant(dsv4_strbuf *out, const render_ctx *c, size_t i) {
    const turn *t = c->list->items[i];
    bool thinking = c->opts->thinking_mode == DSV4_MODE_THINKING;
    /* A turn that answers a quick-instruction task never has a thinking part. */
    bool after_task = i > 0 && c->list->items[i - 1]->task;
    if (thinking && !after_task && (!c->drop || (long)i > c->last_user)) {
        put_text(out, json_object_get(t->msg, "reasoning_content"));
        dsv4_strbuf_puts(out, DSV4_TOK_THINK_END);
    }
    put_text(out, json_object_get(t->msg, "content"));
    const json_t *calls = json_object_get(t->msg, "tool_calls");
    if (calls && dsv4_pyjson_truthy(calls)) {
        char where[64];
        snprintf(where, sizeof where, "%s[%zu].tool_calls", t->list, t->index);
        dsv4_status st = dsv4_chat_render_tool_calls(out, calls, where);
        if (st) return st;
    }
    const json_t *wo_eos = json_object_get(t->msg, "wo_eos");
    if (!(wo_eos && dsv4_pyjson_truthy(wo_eos))) dsv4_strbuf_puts(out, DSV4_TOK_EOS);
    return DSV4_OK;
}

/* render_message(): turn i of the list, with the transition that follows it. */
static dsv4_status render_turn(dsv4_strbuf *out, const render_ctx *c, size_t i) {
    const turn *t = c->list->items[i];
    bool thinking = c->opts->thinking_mode == DSV4_MODE_THINKING;
    dsv4_status st = DSV4_OK;
    if (i == 0 && thinking && c->opts->reasoning_effort == DSV4_EFFORT_MAX)
        dsv4_strbuf_puts(out, effort_max_preamble);

    switch (t->role) {
    case ROLE_SYSTEM:
        put_text(out, json_object_get(t->msg, "content"));
        st = put_sections(out, t);
        break;
    case ROLE_DEVELOPER:
        dsv4_strbuf_puts(out, DSV4_TOK_USER);
        put_text(out, json_object_get(t->msg, "content"));
        st = put_sections(out, t);
        break;
    case ROLE_USER:
        dsv4_strbuf_puts(out, DSV4_TOK_USER);
        for (size_t b = 0; b < t->n_blocks; b++) {
            if (b) dsv4_strbuf_puts(out, "\n\n");
            if (t->blocks[b].is_tool_result) put_tool_result(out, t->blocks[b].content);
            else put_text(out, t->blocks[b].content);
        }
        break;
    case ROLE_LATEST_REMINDER: {
        const json_t *content = json_object_get(t->msg, "content");
        dsv4_strbuf_puts(out, DSV4_TOK_LATEST_REMINDER);
        if (json_is_string(content)) put_json_string(out, content);
        else dsv4_strbuf_puts(out, "None"); /* the reference formats Python's None */
        break;
    }
    case ROLE_ASSISTANT: st = render_assistant(out, c, i); break;
    case ROLE_TOOL: /* merged away */
    case ROLE_OTHER:
        return dsv4_error(DSV4_EINVAL, "%s[%zu].role: unknown role \"%s\"", t->list, t->index, t->role_name);
    }
    if (st) return st;

    /* The transition: only when this turn is last or the model speaks next. */
    if (i + 1 < c->list->n) {
        role next = c->list->items[i + 1]->role;
        if (next != ROLE_ASSISTANT && next != ROLE_LATEST_REMINDER) return DSV4_OK;
    }
    if (t->task) {
        if (json_str_is(t->task, "action")) { /* the model answers it: open an assistant turn */
            dsv4_strbuf_puts(out, DSV4_TOK_ASSISTANT);
            dsv4_strbuf_puts(out, thinking ? DSV4_TOK_THINK : DSV4_TOK_THINK_END);
        }
        dsv4_strbuf_puts(out, task_token(t->task));
    } else if (t->role == ROLE_USER || t->role == ROLE_DEVELOPER) {
        dsv4_strbuf_puts(out, DSV4_TOK_ASSISTANT);
        bool open_thinking = thinking && (!c->drop || (long)i >= c->last_user);
        dsv4_strbuf_puts(out, open_thinking ? DSV4_TOK_THINK : DSV4_TOK_THINK_END);
    }
    return DSV4_OK;
}

/* ---- encode_messages ---------------------------------------------------------------- */

static dsv4_status check_list(const json_t *list, const char *name) {
    if (!json_is_array(list)) return dsv4_error(DSV4_EINVAL, "%s: expected a list of messages", name);
    size_t i;
    const json_t *m;
    json_array_foreach(list, i, m) {
        dsv4_status st = check_message(m, name, i);
        if (st) return st;
    }
    return DSV4_OK;
}

static bool any_tools(const turns *list) {
    for (size_t i = 0; i < list->n; i++) {
        if (list->items[i]->role == ROLE_USER) continue; /* merging dropped a user's tools */
        const json_t *tools = json_object_get(list->items[i]->msg, "tools");
        if (tools && dsv4_pyjson_truthy(tools)) return true;
    }
    return false;
}

dsv4_status dsv4_chat_render(const json_t *messages, const dsv4_chat_opts *opts, char **out, size_t *len) {
    static const dsv4_chat_opts defaults;
    if (!opts) opts = &defaults;
    *out = NULL;
    if (len) *len = 0;
    const json_t *context = opts->context && !json_is_null(opts->context) ? opts->context : NULL;
    dsv4_status st = check_list(messages, "messages");
    if (!st && context) st = check_list(context, "context");
    if (st) return st;
    if (opts->thinking_mode != DSV4_MODE_CHAT && opts->thinking_mode != DSV4_MODE_THINKING)
        return dsv4_error(DSV4_EINVAL, "chat options: invalid thinking mode %d", (int)opts->thinking_mode);
    if (opts->reasoning_effort < DSV4_EFFORT_NONE || opts->reasoning_effort > DSV4_EFFORT_MAX)
        return dsv4_error(DSV4_EINVAL, "chat options: invalid reasoning effort %d", (int)opts->reasoning_effort);

    size_t n_ctx = context ? json_array_size(context) : 0, n_all = n_ctx + json_array_size(messages);
    turn *storage = dsv4_calloc(n_all, sizeof *storage, "chat turns");
    turn **items = dsv4_calloc(n_all, sizeof *items, "chat turn list");
    turn **dropped = dsv4_calloc(n_all, sizeof *dropped, "chat turn list");
    turn **ctx_dropped = dsv4_calloc(n_all, sizeof *ctx_dropped, "chat turn list");
    dsv4_strbuf prompt = DSV4_STRBUF_INIT;
    if (!storage || !items || !dropped || !ctx_dropped) {
        st = DSV4_ENOMEM;
        goto done;
    }

    /* 1-2: merge and order; the context's raw assistant messages set the starting order. */
    turns all = {items, 0};
    if (context) st = merge(context, "context", storage, &all);
    size_t ctx_turns = all.n;
    if (!st) st = merge(messages, "messages", storage, &all);
    if (st) goto done;
    call_order order = {NULL};
    size_t i;
    const json_t *m;
    if (context) {
        json_array_foreach(context, i, m)
            if (role_of(json_object_get(m, "role")) == ROLE_ASSISTANT) note_calls(&order, m);
    }
    turns new_turns = {items + ctx_turns, all.n - ctx_turns}, ctx_list = {items, ctx_turns};
    sort_results(&new_turns, &order);
    order.calls = NULL;
    sort_results(&ctx_list, &order);

    /* 3: drop past reasoning. */
    render_ctx c = {.opts = opts, .drop = !opts->keep_thinking && !any_tools(&all), .list = &all};
    size_t first = ctx_turns;
    turns kept = {dropped, 0}, ctx_kept = {ctx_dropped, 0};
    if (opts->thinking_mode == DSV4_MODE_THINKING && c.drop) {
        drop_thinking(&all, &kept);
        drop_thinking(&ctx_list, &ctx_kept);
        c.list = &kept;
        first = ctx_kept.n;
    }
    c.last_user = last_user_index(c.list);

    if (!opts->no_default_bos && n_ctx == 0) dsv4_strbuf_puts(&prompt, DSV4_TOK_BOS);
    for (size_t t = first; t < c.list->n && !st; t++) st = render_turn(&prompt, &c, t);
    if (!st) st = dsv4_strbuf_status(&prompt);
    if (!st) *out = dsv4_strbuf_release(&prompt, len);

done:
    if (storage)
        for (size_t t = 0; t < n_all; t++) free(storage[t].blocks);
    free(storage);
    free(items);
    free(dropped);
    free(ctx_dropped);
    dsv4_strbuf_free(&prompt);
    return st;
}

bool dsv4_chat_parse_mode(const char *s, dsv4_thinking_mode *out) {
    if (!s) return false;
    if (!strcmp(s, "chat")) *out = DSV4_MODE_CHAT;
    else if (!strcmp(s, "thinking")) *out = DSV4_MODE_THINKING;
    else return false;
    return true;
}

bool dsv4_chat_parse_effort(const char *s, dsv4_reasoning_effort *out) {
    if (!s) *out = DSV4_EFFORT_NONE;
    else if (!strcmp(s, "high")) *out = DSV4_EFFORT_HIGH;
    else if (!strcmp(s, "max")) *out = DSV4_EFFORT_MAX;
    else return false;
    return true;
}
