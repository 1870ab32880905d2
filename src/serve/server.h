/* server.h: `dsv4 serve`, an HTTP server with DeepSeek's API semantics.
 *
 * Layers, top to bottom:
 *   http.c       libmicrohttpd (a thread per connection, keep-alive, chunked SSE), the body
 *                limit, API keys, routing, error replies, streaming and waiting on jobs with
 *                client-disconnect detection
 *   openai.c     /v1/chat/completions, /v1/completions (plain and FIM), /v1/models
 *   anthropic.c  /v1/messages, /v1/messages/count_tokens
 *   request.c    what the dialects share: typed field access with precise errors, model names,
 *                prompt rendering and tokenizing, the result collector, the test-script hook
 *   scheduler.c  the engine thread (continuous batching), with cache/prefix_cache.c
 *
 * A dialect handler parses its JSON into a job (prompt tokens + generation parameters), submits
 * it, then either streams its events as they come (dsv4_http_stream) or waits for the end
 * (dsv4_http_wait) and answers once. Every error is answered in the dialect's shape. */
#ifndef DSV4_SERVE_SERVER_H
#define DSV4_SERVE_SERVER_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "base/base.h"
#include "cache/prefix_cache.h"
#include "serve/job.h"
#include "serve/scheduler.h"
#include "text/chat.h"
#include "text/strbuf.h"
#include "text/tokenizer.h"

typedef struct dsv4_server_opts {
    const char *host;    /* address to bind (default 127.0.0.1) */
    int port;            /* 0: any free port (see dsv4_server_port) */
    const char *api_key; /* NULL: no authentication */
    size_t max_body;     /* request body limit, bytes */
    int max_connections;
    double keepalive_s; /* SSE comment/ping after this long without output */
    const char *script; /* test hook: scripted replies (JSON file), or NULL */
} dsv4_server_opts;

typedef struct dsv4_script dsv4_script;

typedef struct dsv4_server {
    dsv4_server_opts o;
    dsv4_model *m;
    const dsv4_tokenizer *tok;
    dsv4_sched *sched;
    dsv4_prefix_cache *cache; /* may be NULL */
    int ctx;
    char model_name[256]; /* the served directory's name, also accepted as a model */
    int32_t tok_assistant, tok_think, tok_eos;
    dsv4_script *script;
    struct MHD_Daemon *daemon;
    atomic_bool stopping;
    atomic_llong next_id;
    double started;         /* dsv4_now() at start */
    long long started_unix; /* time(NULL) at start */
} dsv4_server;

dsv4_status dsv4_server_start(dsv4_server *srv);
int dsv4_server_port(const dsv4_server *srv);
/* Stop accepting, cancel what runs, wait for the connection threads. */
void dsv4_server_stop(dsv4_server *srv);

/* ---- errors ------------------------------------------------------------------------------- */

/* A request error: the HTTP status and a message saying what is wrong. */
typedef struct dsv4_req_err {
    unsigned status;
    char msg[768];
} dsv4_req_err;

bool dsv4_req_fail(dsv4_req_err *e, unsigned status, const char *fmt, ...) DSV4_PRINTF(3, 4);

/* ---- typed fields: absent or null leaves *out as it is; a wrong type or range is an error
 * naming the field ---------------------------------------------------------------------------- */
bool dsv4_req_number(const json_t *obj, const char *key, double lo, double hi, double *out, dsv4_req_err *e);
bool dsv4_req_int(const json_t *obj, const char *key, long long lo, long long hi, long long *out, dsv4_req_err *e);
bool dsv4_req_bool(const json_t *obj, const char *key, bool *out, dsv4_req_err *e);
bool dsv4_req_string(const json_t *obj, const char *key, const char **out, dsv4_req_err *e);
/* stop: a string or a list of up to 16 non-empty strings, into the job. */
bool dsv4_req_stops(const json_t *obj, const char *key, dsv4_job *j, dsv4_req_err *e);
/* OpenAI's logit_bias ({"token id": bias in [-100, 100]}; the Anthropic dialect has none, pass
 * openai false) and the vLLM / llama.cpp extension ignore_eos (true: the end-of-sentence token
 * is never sampled, so a reply runs to max_tokens, a stop string or the context's end). Call it
 * after the sampling parameters are set: it adds the list to j->gen.sampling. */
bool dsv4_req_logit_bias(dsv4_server *srv, const json_t *body, bool openai, dsv4_job *j, dsv4_req_err *e);

/* The model field: required, a string, and one of the names we serve. `anthropic` also
 * accepts claude-* names, as DeepSeek's Anthropic endpoint does. */
bool dsv4_req_model(const dsv4_server *srv, const json_t *body, bool anthropic, const char **model, dsv4_req_err *e);

/* ---- prompts --------------------------------------------------------------------------------- */

/* Render OpenAI-style messages (see text/chat.h) and tokenize them into the job: prompt,
 * the cache point after the last <｜Assistant｜>, whether the output starts as reasoning, the
 * scripted reply if the test hook has one. For a generation (not a token count) checks that
 * the prompt fits the context with room for at least one token. */
