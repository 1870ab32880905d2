/* cmd_run.c: `dsv4 run`, one question, one streamed answer.
 *
 * The question is -p TEXT (or - for stdin), or a whole conversation in --messages FILE (a JSON
 * list of OpenAI-style messages, as `dsv4 chat`'s /save writes it), optionally followed by -p
 * as one more user message; the answer is the next assistant turn. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "turn.h"

int cmd_run(int argc, char **argv) {
    const char *cmd = "run", *prompt = NULL, *messages_file = NULL;
    turn_opts o;
    turn_opts_defaults(&o);
    for (int i = 1; i < argc; i++) {
        int used = turn_parse_opt(cmd, argc, argv, &i, &o);
        if (used < 0) return 2;
        if (used) continue;
        if (cli_is(argv[i], "-p", "--prompt")) {
            if (!(prompt = cli_value(argc, argv, &i))) return cli_fail(cmd, "-p needs a prompt (or - for stdin)"), 2;
        } else if (cli_is(argv[i], NULL, "--messages")) {
            if (!(messages_file = cli_value(argc, argv, &i))) return cli_fail(cmd, "--messages needs a JSON file"), 2;
        } else if (cli_is(argv[i], "-h", "--help")) {
            printf("usage: dsv4 run [-m DIR] (-p PROMPT|- | --messages FILE.json [-p PROMPT]) [options]\n%s", turn_opts_help);
            return 0;
        } else return cli_fail(cmd, "unknown option %s (see dsv4 run --help)", argv[i]), 2;
    }
    if (!prompt && !messages_file) return cli_fail(cmd, "-p PROMPT (- reads stdin) or --messages FILE is required"), 2;
    char *stdin_text = NULL;
    if (prompt && !strcmp(prompt, "-")) {
        stdin_text = cli_read_file("/dev/stdin", NULL);
        if (!stdin_text) return cli_fail(cmd, "cannot read stdin"), 1;
        prompt = stdin_text;
    }
    turn_ctx t;
    if (turn_open(&t, o.model_dir ? o.model_dir : cli_default_model(), &o.open, o.ctx)) {
        free(stdin_text);
        return 1;
    }
    if (o.no_color) t.color = false;
    turn_install_sigint();
    json_t *msgs = NULL;
    if (messages_file) {
        json_error_t jerr;
        msgs = json_load_file(messages_file, 0, &jerr);
        if (!json_is_array(msgs)) {
            json_decref(msgs);
            turn_close(&t);
            free(stdin_text);
            return cli_fail(cmd, "%s: expected a JSON list of messages (%s, line %d)", messages_file,
                            msgs ? "not a list" : jerr.text, jerr.line), 2;
        }
    } else {
        msgs = json_array();
    }
    if (o.system) json_array_insert_new(msgs, 0, json_pack("{s:s, s:s}", "role", "system", "content", o.system));
    if (prompt) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", prompt));
    turn_result r;
    int rc = turn_generate(&t, msgs, &o.chat, &o.gen, &r);
    if (!rc) {
        fprintf(stderr, "[%d prompt tokens in %.2f s (%.1f tok/s), %d generated in %.2f s (%.1f tok/s), finish: %s]\n",
                r.prompt_tokens, r.prefill_s, r.prompt_tokens / (r.prefill_s > 0 ? r.prefill_s : 1e-9), r.gen_tokens,
                r.decode_s, r.gen_tokens / (r.decode_s > 0 ? r.decode_s : 1e-9), dsv4_finish_name(r.finish));
        json_decref(r.message);
    }
    json_decref(msgs);
    turn_close(&t);
    free(stdin_text);
    return rc;
}
