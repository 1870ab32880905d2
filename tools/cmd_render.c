/* cmd_render.c: `dsv4 render` prints the prompt that a conversation encodes to.
 *
 * It reads the test-case files of the encoding reference data (shared/encoding):
 *   {"encode_args": {...}, "messages": [...], "context": [...]}   the extra/ cases;
 *   {"tools": [...], "messages": [...]}                           official case 1: the tools
 *                                                                 go on the first message;
 *   [...]                                                         a plain message list.
 * encode_args holds encode_messages()' keyword arguments (thinking_mode, reasoning_effort,
 * drop_thinking, add_default_bos_token); options on the command line override them. The
 * prompt goes to stdout exactly, with no newline added, so `cmp` against a golden file works.
 * With --ids --tokenizer FILE the prompt is tokenized whole (special tokens matched as single
 * tokens, no BOS added beyond the one the encoding writes) and printed as a JSON list. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "text/chat.h"
#include "text/tokenizer.h"

static const char usage[] =
    "usage: dsv4 render --input CASE.json [options]\n"
    "  -i, --input FILE        conversation: a case file, {\"tools\", \"messages\"} or a message list\n"
    "      --mode chat|thinking      thinking_mode (required unless the file's encode_args sets it)\n"
    "      --effort none|high|max    reasoning_effort\n"
    "      --keep-thinking           drop_thinking=False\n"
    "      --no-bos                  add_default_bos_token=False\n"
    "      --ids --tokenizer FILE    print the prompt's token ids (a JSON list) instead\n";

static int print_ids(const char *tok_path, const char *prompt, size_t len) {
    dsv4_tokenizer *tok;
    if (dsv4_tokenizer_load(tok_path, &tok)) return cli_fail_lib("render", NULL);
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (dsv4_tokenize(tok, prompt, len, &ids, &n)) rc = cli_fail_lib("render", "tokenizing the prompt");
    else {
        putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        putchar(']');
        if (fflush(stdout) != 0) rc = cli_fail("render", "writing stdout failed");
    }
    free(ids);
    dsv4_tokenizer_free(tok);
    return rc;
}

static int fail_json(const char *what) { return cli_fail("render", "--input: %s", what); }

int cmd_render(int argc, char **argv) {
    const char *input = NULL, *mode = NULL, *effort = NULL, *tok_path = NULL;
    int keep_thinking = -1, no_bos = -1, want_ids = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "-h", "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_is(a, "-i", "--input")) {
            if (!(input = cli_value(argc, argv, &i))) return cli_fail("render", "--input needs a file");
        } else if (cli_is(a, NULL, "--mode")) {
            if (!(mode = cli_value(argc, argv, &i))) return cli_fail("render", "--mode needs chat or thinking");
        } else if (cli_is(a, NULL, "--effort")) {
            if (!(effort = cli_value(argc, argv, &i))) return cli_fail("render", "--effort needs none, high or max");
        } else if (cli_is(a, NULL, "--keep-thinking")) {
            keep_thinking = 1;
        } else if (cli_is(a, NULL, "--no-bos")) {
            no_bos = 1;
        } else if (cli_is(a, NULL, "--ids")) {
            want_ids = 1;
        } else if (cli_is(a, NULL, "--tokenizer")) {
            if (!(tok_path = cli_value(argc, argv, &i))) return cli_fail("render", "--tokenizer needs a tokenizer.json");
        } else {
            fputs(usage, stderr);
            return cli_fail("render", "unknown option \"%s\"", a);
        }
    }
    if (!input) {
        fputs(usage, stderr);
        return cli_fail("render", "--input is required");
    }
    if (want_ids && !tok_path) return cli_fail("render", "--ids needs --tokenizer FILE.json");

    json_error_t jerr;
    json_t *root = json_load_file(input, JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
    if (!root) return cli_fail("render", "%s:%d:%d: %s", input, jerr.line, jerr.column, jerr.text);
    int rc = 1;
    char *prompt = NULL;
    dsv4_chat_opts opts = {0};
    json_t *messages = root;
    if (json_is_object(root)) {
        messages = json_object_get(root, "messages");
        const json_t *tools = json_object_get(root, "tools");
        if (tools && json_array_size(messages) > 0 && json_is_object(json_array_get(messages, 0)))
            json_object_set(json_array_get(messages, 0), "tools", (json_t *)tools);
        opts.context = json_object_get(root, "context");
        const json_t *args = json_object_get(root, "encode_args");
        if (args && !json_is_object(args)) {
            rc = fail_json("encode_args: expected an object");
            goto done;
        }
        const json_t *v;
        if ((v = json_object_get(args, "thinking_mode")) && !mode && !(mode = json_string_value(v))) {
            rc = fail_json("encode_args.thinking_mode: expected a string");
            goto done;
        }
        if ((v = json_object_get(args, "reasoning_effort")) && !effort) {
            if (!json_is_null(v) && !json_is_string(v)) {
                rc = fail_json("encode_args.reasoning_effort: expected a string or null");
                goto done;
            }
            effort = json_is_null(v) ? "none" : json_string_value(v);
        }
        if ((v = json_object_get(args, "drop_thinking")) && keep_thinking < 0) {
            if (!json_is_boolean(v)) {
                rc = fail_json("encode_args.drop_thinking: expected true or false");
                goto done;
            }
            keep_thinking = json_is_false(v);
        }
        if ((v = json_object_get(args, "add_default_bos_token")) && no_bos < 0) {
            if (!json_is_boolean(v)) {
                rc = fail_json("encode_args.add_default_bos_token: expected true or false");
                goto done;
            }
            no_bos = json_is_false(v);
        }
    }
    if (!mode) {
        rc = cli_fail("render", "no thinking mode: the input sets no encode_args.thinking_mode; give --mode");
        goto done;
    }
    if (!dsv4_chat_parse_mode(mode, &opts.thinking_mode)) {
        rc = cli_fail("render", "thinking mode \"%s\": expected chat or thinking", mode);
        goto done;
    }
    if (effort && !dsv4_chat_parse_effort(strcmp(effort, "none") ? effort : NULL, &opts.reasoning_effort)) {
        rc = cli_fail("render", "reasoning effort \"%s\": expected none, high or max", effort);
        goto done;
    }
    opts.keep_thinking = keep_thinking > 0;
    opts.no_default_bos = no_bos > 0;

    size_t len;
    if (dsv4_chat_render(messages, &opts, &prompt, &len)) {
        rc = cli_fail_lib("render", input);
        goto done;
    }
    if (want_ids) {
        rc = print_ids(tok_path, prompt, len);
        goto done;
    }
    rc = fwrite(prompt, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : cli_fail("render", "writing stdout failed");
done:
    free(prompt);
    json_decref(root);
    return rc;
}
