/* cmd_synth.c: `dsv4 synth`, a random checkpoint with the real shapes and formats.
 *
 * Writes a model directory shaped like DeepSeek-V4-Flash or -Pro (src/model/synth.h), with
 * fewer layers or experts, or smaller widths, when asked. Used to benchmark the engine on
 * full-width layers and to test loading at realistic sizes without the real weights.
 * DeepSeek-V4.1-Flash (--like v41-flash) has its own option set and writer; such calls go
 * whole to synth_v41_main (tools/synth_v41_cli.c, src/model/synth_v41.h). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "model/synth.h"

static const char *usage =
    "usage: dsv4 synth --like flash|pro --out DIR [--layers L] [--experts E] [--seed S]\n"
    "                  [--dim D] [--vocab V] [--inter I] [--heads H] [--head-dim D] [--q-lora R]\n"
    "                  [--o-lora R] [--o-groups G] [--index-heads H] [--index-topk K] [--window W]\n"
    "                  [--topk K] [--no-mtp] [--shard-gib G]\n"
    "Omitted sizes are those of the real model; --layers keeps its layer-kind schedule.\n"
    "DeepSeek-V4.1-Flash: dsv4 synth --like v41-flash --help lists its options.\n";

int cmd_synth(int argc, char **argv) {
    const char *cmd = "synth", *out = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--like") && !strcmp(argv[i + 1], "v41-flash")) return synth_v41_main(argc, argv);
    dsv4_synth_opts o = {.like = "flash", .progress = cli_progress};
    static const cli_int_opt ints[] = {
        {"--layers", offsetof(dsv4_synth_opts, n_layers), 1, 250},
        {"--experts", offsetof(dsv4_synth_opts, n_experts), 1, 4096},
        {"--dim", offsetof(dsv4_synth_opts, dim), 32, 1 << 16},
        {"--vocab", offsetof(dsv4_synth_opts, vocab), 2, 1 << 22},
        {"--inter", offsetof(dsv4_synth_opts, moe_inter), 32, 1 << 16},
        {"--heads", offsetof(dsv4_synth_opts, n_heads), 1, 1024},
        {"--head-dim", offsetof(dsv4_synth_opts, head_dim), 128, 4096},
        {"--q-lora", offsetof(dsv4_synth_opts, q_lora_rank), 1, 1 << 16},
        {"--o-lora", offsetof(dsv4_synth_opts, o_lora_rank), 1, 1 << 16},
        {"--o-groups", offsetof(dsv4_synth_opts, o_groups), 1, 1024},
        {"--index-heads", offsetof(dsv4_synth_opts, index_n_heads), 1, 1024},
        {"--index-topk", offsetof(dsv4_synth_opts, index_topk), 1, 1 << 20},
        {"--window", offsetof(dsv4_synth_opts, window), 1, 1 << 16},
        {"--topk", offsetof(dsv4_synth_opts, n_activated), 1, 64},
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
            o.like = cli_value(argc, argv, &i);
            if (!o.like || (strcmp(o.like, "flash") && strcmp(o.like, "pro"))) return cli_fail(cmd, "--like needs flash, pro or v41-flash"), 2;
        } else if (cli_is(a, "-o", "--out")) {
            if (!(out = cli_value(argc, argv, &i))) return cli_fail(cmd, "--out needs a directory"), 2;
        } else if (cli_is(a, NULL, "--seed")) {
            long long v;
            if (!cli_int(cli_value(argc, argv, &i), 0, (1LL << 62), &v)) return cli_fail(cmd, "--seed needs a non-negative integer"), 2;
            o.seed = (uint64_t)v;
        } else if (cli_is(a, NULL, "--no-mtp")) {
            o.no_mtp = true;
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
    if (dsv4_synth_write(&o, out, &bytes)) return cli_fail_lib(cmd, NULL);
    printf("%s: %.3f GB of tensors like DeepSeek-V4-%s\n", out, (double)bytes / 1e9, o.like);
    return 0;
}
