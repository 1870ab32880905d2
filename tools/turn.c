/* turn.c: rendering, incremental prefill with rollback, and streaming one answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "cli.h"
#include "infer/snapshot.h"
#include "turn.h"

volatile sig_atomic_t turn_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    turn_interrupted = 1;
}

void turn_install_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

int turn_open(turn_ctx *t, const char *model_dir, const dsv4_open_opts *opts, int ctx) {
    memset(t, 0, sizeof *t);
    t->color = isatty(1);
    dsv4_open_opts o = *opts;
    o.progress = cli_progress;
    if (dsv4_model_open(model_dir, &o, &t->model)) return cli_fail_lib("run", NULL);
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
    if (dsv4_tokenizer_load(path, &t->tok)) {
        dsv4_model_close(t->model);
        return cli_fail_lib("run", NULL);
    }
    if (dsv4_tokenizer_vocab_size(t->tok) > dsv4_model_vocab(t->model)) {
        cli_fail("run", "%s: the tokenizer has %d tokens but the model only %d", path, dsv4_tokenizer_vocab_size(t->tok),
                 dsv4_model_vocab(t->model));
        turn_close(t);
        return 1;
    }
    if (dsv4_session_new(t->model, ctx, &t->session)) {
        cli_fail_lib("run", NULL);
        turn_close(t);
        return 1;
    }
    return 0;
}

void turn_close(turn_ctx *t) {
    dsv4_session_free(t->session);
    dsv4_tokenizer_free(t->tok);
    dsv4_model_close(t->model);
    free(t->history);
    free(t->snap);
    memset(t, 0, sizeof *t);
}

void turn_reset(turn_ctx *t) {
    dsv4_session_reset(t->session);
    t->n_history = 0;
    free(t->snap);
    t->snap = NULL;
    t->snap_len = 0;
    t->snap_pos = -1;
}

static int history_push(turn_ctx *t, const int32_t *ids, int n) {
    if (t->n_history + n > t->cap_history) {
        int cap = DSV4_MAX(t->cap_history * 2, t->n_history + n + 256);
        int32_t *h = realloc(t->history, (size_t)cap * sizeof(int32_t));
        if (!h) return cli_fail("run", "out of memory");
        t->history = h;
        t->cap_history = cap;
    }
    memcpy(t->history + t->n_history, ids, (size_t)n * sizeof(int32_t));
    t->n_history += n;
    return 0;
}

/* Feed ids (appending to the history); logits of the last one into `logits` if given. */
static int feed(turn_ctx *t, const int32_t *ids, int n, float *logits, bool progress) {
    const int chunk = 256;
    for (int i = 0; i < n; i += chunk) {
        if (turn_interrupted) return 1;
        int k = DSV4_MIN(chunk, n - i);
        bool last = i + k == n;
        if (dsv4_forward(t->session, ids + i, k, last && logits ? DSV4_LOGITS_LAST : DSV4_LOGITS_NONE, logits))
            return cli_fail_lib("run", "forward");
        if (history_push(t, ids + i, k)) return 1;
        if (progress && n > chunk) cli_progress(NULL, "prefill", (double)(i + k) / n);
    }
    return 0;
}

static int take_snapshot(turn_ctx *t) {
    size_t n = dsv4_session_snapshot_size(t->session);
    void *buf = malloc(n);
    if (!buf) return cli_fail("run", "out of memory for a %zu-byte snapshot", n);
    if (dsv4_session_save(t->session, buf, n, NULL)) {
        free(buf);
        return cli_fail_lib("run", "snapshot");
    }
    free(t->snap);
    t->snap = buf;
    t->snap_len = n;
    t->snap_pos = t->n_history;
    return 0;
}

static void put_text(turn_ctx *t, const char *s, size_t n, const char *style) {
    if (t->color && style) fputs(style, stdout);
    fwrite(s, 1, n, stdout);
    if (t->color && style) fputs("\033[0m", stdout);
    fflush(stdout);
}

