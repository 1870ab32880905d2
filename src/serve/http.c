/* http.c: the HTTP side of `dsv4 serve`, on libmicrohttpd.
 *
 * Threads. libmicrohttpd runs a listening thread and one thread per connection, so a handler
 * may block: a non-streamed request waits for its job in its own thread, and a stream's
 * content callback waits for the next events. Connections are kept alive between requests;
 * streamed replies use chunked encoding.
 *
 * A request arrives in three calls of on_request: the first with the headers, then pieces of
 * the body (kept up to the limit, the rest discarded), then a last call where it is answered:
 * routing, the API key, the size limit, UTF-8 and JSON checks, then the dialect's handler. A
 * body over the limit is read to its end before the 413 goes out: answering early and closing
 * with unread bytes makes the kernel reset the connection, and the client never sees why.
 *
 * A client that goes away must free its slot at once. While a thread waits for a job it
 * polls its socket every 100 ms for a hang-up (POLLRDHUP), and cancels the job when it sees
 * one; a failed write ends a stream the same way (libmicrohttpd then frees the response,
 * which cancels the job). During a long silence (a prompt being read) a stream sends a
 * keep-alive: an SSE comment for OpenAI clients, a ping event for Anthropic ones. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "serve/server.h"
#include "text/utf8.h"

struct dsv4_http_req {
    dsv4_server *srv;
    struct MHD_Connection *conn;
    char method[16];
    char *path;
    dsv4_strbuf body;
    bool too_big, answered;
    dsv4_dialect dialect;
};

dsv4_server *dsv4_http_server(dsv4_http_req *rq) { return rq->srv; }

static int connection_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* The peer closed its end (or the socket failed). */
static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* ---- replies ------------------------------------------------------------------------------- */

static int send_bytes(dsv4_http_req *rq, unsigned status, const char *ctype, char *data, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    int ret = MHD_queue_response(rq->conn, status, r);
    MHD_destroy_response(r);
    rq->answered = true;
    return ret;
}

int dsv4_http_json(dsv4_http_req *rq, unsigned status, json_t *body) {
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) return MHD_NO;
    return send_bytes(rq, status, "application/json", text, strlen(text));
}

static const char *error_type(dsv4_dialect d, unsigned status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: return d == DSV4_ANTHROPIC ? "request_too_large" : "invalid_request_error";
    case 503: return d == DSV4_ANTHROPIC ? "overloaded_error" : "server_overloaded";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

int dsv4_http_error(dsv4_http_req *rq, const dsv4_req_err *e) {
    unsigned status = e->status ? e->status : 400;
    /* messages quote the request, cut to a length that may split a character: make them UTF-8 */
    char msg[DSV4_UTF8_LOSSY_MAX(sizeof e->msg) + 1];
    size_t used,
        n = dsv4_utf8_lossy((const uint8_t *)e->msg, strnlen(e->msg, sizeof e->msg), true, (uint8_t *)msg, &used);
    msg[n] = 0;
    json_t *body;
    if (rq->dialect == DSV4_ANTHROPIC)
        body = json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", error_type(rq->dialect, status),
                         "message", msg);
    else
        body = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", msg, "type", error_type(rq->dialect, status),
                         "param", "code");
    return dsv4_http_json(rq, status, body);
}

static int fail(dsv4_http_req *rq, unsigned status, const char *fmt, ...) DSV4_PRINTF(3, 4);
static int fail(dsv4_http_req *rq, unsigned status, const char *fmt, ...) {
    dsv4_req_err e = {.status = status};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof e.msg, fmt, ap);
    va_end(ap);
    return dsv4_http_error(rq, &e);
}

int dsv4_http_abort(dsv4_http_req *rq) {
    rq->answered = true;
    return MHD_NO;
}

