/* cmd_chat.c: `dsv4 chat`, an interactive multi-turn conversation.
 *
 * The session persists across turns: each turn feeds only the new tokens (turn.c). Lines
 * starting with / are commands; a line ending in \ continues on the next one. Ctrl-C stops
 * a generation; at the prompt, Ctrl-C twice (or /quit, or end of input) leaves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "turn.h"

static const char help[] =
    "  /think      thinking mode (effort high)      /think-max  thinking mode, effort max\n"
    "  /nothink    answer without reasoning         /reset      forget the conversation\n"
    "  /system T   set the system prompt (resets)   /tool TEXT  reply to the last tool call\n"
    "  /stats      toggle timing after each answer  /save FILE  write the conversation (JSON)\n"
    "  /quit       leave (also Ctrl-D)\n";

/* Read one logical line (joining lines that end in a backslash). NULL at EOF / interrupt. */
static char *read_input(bool tty, bool *interrupted) {
    char *all = NULL, *line = NULL;
    size_t alen = 0, cap = 0;
    *interrupted = false;
    for (;;) {
        if (tty) {
            fputs(all ? "... " : "> ", stdout);
            fflush(stdout);
        }
        errno = 0;
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) {
            *interrupted = errno == EINTR;
            free(line);
            free(all);
            return NULL;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        bool more = n > 0 && line[n - 1] == '\\';
        if (more) line[--n] = 0;
        all = realloc(all, alen + (size_t)n + 2);
        memcpy(all + alen, line, (size_t)n);
        alen += (size_t)n;
        if (more) all[alen++] = '\n';
        all[alen] = 0;
        if (!more) break;
    }
    free(line);
    return all;
}

int cmd_chat(int argc, char **argv) {
    const char *cmd = "chat";
    turn_opts o;
    turn_opts_defaults(&o);
    for (int i = 1; i < argc; i++) {
        int used = turn_parse_opt(cmd, argc, argv, &i, &o);
        if (used < 0) return 2;
        if (used) continue;
        if (cli_is(argv[i], "-h", "--help")) {
            printf("usage: dsv4 chat [-m DIR] [options]\n%s\ncommands in the chat:\n%s", turn_opts_help, help);
            return 0;
        }
        return cli_fail(cmd, "unknown option %s (see dsv4 chat --help)", argv[i]), 2;
    }
    turn_ctx t;
    const char *dir = o.model_dir ? o.model_dir : cli_default_model();
    if (turn_open(&t, dir, &o.open, o.ctx)) return 1;
    if (o.no_color) t.color = false;
    turn_install_sigint();
    bool tty = isatty(0);
    if (tty) printf("dsv4 chat with %s (%s). /help for commands.\n", dir,
                    o.chat.thinking_mode == DSV4_MODE_THINKING ? "thinking" : "no thinking");
    char *system = o.system ? strdup(o.system) : NULL;
    json_t *msgs = json_array();
    if (system) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", system));
    int rc = 0, calls_seen = 0, quits = 0;
    for (;;) {
        bool intr;
        char *line = read_input(tty, &intr);
        if (!line) {
            if (intr && ++quits < 2) {
                clearerr(stdin);
                printf("\n(Ctrl-C again or /quit to leave)\n");
                turn_interrupted = 0;
                continue;
            }
            if (tty) putchar('\n');
            break;
        }
        quits = 0;
        if (!line[0]) {
            free(line);
            continue;
        }
        bool generate = true;
        if (line[0] == '/') {
            generate = false;
            if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) {
                free(line);
                break;
            } else if (!strcmp(line, "/help")) fputs(help, stdout);
            else if (!strcmp(line, "/think")) {
                o.chat.thinking_mode = DSV4_MODE_THINKING;
                o.chat.reasoning_effort = DSV4_EFFORT_HIGH;
                puts("(thinking on)");
            } else if (!strcmp(line, "/think-max")) {
                o.chat.thinking_mode = DSV4_MODE_THINKING;
                o.chat.reasoning_effort = DSV4_EFFORT_MAX;
                puts("(thinking on, effort max)");
            } else if (!strcmp(line, "/nothink")) {
                o.chat.thinking_mode = DSV4_MODE_CHAT;
                o.chat.reasoning_effort = DSV4_EFFORT_NONE;
                puts("(thinking off)");
            } else if (!strcmp(line, "/stats")) {
                o.stats = !o.stats;
                printf("(stats %s)\n", o.stats ? "on" : "off");
            } else if (!strcmp(line, "/reset") || !strncmp(line, "/system ", 8)) {
                if (line[1] == 's') {
                    free(system);
                    system = strdup(line + 8);
                }
                json_decref(msgs);
                msgs = json_array();
                if (system) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", system));
                turn_reset(&t);
                puts("(conversation reset)");
            } else if (!strncmp(line, "/save ", 6)) {
                if (json_dump_file(msgs, line + 6, JSON_INDENT(2) | JSON_ENSURE_ASCII) != 0)
                    printf("(cannot write %s)\n", line + 6);
                else printf("(saved %zu messages to %s)\n", json_array_size(msgs), line + 6);
            } else if (!strncmp(line, "/tool ", 6)) {
                if (!calls_seen) puts("(no tool call to reply to)");
                else {
                    char id[32];
                    snprintf(id, sizeof id, "call_%d", calls_seen - 1);
                    json_array_append_new(msgs, json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id", id, "content", line + 6));
                    generate = true;
                }
            } else printf("(unknown command %s; /help lists them)\n", line);
            if (!generate) {
                free(line);
                continue;
            }
        } else {
            json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", line));
        }
        free(line);
        turn_result r;
        if (turn_generate(&t, msgs, &o.chat, &o.gen, &r)) {
            /* keep the conversation usable: forget the failed user message */
            json_array_remove(msgs, json_array_size(msgs) - 1);
            continue;
        }
        /* tool calls get ids so a /tool reply can refer to them */
        json_t *calls = json_object_get(r.message, "tool_calls");
        for (size_t k = 0; k < json_array_size(calls); k++) {
            char id[32];
            snprintf(id, sizeof id, "call_%d", calls_seen++);
            json_object_set_new(json_array_get(calls, k), "id", json_string(id));
        }
        json_array_append_new(msgs, r.message);
        if (r.finish == DSV4_FINISH_CANCELLED) puts("(stopped)");
        if (o.stats)
            fprintf(stderr, "[%d prompt tokens (%d reused), %.1f tok/s prefill; %d generated, %.1f tok/s]\n", r.prompt_tokens,
                    r.cached_tokens, (r.prompt_tokens - r.cached_tokens) / (r.prefill_s > 0 ? r.prefill_s : 1e-9), r.gen_tokens,
                    r.gen_tokens / (r.decode_s > 0 ? r.decode_s : 1e-9));
    }
    free(system);
    json_decref(msgs);
    turn_close(&t);
    return rc;
}