int turn_generate(turn_ctx *t, const json_t *messages, const dsv4_chat_opts *copts, const dsv4_gen_params *gp,
                  turn_result *res) {
    memset(res, 0, sizeof *res);
    turn_interrupted = 0;
    char *prompt = NULL;
    size_t plen;
    if (dsv4_chat_render(messages, copts, &prompt, &plen)) return cli_fail_lib("run", "rendering the conversation");
    int32_t *ids = NULL;
    size_t n;
    dsv4_status st = dsv4_tokenize(t->tok, prompt, plen, &ids, &n);
    free(prompt);
    if (st) return cli_fail_lib("run", "tokenizing the prompt");
    int rc = 0, V = dsv4_model_vocab(t->model);
    float *logits = malloc((size_t)V * sizeof(float));
    dsv4_gen *g = NULL;
    json_t *calls = json_array();
    char *reasoning = NULL, *content = NULL;
    size_t rlen = 0, clen = 0;
    if (!logits) {
        rc = cli_fail("run", "out of memory");
        goto out;
    }
    if ((int)n + 1 > dsv4_session_max_ctx(t->session)) {
        rc = cli_fail("run", "the conversation is %zu tokens, the context holds %d (use --ctx)", n,
                      dsv4_session_max_ctx(t->session));
        goto out;
    }

    /* how much of the prompt the session already holds */
    int common = 0;
    while (common < t->n_history && common < (int)n && t->history[common] == ids[common]) common++;
    if (common == (int)n) common--; /* at least one token must be fed for its logits */
    if (common < t->n_history) {
        if (t->snap && t->snap_pos <= common) {
            if (dsv4_session_restore(t->session, t->snap, t->snap_len)) {
                rc = cli_fail_lib("run", "restoring the conversation state");
                goto out;
            }
            t->n_history = t->snap_pos;
        } else {
            dsv4_session_reset(t->session);
            t->n_history = 0;
        }
    }
    res->prompt_tokens = (int)n;
    res->cached_tokens = t->n_history;

    /* prefill up to just before the assistant header, snapshot, then the header */
    double t0 = dsv4_now();
    int cut = DSV4_MAX(t->n_history, (int)n - 2);
    if ((rc = feed(t, ids + t->n_history, cut - t->n_history, NULL, true))) goto out;
    if (cut > 0 && (rc = take_snapshot(t))) goto out;
    if ((rc = feed(t, ids + cut, (int)n - cut, logits, false))) goto out;
    res->prefill_s = dsv4_now() - t0;

    dsv4_gen_params p = *gp;
    p.in_reasoning = n > 0 && ids[n - 1] == dsv4_token_id(t->tok, DSV4_TOK_THINK);
    int room = dsv4_session_max_ctx(t->session) - dsv4_session_pos(t->session);
    if (p.max_tokens > room) p.max_tokens = room;
    if (p.max_tokens <= 0) {
        rc = cli_fail("run", "no room left in the context for an answer (use --ctx)");
        goto out;
    }
    if (dsv4_gen_new(t->tok, &p, &g)) {
        rc = cli_fail_lib("run", NULL);
        goto out;
    }
    t0 = dsv4_now();
    bool in_reasoning = p.in_reasoning;
    if (in_reasoning && t->color) put_text(t, "Thinking: ", 10, "\033[2;3m");
    for (;;) {
        int32_t next;
        if (dsv4_gen_step(g, logits, V, &next)) {
            rc = cli_fail_lib("run", "sampling");
            break;
        }
        dsv4_dsml_event ev;
        while (dsv4_gen_next_event(g, &ev)) {
            switch (ev.kind) {
            case DSV4_DSML_REASONING:
                put_text(t, ev.text, ev.len, "\033[2;3m");
                reasoning = realloc(reasoning, rlen + ev.len + 1);
                memcpy(reasoning + rlen, ev.text, ev.len);
                reasoning[rlen += ev.len] = 0;
                break;
            case DSV4_DSML_CONTENT:
                if (in_reasoning) {
                    put_text(t, "\n\n", 2, NULL);
                    in_reasoning = false;
                }
                put_text(t, ev.text, ev.len, NULL);
                content = realloc(content, clen + ev.len + 1);
                memcpy(content + clen, ev.text, ev.len);
                content[clen += ev.len] = 0;
                break;
            case DSV4_DSML_CALL_END: {
                char line[512];
                int k = snprintf(line, sizeof line, "\n[tool call] %s(%.*s)%s\n", ev.name, (int)DSV4_MIN(ev.len, 400),
                                 ev.text, ev.complete ? "" : " (incomplete)");
                put_text(t, line, (size_t)DSV4_MIN(k, (int)sizeof line - 1), "\033[36m");
                json_t *fn = json_pack("{s:s, s:s#}", "name", ev.name, "arguments", ev.text, ev.len);
                json_array_append_new(calls, json_pack("{s:s, s:o}", "type", "function", "function", fn));
                break;
            }
            case DSV4_DSML_ERROR:
                if (getenv("DSV4_SHOW_PARSE_ERRORS")) fprintf(stderr, "\n[parse: %s]\n", dsv4_dsml_error_name(ev.error));
                break;
            default: break;
            }
        }
        if (next < 0) break;
        if (turn_interrupted) {
            dsv4_gen_stop(g, DSV4_FINISH_CANCELLED);
            continue; /* drain the flushed events on the next pass */
        }
        if (dsv4_forward(t->session, &next, 1, DSV4_LOGITS_LAST, logits)) {
            rc = cli_fail_lib("run", "forward");
            break;
        }
        history_push(t, &next, 1);
        if (dsv4_session_pos(t->session) >= dsv4_session_max_ctx(t->session)) dsv4_gen_stop(g, DSV4_FINISH_LENGTH);
    }
    res->decode_s = dsv4_now() - t0;
    res->gen_tokens = dsv4_gen_n_tokens(g);
    res->finish = dsv4_gen_finish_reason(g);
    put_text(t, "\n", 1, NULL);
    res->message = json_pack("{s:s, s:s?, s:s?}", "role", "assistant", "content", content ? content : "",
                             "reasoning_content", reasoning);
    if (json_array_size(calls)) json_object_set(res->message, "tool_calls", calls);
out:
    json_decref(calls);
    free(reasoning);
    free(content);
    dsv4_gen_free(g);
    free(logits);
    free(ids);
    return rc;
}

