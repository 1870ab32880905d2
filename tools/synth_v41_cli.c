/* synth_v41_cli.c: the options of `dsv4 synth --like v41-flash` (src/model/synth_v41.h).
 *
 * Kept apart from cmd_synth.c so the V4 synth (--like flash|pro) and this one merge as two
 * branches of one command: cmd_synth hands every --like v41-flash call to synth_v41_main. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "model/synth_v41.h"

static const char *usage =
    "usage: dsv4 synth --like v41-flash --out DIR [--layers L] [--experts E] [--seed S]\n"
    "                  [--dim D] [--vocab V] [--inter I] [--heads H] [--head-dim D] [--q-lora R]\n"
    "                  [--o-lora R] [--o-groups G] [--index-heads H] [--index-topk K] [--window W]\n"
    "                  [--topk K] [--engram-vocab N] [--engram-head-dim D] [--tokenizer FILE]\n"
    "                  [--no-dspark] [--shard-gib G]\n"
    "Omitted sizes are those of DeepSeek-V4.1-Flash; --layers keeps its CSA2 schedule shape.\n"
    "--engram-vocab sets where the prime walk starts: each Engram table has about 24x that\n"
    "many rows (16000000, the default, gives the real 2 x 94 GiB).\n";

int synth_v41_main(int argc, char **argv) {
    const char *cmd = "synth", *out = NULL;
    dsv4_synth_v41_opts o = {.progress = cli_progress};
    static const cli_int_opt ints[] = {
        {"--layers", offsetof(dsv4_synth_v41_opts, n_layers), 8, 250},
        {"--experts", offsetof(dsv4_synth_v41_opts, n_experts), 1, 4096},
        {"--dim", offsetof(dsv4_synth_v41_opts, dim), 32, 1 << 16},
        {"--vocab", offsetof(dsv4_synth_v41_opts, vocab), 16, 1 << 22},
        {"--inter", offsetof(dsv4_synth_v41_opts, moe_inter), 32, 1 << 16},
        {"--heads", offsetof(dsv4_synth_v41_opts, n_heads), 1, 1024},
        {"--head-dim", offsetof(dsv4_synth_v41_opts, head_dim), 96, 4096},
        {"--q-lora", offsetof(dsv4_synth_v41_opts, q_lora_rank), 32, 1 << 16},
        {"--o-lora", offsetof(dsv4_synth_v41_opts, o_lora_rank), 1, 1 << 16},
        {"--o-groups", offsetof(dsv4_synth_v41_opts, o_groups), 1, 1024},
        {"--index-heads", offsetof(dsv4_synth_v41_opts, index_n_heads), 1, 1024},
        {"--index-topk", offsetof(dsv4_synth_v41_opts, index_topk), 1, 1 << 20},
        {"--window", offsetof(dsv4_synth_v41_opts, window), 8, 1 << 16},
        {"--topk", offsetof(dsv4_synth_v41_opts, n_activated), 1, 64},
        {"--engram-vocab", offsetof(dsv4_synth_v41_opts, engram_vocab_size), 64, 1 << 30},
        {"--engram-head-dim", offsetof(dsv4_synth_v41_opts, engram_head_dim), 32, 4096},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int used = cli_int_flag(cmd, ints, sizeof ints / sizeof ints[0], argc, argv, &i, &o);
        if (used < 0) return 2;
        if (used) continue;
        if (cli_is(a, "-h", "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_is(a, NULL, "--like")) {
            const char *like = cli_value(argc, argv, &i);
            if (!like || strcmp(like, "v41-flash")) return cli_fail(cmd, "--like needs v41-flash here"), 2;
        } else if (cli_is(a, "-o", "--out")) {
            if (!(out = cli_value(argc, argv, &i))) return cli_fail(cmd, "--out needs a directory"), 2;
        } else if (cli_is(a, NULL, "--tokenizer")) {
            if (!(o.tokenizer = cli_value(argc, argv, &i))) return cli_fail(cmd, "--tokenizer needs a file"), 2;
        } else if (cli_is(a, NULL, "--seed")) {
            long long v;
            if (!cli_int(cli_value(argc, argv, &i), 0, (1LL << 62), &v)) return cli_fail(cmd, "--seed needs a non-negative integer"), 2;
            o.seed = (uint64_t)v;
        } else if (cli_is(a, NULL, "--no-dspark")) {
            o.no_dspark = true;
        } else if (cli_is(a, NULL, "--shard-gib")) {
            double v;
            if (!cli_float(cli_value(argc, argv, &i), &v) || v <= 0) return cli_fail(cmd, "--shard-gib needs a positive number"), 2;
            o.shard_gib = v;
        } else {
            fputs(usage, stderr);
            return cli_fail(cmd, "unknown option %s", a), 2;
        }
    }
    if (!out) {
        fputs(usage, stderr);
        return 2;
    }
    uint64_t bytes = 0;
    if (dsv4_synth_v41_write(&o, out, &bytes)) return cli_fail_lib(cmd, NULL);
    printf("%s: %.3f GB of tensors like DeepSeek-V4.1-Flash\n", out, (double)bytes / 1e9);
    return 0;
}
