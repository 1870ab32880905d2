/* cmd_bench.c: `dsv4 bench`, decode and prefill speed against the machine's limits.
 *
 * Prints the decode rate, the weight bytes per decoded token and the bandwidth measured in
 * the same run (and their ratio), the prefill rate and its GFLOP/s against the measured FMA
 * peak (src/infer/bench.h). With --json, one JSON object instead. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "infer/bench.h"
#include "kernels/linear.h"

static const char *usage =
    "usage: dsv4 bench [-m DIR] [--json] [--prefill N [--chunk C]] [--decode N] [--depth N] [--threads N]\n"
    "                  [--seed S] [--kernels portable|avx2|avx512] [--numerics exact|default]\n"
    "                  [--kv-bf16-rope] [--bw-mib M]\n"
    "  --prefill N  prompt tokens timed (default 512; 0: none)\n"
    "  --chunk C    feed the prompt C tokens per call (default: one call)\n"
    "  --decode N   decode steps timed (default 16)\n"
    "  --depth N    decode at position N with a synthetically filled session\n"
    "               (default: right after the prefill)\n"
    "  --bw-mib M   size of the bandwidth measurement's buffers (default 1536 MiB; keep it\n"
    "               far above the caches)\n";

static void print_json(const dsv4_bench_result *r, const char *dir) {
    json_t *j = json_object();
#define NUM(k, v) json_object_set_new(j, k, json_real(v))
#define INT(k, v) json_object_set_new(j, k, json_integer(v))
    json_object_set_new(j, "model", json_string(dir));
    json_object_set_new(j, "kernels", json_string(r->kernels));
    INT("threads", r->threads);
    INT("depth", r->depth);
    json_object_set_new(j, "depth_synthetic", json_boolean(r->depth_synthetic));
    NUM("decode_tok_s", r->decode_tok_s);
    INT("decode_tokens", r->decode_tokens);
    NUM("decode_bytes_per_token", r->decode_bytes_per_token);
    NUM("decode_expert_bytes_per_token", r->decode_expert_bytes_per_token);
    NUM("decode_head_gb_s", r->decode_head_gb_s);
    NUM("decode_expert_gb_s", r->decode_expert_gb_s);
    NUM("decode_other_share", r->decode_other_share);
    NUM("decode_attn_share", r->decode_attn_share);
    NUM("decode_attn_gb_s", r->decode_attn_gb_s);
    NUM("bandwidth_gb_s", r->bandwidth_gb_s);
    NUM("bw_copy_gb_s", r->bw_copy_gb_s);
    NUM("bw_triad_gb_s", r->bw_triad_gb_s);
    NUM("bw_read_gb_s", r->bw_read_gb_s);
    NUM("decode_bw_ratio", r->decode_bw_ratio);
    NUM("decode_bw_ratio_start", r->decode_bw_ratio_start);
    INT("prefill_tokens", r->prefill_tokens);
    NUM("prefill_tok_s", r->prefill_tok_s);
    NUM("prefill_gflops", r->prefill_gflops);
    NUM("expert_gflops", r->expert_gflops);
    NUM("expert_time_share", r->expert_share);
    NUM("fma_peak_gflops", r->fma_peak_gflops);
    NUM("prefill_peak_ratio", r->prefill_peak_ratio);
    NUM("expert_peak_ratio", r->expert_peak_ratio);
    NUM("kv_bytes", r->kv_bytes);
    NUM("kv_bytes_per_token", r->kv_bytes_per_token);
    NUM("max_rss_bytes", r->max_rss_bytes);
    NUM("touch_s", r->touch_s);
    /* per CPU-second: what the code achieves while it runs (robust to other jobs) */
    NUM("decode_gb_s_cpu", r->decode_gb_s_cpu);
    NUM("bw_read_gb_s_cpu", r->bw_read_gb_s_cpu);
    NUM("decode_bw_ratio_cpu", r->decode_bw_ratio_cpu);
    NUM("prefill_gflops_cpu", r->prefill_gflops_cpu);
    NUM("expert_gflops_cpu", r->expert_gflops_cpu);
    NUM("fma_peak_gflops_cpu", r->fma_peak_gflops_cpu);
    NUM("prefill_peak_ratio_cpu", r->prefill_peak_ratio_cpu);
    NUM("expert_peak_ratio_cpu", r->expert_peak_ratio_cpu);
#undef NUM
#undef INT
    char *s = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    if (s) puts(s);
    free(s);
    json_decref(j);
}

