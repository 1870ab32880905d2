/* dsv4.c: the command-line entry point; dispatches to tools/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"run", cmd_run, "answer one prompt, streamed (-p TEXT)"},
    {"chat", cmd_chat, "interactive multi-turn chat"},
    {"info", cmd_info, "config summary, parameter counts, weight bytes, KV bytes per token"},
    {"logits", cmd_logits, "write next-token logits of a token list as .npy"},
    {"render", cmd_render, "print the prompt a conversation encodes to (chat format)"},
    {"serve", cmd_serve, "OpenAI- and Anthropic-compatible HTTP server (docs/server.md)"},
    {"tokenize", cmd_tokenize, "text to token ids and back (JSON lines)"},
    {"tokenizer", cmd_tokenizer, "train a byte-level BPE tokenizer (tokenizer train)"},
    {"data", cmd_data, "build the training data set (data build), or its text (data text)"},
    {"eval", cmd_eval, "held-out accuracy per task, needle retrieval, tool-call round trip"},
    {"grad", cmd_grad, "loss of a token list and its gradient w.r.t. every weight (.safetensors)"},
    {"bench", cmd_bench, "decode and prefill speed against the measured bandwidth and FMA peak"},
    {"synth", cmd_synth, "write a random checkpoint shaped like DeepSeek-V4-Flash, -Pro or V4.1-Flash"},
    {"greedy", cmd_greedy, "greedy decoding from token ids, plain or with DSpark speculation"},
    {"engram", cmd_engram, "V4.1 Engram: compressed vocabulary of a tokenizer, table rows of ids"},
    {"quantize", cmd_quantize, "convert a checkpoint to the release formats (FP8 linears, FP4 experts)"},
    {"train", cmd_train, "train a model (CONFIG.json) on a data set: checkpoints, train.csv, loss.svg"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: dsv4 COMMAND [options]   (dsv4 COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dsv4: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