void dsv4_sse(dsv4_strbuf *out, const char *name, json_t *data) {
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (!text) return;
    if (name) {
        dsv4_strbuf_puts(out, "event: ");
        dsv4_strbuf_puts(out, name);
        dsv4_strbuf_putc(out, '\n');
    }
    dsv4_strbuf_puts(out, "data: ");
    dsv4_strbuf_puts(out, text);
    dsv4_strbuf_puts(out, "\n\n");
    free(text);
}

/* ---- waiting and streaming ------------------------------------------------------------------- */

#define POLL_S 0.1

bool dsv4_http_wait(dsv4_http_req *rq, dsv4_job *j, dsv4_collect *c, const char *id_prefix) {
    int fd = connection_fd(rq->conn);
    for (;;) {
        dsv4_event *evs;
        bool done;
        size_t n = dsv4_job_take(j, POLL_S, &evs, &done);
        for (size_t i = 0; i < n; i++) {
            dsv4_collect_event(rq->srv, c, &evs[i], id_prefix);
            dsv4_event_clear(&evs[i]);
        }
        free(evs);
        if (done) return true;
        if (atomic_load(&rq->srv->stopping) || client_gone(fd)) {
            dsv4_job_cancel(j);
            return false;
        }
    }
}

typedef struct stream {
    dsv4_server *srv;
    int fd;
    dsv4_job *job;
    dsv4_stream_fmt fmt;
    dsv4_strbuf out;
    size_t sent;
    bool begun, ended;
    double last_out;
} stream;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *s = cls;
    (void)pos;
    for (;;) {
        if (s->sent < s->out.len) {
            size_t n = DSV4_MIN(max, s->out.len - s->sent);
            memcpy(buf, s->out.data + s->sent, n);
            s->sent += n;
            if (s->sent == s->out.len) {
                dsv4_strbuf_clear(&s->out);
                s->sent = 0;
            }
            s->last_out = dsv4_now();
            return (ssize_t)n;
        }
        if (s->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!s->begun) {
            s->begun = true;
            s->fmt.begin(s->fmt.state, &s->out);
            continue;
        }
        dsv4_event *evs;
        bool done;
        size_t n = dsv4_job_take(s->job, POLL_S, &evs, &done);
        for (size_t i = 0; i < n; i++) {
            s->fmt.event(s->fmt.state, &evs[i], &s->out);
            dsv4_event_clear(&evs[i]);
        }
        free(evs);
        if (done) {
            s->fmt.end(s->fmt.state, s->job, &s->out);
            s->ended = true;
            continue;
        }
        if (s->out.len) continue;
        if (atomic_load(&s->srv->stopping) || client_gone(s->fd)) {
            dsv4_job_cancel(s->job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (dsv4_now() - s->last_out >= s->srv->o.keepalive_s) s->fmt.keepalive(s->fmt.state, &s->out);
    }
}

static void stream_free(void *cls) {
    stream *s = cls;
    dsv4_job_cancel(s->job); /* a no-op when it is done; frees the slot when the client left */
    dsv4_job_unref(s->job);
    if (s->fmt.free) s->fmt.free(s->fmt.state);
    dsv4_strbuf_free(&s->out);
    free(s);
}

int dsv4_http_stream(dsv4_http_req *rq, dsv4_job *j, const dsv4_stream_fmt *fmt) {
    stream *s = calloc(1, sizeof *s);
    if (!s) {
        dsv4_job_cancel(j);
        if (fmt->free) fmt->free(fmt->state);
        return dsv4_http_abort(rq);
    }
    s->srv = rq->srv;
    s->fd = connection_fd(rq->conn);
    s->job = j;
    dsv4_job_ref(j);
    s->fmt = *fmt;
    s->last_out = dsv4_now();
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free);
    if (!r) {
        stream_free(s);
        return dsv4_http_abort(rq);
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    int ret = MHD_queue_response(rq->conn, 200, r);
    MHD_destroy_response(r);
    rq->answered = true;
    return ret;
}

/* ---- routing -------------------------------------------------------------------------------- */

static bool same_secret(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned diff = la != lb;
    for (size_t i = 0; i < la; i++) diff |= (unsigned char)a[i] ^ (unsigned char)b[i % (lb ? lb : 1)];
    return diff == 0;
}

static bool authorized(dsv4_http_req *rq) {
    const char *key = rq->srv->o.api_key;
    if (!key || !*key) return true;
    const char *x = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "x-api-key");
    if (x && same_secret(x, key)) return true;
    const char *auth = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Authorization");
    return auth && !strncasecmp(auth, "Bearer ", 7) && same_secret(auth + 7, key);
}