const char turn_opts_help[] =
    "  -m, --model DIR         model directory (default: the embedded model)\n"
    "      --think             thinking mode, effort high\n"
    "      --think-max         thinking mode, effort max\n"
    "      --nothink           chat mode: answer without reasoning (default)\n"
    "  -s, --system TEXT       system prompt\n"
    "  -n, --max-tokens N      answer length limit (default 1024)\n"
    "      --temp T            temperature (default 0: greedy; the API default is 1)\n"
    "      --top-p P, --top-k K, --min-p P, --seed S\n"
    "      --stop TEXT         stop string (repeatable)\n"
    "      --ctx N             context length (default 8192)\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "      --numerics exact|default\n"
    "      --kv-bf16-rope      keep the KV rows' rope dims in bf16 (the production layout)\n"
    "      --no-color          plain output\n";

void turn_opts_defaults(turn_opts *o) {
    memset(o, 0, sizeof *o);
    o->gen = dsv4_gen_defaults();
    o->gen.max_tokens = 1024;
    o->gen.sampling.temperature = 0.0f;
    o->gen.seed = 0;
    o->ctx = 8192;
    o->chat.thinking_mode = DSV4_MODE_CHAT;
}

int turn_parse_opt(const char *cmd, int argc, char **argv, int *i, turn_opts *o) {
    const char *a = argv[*i];
    long long v;
    double f;
    int used = cli_model_flag(cmd, argc, argv, i, &o->open);
    if (used) return used;
    if (cli_is(a, "-m", "--model")) {
        if (!(o->model_dir = cli_value(argc, argv, i))) return cli_fail(cmd, "-m needs a directory"), -1;
    } else if (cli_is(a, NULL, "--think")) {
        o->chat.thinking_mode = DSV4_MODE_THINKING;
        o->chat.reasoning_effort = DSV4_EFFORT_HIGH;
    } else if (cli_is(a, NULL, "--think-max")) {
        o->chat.thinking_mode = DSV4_MODE_THINKING;
        o->chat.reasoning_effort = DSV4_EFFORT_MAX;
    } else if (cli_is(a, NULL, "--nothink")) {
        o->chat.thinking_mode = DSV4_MODE_CHAT;
        o->chat.reasoning_effort = DSV4_EFFORT_NONE;
    } else if (cli_is(a, "-s", "--system")) {
        if (!(o->system = cli_value(argc, argv, i))) return cli_fail(cmd, "--system needs text"), -1;
    } else if (cli_is(a, "-n", "--max-tokens")) {
        if (!cli_int(cli_value(argc, argv, i), 1, 1 << 24, &v)) return cli_fail(cmd, "-n needs a positive integer"), -1;
        o->gen.max_tokens = (int)v;
    } else if (cli_is(a, NULL, "--temp")) {
        if (!cli_float(cli_value(argc, argv, i), &f) || f < 0) return cli_fail(cmd, "--temp needs a number >= 0"), -1;
        o->gen.sampling.temperature = (float)f;
    } else if (cli_is(a, NULL, "--top-p")) {
        if (!cli_float(cli_value(argc, argv, i), &f)) return cli_fail(cmd, "--top-p needs a number"), -1;
        o->gen.sampling.top_p = (float)f;
    } else if (cli_is(a, NULL, "--min-p")) {
        if (!cli_float(cli_value(argc, argv, i), &f)) return cli_fail(cmd, "--min-p needs a number"), -1;
        o->gen.sampling.min_p = (float)f;
    } else if (cli_is(a, NULL, "--top-k")) {
        if (!cli_int(cli_value(argc, argv, i), 0, 1 << 30, &v)) return cli_fail(cmd, "--top-k needs an integer"), -1;
        o->gen.sampling.top_k = (int)v;
    } else if (cli_is(a, NULL, "--seed")) {
        if (!cli_int(cli_value(argc, argv, i), 0, INT64_MAX, &v)) return cli_fail(cmd, "--seed needs an integer"), -1;
        o->gen.seed = (uint64_t)v;
    } else if (cli_is(a, NULL, "--stop")) {
        const char *s = cli_value(argc, argv, i);
        if (!s || !*s || o->gen.n_stop >= DSV4_MAX_STOPS) return cli_fail(cmd, "--stop needs text (at most %d)", DSV4_MAX_STOPS), -1;
        o->gen.stop[o->gen.n_stop++] = s;
    } else if (cli_is(a, NULL, "--ctx")) {
        if (!cli_int(cli_value(argc, argv, i), 16, 1 << 24, &v)) return cli_fail(cmd, "--ctx needs a token count"), -1;
        o->ctx = (int)v;
    } else if (cli_is(a, NULL, "--no-color")) {
        o->no_color = true;
    } else if (cli_is(a, NULL, "--stats")) {
        o->stats = true;
    } else {
        return 0;
    }
    return 1;
}