static void print_text(const dsv4_bench_result *r, const char *dir) {
    printf("model       %s\n", dir);
    printf("kernels     %s, %d threads\n", r->kernels, r->threads);
    printf("bandwidth   copy %.1f  triad %.1f  read %.1f GB/s before the run; read %.1f GB/s between decode steps\n",
           r->bw_copy_gb_s, r->bw_triad_gb_s, r->bw_read_gb_s, r->bandwidth_gb_s);
    printf("FMA peak    %.1f GFLOP/s\n", r->fma_peak_gflops);
    if (r->prefill_tokens)
        printf("prefill     %d tokens in %.2f s: %.1f tok/s, %.1f GFLOP/s = %.1f%% of peak;\n"
               "            experts %.1f GFLOP/s = %.1f%% of peak (%.0f%% of the time)\n",
               r->prefill_tokens, r->prefill_s, r->prefill_tok_s, r->prefill_gflops, 100 * r->prefill_peak_ratio,
               r->expert_gflops, 100 * r->expert_peak_ratio, 100 * r->expert_share);
    printf("decode      %d tokens at depth %d%s: %.2f tok/s, %.3f GB/token (experts %.3f)\n", r->decode_tokens, r->depth,
           r->depth_synthetic ? " (synthetic)" : "", r->decode_tok_s, r->decode_bytes_per_token / 1e9,
           r->decode_expert_bytes_per_token / 1e9);
    printf("            %.1f GB/s of weights: %.1f%% of the bandwidth measured between the steps (median per step),\n"
           "            %.1f%% of the best STREAM figure before the run\n",
           r->decode_bytes_per_token * r->decode_tok_s / 1e9, 100 * r->decode_bw_ratio, 100 * r->decode_bw_ratio_start);
    printf("            the head streams at %.1f GB/s, the experts at %.1f GB/s; %.1f%% of a step is neither,\n"
           "            of which attention %.1f%% (its weights at %.1f GB/s)\n",
           r->decode_head_gb_s, r->decode_expert_gb_s, 100 * r->decode_other_share, 100 * r->decode_attn_share,
           r->decode_attn_gb_s);
    printf("memory      session state %.1f MiB after the run (%.1f B per position); peak resident %.2f GiB\n",
           r->kv_bytes / 1048576.0, r->kv_bytes_per_token, r->max_rss_bytes / 1073741824.0);
    printf("per CPU-second (what the code does while it runs): decode %.1f GB/s vs reads %.1f GB/s = %.1f%%;\n"
           "            prefill %.1f, experts %.1f GFLOP/s vs FMA peak %.1f = %.1f%%, %.1f%%\n",
           r->decode_gb_s_cpu, r->bw_read_gb_s_cpu, 100 * r->decode_bw_ratio_cpu, r->prefill_gflops_cpu,
           r->expert_gflops_cpu, r->fma_peak_gflops_cpu, 100 * r->prefill_peak_ratio_cpu, 100 * r->expert_peak_ratio_cpu);
}

int cmd_bench(int argc, char **argv) {
    const char *cmd = "bench", *dir = NULL, *kernels = NULL;
    bool json = false;
    long long prefill = 512, chunk = 0, decode = 16, depth = 0, seed = 1, bw_mib = 1536;
    dsv4_open_opts opts = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int used = cli_model_flag(cmd, argc, argv, &i, &opts);
        if (used < 0) return 2;
        if (used) continue;
        if (cli_is(a, "-h", "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_is(a, "-m", "--model")) {
            if (!(dir = cli_value(argc, argv, &i))) return cli_fail(cmd, "-m needs a directory"), 2;
        } else if (cli_is(a, NULL, "--json")) {
            json = true;
        } else if (cli_is(a, NULL, "--prefill")) {
            if (!cli_int(cli_value(argc, argv, &i), 0, 1 << 20, &prefill)) return cli_fail(cmd, "--prefill needs a count"), 2;
        } else if (cli_is(a, NULL, "--chunk")) {
            if (!cli_int(cli_value(argc, argv, &i), 1, 1 << 20, &chunk)) return cli_fail(cmd, "--chunk needs a positive count"), 2;
        } else if (cli_is(a, NULL, "--decode")) {
            if (!cli_int(cli_value(argc, argv, &i), 1, 1 << 20, &decode)) return cli_fail(cmd, "--decode needs a positive count"), 2;
        } else if (cli_is(a, NULL, "--depth")) {
            if (!cli_int(cli_value(argc, argv, &i), 0, 1 << 24, &depth)) return cli_fail(cmd, "--depth needs a position"), 2;
        } else if (cli_is(a, NULL, "--seed")) {
            if (!cli_int(cli_value(argc, argv, &i), 0, 1LL << 62, &seed)) return cli_fail(cmd, "--seed needs an integer"), 2;
        } else if (cli_is(a, NULL, "--bw-mib")) {
            if (!cli_int(cli_value(argc, argv, &i), 3, 1 << 20, &bw_mib)) return cli_fail(cmd, "--bw-mib needs a size in MiB"), 2;
        } else if (cli_is(a, NULL, "--kernels")) {
            if (!(kernels = cli_value(argc, argv, &i))) return cli_fail(cmd, "--kernels needs a name"), 2;
        } else {
            fputs(usage, stderr);
            return cli_fail(cmd, "unknown option %s", a), 2;
        }
    }
    if (!dir) dir = cli_default_model();
    if (kernels) {
        const dsv4_kernel_set *sets[8];
        int n = dsv4_kernels_available(sets, 8), found = 0;
        for (int k = 0; k < n; k++)
            if (!strcmp(sets[k]->name, kernels)) {
                dsv4_kernels_use(sets[k]);
                found = 1;
            }
        if (!found) return cli_fail(cmd, "kernel set %s is not available on this CPU", kernels), 2;
    }
    dsv4_model *m;
    if (dsv4_model_open(dir, &opts, &m)) return cli_fail_lib(cmd, NULL);
    dsv4_bench_opts bo = {.prefill = (int)prefill, .chunk = (int)chunk, .decode = (int)decode, .depth = (int)depth, .seed = (uint64_t)seed,
                          .bw_bytes = (size_t)bw_mib << 20, .progress = json ? NULL : cli_progress};
    dsv4_bench_result r;
    int rc = 0;
    if (dsv4_bench_run(m, &bo, &r)) rc = cli_fail_lib(cmd, NULL);
    else if (json) print_json(&r, dir);
    else print_text(&r, dir);
    dsv4_model_close(m);
    return rc;
}