static int health(dsv4_http_req *rq) {
    dsv4_server *srv = rq->srv;
    dsv4_sched_stats st;
    dsv4_sched_stats_get(srv->sched, &st);
    json_t *j =
        json_pack("{s:s, s:s, s:i, s:f, s:{s:i, s:i, s:i, s:i}, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f}}",
                  "status", "ok", "model", srv->model_name, "ctx", srv->ctx, "uptime_s", dsv4_now() - srv->started,
                  "slots", "parallel", st.parallel, "active", st.active, "waiting", st.waiting, "queue", st.queue,
                  "engine", "steps", st.steps, "batch_rows", st.batch_rows, "prefill_tokens", st.prefill_tokens,
                  "decode_tokens", st.decode_tokens, "jobs_done", st.jobs_done, "jobs_cancelled", st.jobs_cancelled,
                  "jobs_failed", st.jobs_failed, "forward_s", st.forward_s, "sample_s", st.sample_s);
    if (j && srv->cache) {
        dsv4_prefix_cache_stats cs;
        dsv4_prefix_cache_stats_get(srv->cache, &cs);
        json_object_set_new(j, "cache",
                            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "lookups", cs.lookups, "hits",
                                      cs.hits, "hit_tokens", cs.hit_tokens, "ram_entries", cs.ram_entries, "ram_bytes",
                                      (json_int_t)cs.ram_bytes, "disk_entries", cs.disk_entries, "disk_bytes",
                                      (json_int_t)cs.disk_bytes, "disk_writes", cs.disk_writes));
    }
    return dsv4_http_json(rq, 200, j);
}

/* Strip the prefixes clients put in front of the API paths: DeepSeek's /anthropic and
 * /beta base URLs, and /v1. */
static const char *api_path(const char *p) {
    static const char *const prefixes[] = {"/anthropic", "/beta", "/v1"};
    for (size_t i = 0; i < DSV4_ARRAY_LEN(prefixes); i++) {
        size_t n = strlen(prefixes[i]);
        if (!strncmp(p, prefixes[i], n) && (p[n] == '/' || !p[n])) p += n;
    }
    return *p ? p : "/";
}

static json_t *parse_body(dsv4_http_req *rq, int *ret) {
    const uint8_t *b = (const uint8_t *)(rq->body.data ? rq->body.data : "");
    size_t bad = dsv4_utf8_check(b, rq->body.len);
    if (bad < rq->body.len) {
        *ret = fail(rq, 400, "the request body is not valid UTF-8 (byte offset %zu)", bad);
        return NULL;
    }
    json_error_t jerr;
    json_t *j = json_loadb(rq->body.data ? rq->body.data : "", rq->body.len, JSON_ALLOW_NUL, &jerr);
    if (!j) {
        dsv4_req_err e;
        dsv4_req_fail(&e, 400, "the request body is not valid JSON: %s (line %d, column %d)",
                      rq->body.len ? jerr.text : "empty body", jerr.line, jerr.column);
        *ret = dsv4_http_error(rq, &e);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *ret = fail(rq, 400, "the request body must be a JSON object");
        return NULL;
    }
    return j;
}

