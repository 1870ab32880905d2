/* turn.h: one assistant turn in a terminal, shared by `dsv4 run` and `dsv4 chat`.
 *
 * A conversation keeps one session for its whole life. Before each turn the conversation is
 * rendered anew (the official encoding), tokenized, and compared with what the session has
 * already consumed; only the new tokens are fed. Where the new prompt departs from the
 * history (thinking mode drops the last turn's reasoning, or the answer re-tokenizes
 * differently) the session rolls back to a snapshot taken just before the previous turn's
 * assistant header, so the history is never re-read from the start. */
#ifndef DSV4_TOOLS_TURN_H
#define DSV4_TOOLS_TURN_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>

#include "dsv4.h"
#include "infer/generate.h"
#include "text/chat.h"
#include "text/tokenizer.h"

typedef struct turn_ctx {
    dsv4_model *model;
    dsv4_tokenizer *tok;
    dsv4_session *session;
    int32_t *history; /* tokens the session has consumed */
    int n_history, cap_history;
    void *snap;       /* state just before the last prompt's assistant header */
    size_t snap_len;
    int snap_pos;
    bool color;       /* ANSI colours on stdout */
    bool show_stats;
} turn_ctx;

typedef struct turn_result {
    json_t *message;  /* the assistant message (content, reasoning_content, tool_calls) */
    dsv4_finish finish;
    int prompt_tokens, cached_tokens, gen_tokens;
    double prefill_s, decode_s;
} turn_result;

extern volatile sig_atomic_t turn_interrupted;
void turn_install_sigint(void);

int turn_open(turn_ctx *t, const char *model_dir, const dsv4_open_opts *opts, int ctx);
void turn_close(turn_ctx *t);
void turn_reset(turn_ctx *t);

/* Render `messages`, bring the session up to the prompt, generate and stream the answer to
 * stdout (reasoning dimmed). Returns 0 or prints an error and returns 1. */
int turn_generate(turn_ctx *t, const json_t *messages, const dsv4_chat_opts *copts, const dsv4_gen_params *gp,
                  turn_result *res);

/* Options shared by run and chat. */
typedef struct turn_opts {
    const char *model_dir, *system;
    dsv4_open_opts open;
    dsv4_chat_opts chat;
    dsv4_gen_params gen;
    int ctx;
    bool no_color, stats;
} turn_opts;

void turn_opts_defaults(turn_opts *o);
/* Consumes one option at argv[*i]: 1 if it was one of ours, 0 if not, -1 on a bad value. */
int turn_parse_opt(const char *cmd, int argc, char **argv, int *i, turn_opts *o);
extern const char turn_opts_help[];
#endif