bool dsv4_req_chat_prompt(dsv4_server *srv, const json_t *messages, const dsv4_chat_opts *opts, bool generate,
                          dsv4_job *j, dsv4_req_err *e);
/* A raw text prompt (completions): BOS + text. */
bool dsv4_req_text_prompt(dsv4_server *srv, const char *text, size_t len, dsv4_job *j, dsv4_req_err *e);
/* Force the DSML opening of a tool call at the start of the answer: any tool (name NULL) or
 * the named one. */
bool dsv4_req_force_tool(dsv4_server *srv, dsv4_job *j, const char *name, dsv4_req_err *e);
/* max_tokens: default and bound from the context left after the prompt. */
bool dsv4_req_max_tokens(dsv4_server *srv, dsv4_job *j, long long asked, dsv4_req_err *e);

/* Submit, answering 503 when the queue is full. */
bool dsv4_req_submit(dsv4_server *srv, dsv4_job *j, dsv4_req_err *e);

/* A seed for a request that names none: different for every request. */
uint64_t dsv4_req_seed(dsv4_server *srv);
/* Ids of replies and tool calls ("chatcmpl-...", "msg_...", "call_..."), unique per server run. */
void dsv4_req_id(dsv4_server *srv, const char *prefix, char *buf, size_t len);

/* ---- results ------------------------------------------------------------------------------- */

typedef struct dsv4_call {
    char *name;
    dsv4_strbuf args;
    char id[48];
} dsv4_call;

/* Everything a generation sent, for a reply that is not streamed. */
typedef struct dsv4_collect {
    dsv4_strbuf reasoning, content;
    dsv4_call *calls;
    int n_calls;
    dsv4_gen_token *tokens;
    int n_tokens, cap_tokens;
} dsv4_collect;

void dsv4_collect_event(dsv4_server *srv, dsv4_collect *c, const dsv4_event *ev, const char *id_prefix);
void dsv4_collect_free(dsv4_collect *c);

/* A token's text (lossy UTF-8) and bytes, for logprobs. */
json_t *dsv4_token_json_text(const dsv4_server *srv, int32_t id);
json_t *dsv4_token_json_bytes(const dsv4_server *srv, int32_t id);

/* ---- the test hook ---------------------------------------------------------------------------- */

/* Scripted replies for protocol tests: a JSON list of
 *   {"match": TEXT, "reasoning": TEXT, "content": TEXT, "tool_calls": [{"name": N, "arguments": {...}}]}
 * The first rule whose match occurs in the prompt's last user turn replaces sampling for that
 * request: its reply (reasoning only in thinking mode) is forced token by token, then EOS. */
dsv4_status dsv4_script_load(const char *path, dsv4_script **out);
void dsv4_script_free(dsv4_script *s);

/* ---- HTTP (http.c) --------------------------------------------------------------------------- */

typedef enum dsv4_dialect { DSV4_OPENAI, DSV4_ANTHROPIC } dsv4_dialect;

typedef struct dsv4_http_req dsv4_http_req;

dsv4_server *dsv4_http_server(dsv4_http_req *rq);
/* Reply with JSON (takes the reference) / an error in the request's dialect. Return the
 * value the MHD handler must return. */
int dsv4_http_json(dsv4_http_req *rq, unsigned status, json_t *body);
int dsv4_http_error(dsv4_http_req *rq, const dsv4_req_err *e);

/* Streaming: the formatter turns the job's events into SSE text. */
typedef struct dsv4_stream_fmt {
    void *state;
    void (*begin)(void *state, dsv4_strbuf *out);
    void (*event)(void *state, const dsv4_event *ev, dsv4_strbuf *out);
    void (*end)(void *state, dsv4_job *j, dsv4_strbuf *out);
    void (*keepalive)(void *state, dsv4_strbuf *out);
    void (*free)(void *state);
} dsv4_stream_fmt;

/* Start an SSE response fed by the job (takes a reference to it and owns fmt.state). */
int dsv4_http_stream(dsv4_http_req *rq, dsv4_job *j, const dsv4_stream_fmt *fmt);
/* Collect the job's events until it is done. False when the client went away or the server
 * is stopping (the job is then cancelled): the handler answers nothing and closes. */
bool dsv4_http_wait(dsv4_http_req *rq, dsv4_job *j, dsv4_collect *c, const char *id_prefix);
/* Close the connection without a reply. */
int dsv4_http_abort(dsv4_http_req *rq);

/* One SSE event: "event: NAME\n" (if name) "data: JSON\n\n"; takes the reference. */
void dsv4_sse(dsv4_strbuf *out, const char *name, json_t *data);

/* ---- dialect handlers ---------------------------------------------------------------------- */
int dsv4_openai_chat(dsv4_http_req *rq, const json_t *body);
int dsv4_openai_completions(dsv4_http_req *rq, const json_t *body);
int dsv4_openai_models(dsv4_http_req *rq, const char *one);
int dsv4_anthropic_messages(dsv4_http_req *rq, const json_t *body);
int dsv4_anthropic_count_tokens(dsv4_http_req *rq, const json_t *body);

/* The finish reason in each dialect. */
const char *dsv4_openai_finish(dsv4_finish f);

#endif