static int route(dsv4_http_req *rq) {
    const char *path = api_path(rq->path);
    bool get = !strcmp(rq->method, "GET"), post = !strcmp(rq->method, "POST");
    if (get && (!strcmp(path, "/health") || !strcmp(path, "/"))) return health(rq);
    if (!authorized(rq))
        return fail(rq, 401, "invalid or missing API key (send \"Authorization: Bearer KEY\" or \"x-api-key: KEY\")");
    if (rq->too_big)
        return fail(rq, 413, "the request body is larger than this server's limit of %zu bytes", rq->srv->o.max_body);
    if (!strcmp(path, "/models") || !strncmp(path, "/models/", 8)) {
        if (!get) return fail(rq, 405, "%s: use GET", path);
        return dsv4_openai_models(rq, path[7] ? path + 8 : NULL);
    }
    int (*handler)(dsv4_http_req *, const json_t *) = NULL;
    if (!strcmp(path, "/chat/completions"))
        handler = dsv4_openai_chat;
    else if (!strcmp(path, "/completions"))
        handler = dsv4_openai_completions;
    else if (!strcmp(path, "/messages"))
        handler = dsv4_anthropic_messages;
    else if (!strcmp(path, "/messages/count_tokens"))
        handler = dsv4_anthropic_count_tokens;
    if (!handler) return fail(rq, 404, "no such endpoint: %s", rq->path);
    if (!post) return fail(rq, 405, "%s: use POST", path);
    int ret;
    json_t *body = parse_body(rq, &ret);
    if (!body) return ret;
    ret = handler(rq, body);
    json_decref(body);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    dsv4_server *srv = cls;
    dsv4_http_req *rq = *con_cls;
    (void)version;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        *con_cls = rq;
        rq->srv = srv;
        rq->conn = c;
        snprintf(rq->method, sizeof rq->method, "%s", method);
        rq->path = strdup(url ? url : "/");
        if (!rq->path) return MHD_NO;
        rq->dialect = strstr(rq->path, "/messages") ? DSV4_ANTHROPIC : DSV4_OPENAI;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        rq->too_big = cl && strtoull(cl, NULL, 10) > srv->o.max_body; /* its bytes will be discarded */
        return MHD_YES;
    }
    if (*upload_size) {
        if (!rq->too_big && rq->body.len + *upload_size > srv->o.max_body) {
            rq->too_big = true;
            dsv4_strbuf_free(&rq->body);
        }
        if (!rq->too_big) dsv4_strbuf_append(&rq->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->answered) return MHD_YES;
    if (dsv4_strbuf_status(&rq->body)) {
        dsv4_req_err e;
        dsv4_req_fail(&e, 500, "out of memory reading the request");
        return dsv4_http_error(rq, &e) == MHD_YES ? MHD_YES : MHD_NO;
    }
    return route(rq) == MHD_YES ? MHD_YES : MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    (void)cls;
    (void)c;
    (void)why;
    dsv4_http_req *rq = *con_cls;
    if (!rq) return;
    dsv4_strbuf_free(&rq->body);
    free(rq->path);
    free(rq);
    *con_cls = NULL;
}

/* ---- the daemon ----------------------------------------------------------------------------- */

dsv4_status dsv4_server_start(dsv4_server *srv) {
    char port[16];
    snprintf(port, sizeof port, "%d", srv->o.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    int gai = getaddrinfo(srv->o.host, port, &hints, &ai);
    if (gai) return dsv4_error(DSV4_EINVAL, "--host %s: %s", srv->o.host, gai_strerror(gai));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    srv->started = dsv4_now();
    srv->started_unix = (long long)time(NULL);
    atomic_store(&srv->stopping, false);
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)srv->o.port, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_CONNECTION_LIMIT, (unsigned)srv->o.max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)3600, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->daemon)
        return dsv4_error(DSV4_EIO, "cannot listen on %s port %d (in use, or not an address of this machine)",
                          srv->o.host, srv->o.port);
    return DSV4_OK;
}

int dsv4_server_port(const dsv4_server *srv) {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : srv->o.port;
}

void dsv4_server_stop(dsv4_server *srv) {
    if (!srv->daemon) return;
    atomic_store(&srv->stopping, true);
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
}
