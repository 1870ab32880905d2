/* cmd_info.c: `dsv4 info`, what a model is and what it costs.
 *
 * For a DeepSeek-V4.1 model it also shows the CSA2 roles of the layers and reports the
 * Engram tables apart from the backbone: their size, where they are read from, and what a
 * token costs in them (rows, bytes), next to the KV bytes per token of the compressed
 * caches. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "io/safetensors.h"
#include "model/info.h"
#include "model/model.h"

static void human(double v, char *buf, size_t n) {
    const char *u[] = {"", "K", "M", "B", "T"};
    int i = 0;
    while (v >= 1000 && i < 4) {
        v /= 1000;
        i++;
    }
    snprintf(buf, n, i ? "%.2f%s" : "%.0f%s", v, u[i]);
}

static void bytes(double v, char *buf, size_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(buf, n, i ? "%.2f %s" : "%.0f %s", v, u[i]);
}

static void info_v41(const dsv4_model *m, const char *dir) {
    const struct dsv4_config *c = dsv4_model_config(m);
    char a[32], b[32], d[32], e[32];
    printf("model       %s (%s, DeepSeek-V4.1)\n", dir, c->model_type);
    int n[4] = {0};
    const char *roles[4] = {"SWA", "Full", "Reindex", "Reuse"};
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < 4; k++) n[k] += !strcmp(dsv4_config_layer_role(c, l), roles[k]);
    printf("layers      %d (+%d DSpark stages): %d SWA, %d Full, %d Reindex, %d Reuse; %d Engram\n", c->n_layers,
           c->n_mtp_layers, n[0], n[1], n[2], n[3], c->n_engram_layers);
    printf("schedule    ");
    for (int l = 0; l < c->n_layers; l++)
        printf("%s%d:%s%d%s", l ? " " : "", l, dsv4_config_layer_role(c, l), c->compress_ratios[l],
               dsv4_config_engram_index(c, l) >= 0 ? "+E" : "");
    printf("\n");
    printf("width       dim %d, vocab %d, hc %d streams (single-pass mHC, Sinkhorn %d iters)\n", c->dim, c->vocab_size,
           c->hc_mult, c->hc_sinkhorn_iters);
    printf("attention   %d heads x %d (rope %d), q_lora %d, %d output groups x %d, window %d\n", c->n_heads, c->head_dim,
           c->rope_head_dim, c->q_lora_rank, c->o_groups, c->o_lora_rank, c->window_size);
    printf("CSA2        indexer %d heads x %d, top-%d; candidate pool %s", c->index_n_heads, c->index_head_dim, c->index_topk,
           c->candidate_source_layer >= 0 ? "" : "off");
    if (c->candidate_source_layer >= 0)
        printf("from layer %d, %d blocks x %d", c->candidate_source_layer, c->candidate_topk_blocks, c->candidate_block_size);
    printf("; index keys: %s\n", m->index_keys_intended ? "own group (intended)" : "official shared slot");
    printf("moe         %d routed experts (top-%d, gate_temp %g, scale %g), 1 shared, width %d, swiglu limit %g\n",
           c->n_routed_experts, c->n_activated_experts, c->gate_temp, c->route_scale, c->moe_inter_dim, c->swiglu_limit);
    if (m->engram) {
        const dsv4_engram *en = m->engram;
        printf("engram      layers");
        for (int i = 0; i < en->n_layers; i++) printf(" %d (%lld rows)", en->layers[i].layer, (long long)en->layers[i].rows);
        printf(", orders 2..%d x %d heads x %d dims, vocabulary %d from %s\n", en->max_ngram, en->n_heads, en->head_dim,
               en->n_compressed, en->map_source);
    }
    if (m->dspark)
        printf("dspark      %d stages, block %d, noise token %d, targets", m->dspark->n_stages, m->dspark->block_size,
               m->dspark->noise_id);
    for (int k = 0; m->dspark && k < c->n_dspark_targets; k++) printf(" %d", c->dspark_target_layer_ids[k]);
    if (m->dspark)
        printf(", Markov rank %d, %d experts (top-%d)\n", m->dspark->rank, c->dspark_n_routed_experts,
               c->dspark_n_activated_experts);
    printf("storage     %s (%dx%d blocks), experts %s\n", c->fp8 ? "FP8 e4m3 block-scaled" : "bf16/f32", c->block_r, c->block_c,
           c->expert_fp4 ? "FP4 e2m1" : "as weights");

    dsv4_param_stats ps;
    dsv4_model_param_stats(m, &ps);
    human(ps.total_params, a, sizeof a);
    human(ps.active_params, b, sizeof b);
    human(ps.mtp_params, d, sizeof d);
    human(ps.engram_table_params, e, sizeof e);
    printf("\nparameters  backbone %s, active per token %s, DSpark %s, Engram tables %s", a, b, d, e);
    human(ps.engram_proj_params, a, sizeof a);
    printf(" (+ projections %s)\n", a);
    bytes(ps.backbone_bytes, a, sizeof a);
    bytes(ps.engram_table_bytes, b, sizeof b);
    bytes(ps.dspark_bytes, d, sizeof d);
    printf("weights     backbone %s, Engram tables %s, DSpark %s\n", a, b, d);
    printf("            by dtype:");
    for (int t = 0; t < 20; t++) {
        if (!ps.bytes_by_dtype[t]) continue;
        bytes(ps.bytes_by_dtype[t], a, sizeof a);
        printf(" %s %s", dsv4_dtype_name((dsv4_dtype)t), a);
    }
    printf("\n");
    bytes(ps.decode_bytes, a, sizeof a);
    printf("decode      %s of weights read per token (active set as stored)", a);
    if (m->engram) {
        bytes(ps.engram_read_per_token, b, sizeof b);
        printf(" + %s of Engram rows (%d rows of %d B)", b, m->engram->n_layers * m->engram->n_cols,
               dsv4_engram_row_bytes(m->engram));
    }
    printf("\n");
    if (m->engram) {
        const dsv4_engram *en = m->engram;
        int reads = 2 * en->n_layers * en->n_cols; /* a row's codes and its scales are separate tensors */
        printf("            Engram tables are read %s; rows are gathered ahead of the layers that use them%s\n",
               en->placement == DSV4_ENGRAM_RAM ? "from RAM (copied at load)" : "through the memory map (RAM or SSD)",
               en->sync ? " (disabled: --engram-sync)" : "");
        printf("            from SSD a token costs up to %d random page reads (%d KiB), %d of them before layer %d\n", reads,
               reads * 4, reads / en->n_layers, en->layers[0].layer);
    }
    const char *names[] = {"exact (f32 rows)", "default (FP4 KV, FP8 window)"};
    printf("\nKV state per token (amortised; windows are a fixed cost per sequence):\n");
    for (int f = 0; f < 2; f++) {
        dsv4_kv_costs k;
        dsv4_model_kv_costs(m, f, &k);
        bytes(k.window_bytes, a, sizeof a);
        printf("  %-29s row %4.0f B, index key %3.0f B | %d KV sources: compressed %7.1f + keys %6.1f = %7.1f B/tok; windows %s\n",
               names[f], k.row_bytes, k.index_row_bytes, k.n_kv_sources, k.compressed_per_token, k.index_per_token,
               k.per_token, a);
    }
}

int cmd_info(int argc, char **argv) {
    const char *cmd = "info", *dir = NULL;
    dsv4_open_opts opts = {0};
    for (int i = 1; i < argc; i++) {
        int used = cli_model_flag(cmd, argc, argv, &i, &opts);
        if (used < 0) return 2;
        if (used) continue;
        if (cli_is(argv[i], "-m", "--model")) {
            if (!(dir = cli_value(argc, argv, &i))) return cli_fail(cmd, "-m needs a directory"), 2;
        } else if (cli_is(argv[i], "-h", "--help")) {
            puts("usage: dsv4 info [-m DIR]");
            return 0;
        } else return cli_fail(cmd, "unknown option %s", argv[i]), 2;
    }
    if (!dir) dir = cli_default_model();
    dsv4_model *m;
    if (dsv4_model_open(dir, &opts, &m)) return cli_fail_lib(cmd, NULL);
    const struct dsv4_config *c = dsv4_model_config(m);
    char a[32], b[32], d[32];
    if (c->family == DSV4_ARCH_V41) {
        info_v41(m, dir);
        dsv4_model_close(m);
        return 0;
    }

    printf("model       %s (%s)\n", dir, c->model_type);
    int nw = 0, ncsa = 0, nhca = 0;
    for (int l = 0; l < c->n_layers; l++) {
        int r = c->compress_ratios[l];
        nw += r == 0;
        ncsa += r == 4;
        nhca += r > 4;
    }
    printf("layers      %d (+%d MTP): %d window-only, %d CSA (ratio 4, indexer top-%d), %d HCA\n", c->n_layers,
           c->n_mtp_layers, nw, ncsa, c->index_topk, nhca);
    printf("schedule    ");
    for (int l = 0; l < c->n_layers + c->n_mtp_layers; l++) printf("%s%d", l ? "," : "", c->compress_ratios[l]);
    printf("\n");
    printf("width       dim %d, vocab %d, hc %d streams (Sinkhorn %d iters)\n", c->dim, c->vocab_size, c->hc_mult,
           c->hc_sinkhorn_iters);
    printf("attention   %d heads x %d (rope %d), q_lora %d, %d output groups x %d, window %d\n", c->n_heads,
           c->head_dim, c->rope_head_dim, c->q_lora_rank, c->o_groups, c->o_lora_rank, c->window_size);
    if (c->index_n_heads) printf("indexer     %d heads x %d, top-%d\n", c->index_n_heads, c->index_head_dim, c->index_topk);
    printf("rope        theta %g (window layers), %g with YaRN x%g from %d (compressed layers)\n", c->rope_theta,
           c->compress_rope_theta, c->rope_factor, c->original_seq_len);
    printf("moe         %d routed experts (top-%d, %s, scale %g), 1 shared, width %d, %d hash layers, swiglu limit %g\n",
           c->n_routed_experts, c->n_activated_experts,
           c->score_func == DSV4_SCORE_SQRTSOFTPLUS ? "sqrt-softplus" : c->score_func == DSV4_SCORE_SIGMOID ? "sigmoid" : "softmax",
           c->route_scale, c->moe_inter_dim, c->n_hash_layers, c->swiglu_limit);
    printf("storage     %s, experts %s\n", c->fp8 ? "FP8 e4m3 block-scaled" : "bf16/f32", c->expert_fp4 ? "FP4 e2m1" : "as weights");

    dsv4_param_stats ps;
    dsv4_model_param_stats(m, &ps);
    human(ps.total_params, a, sizeof a);
    human(ps.active_params, b, sizeof b);
    human(ps.mtp_params, d, sizeof d);
    printf("\nparameters  total %s, active per token %s, MTP block %s\n", a, b, d);
    printf("weights     ");
    double all = 0;
    int first = 1;
    for (int t = 0; t < 20; t++) {
        if (!ps.bytes_by_dtype[t]) continue;
        bytes(ps.bytes_by_dtype[t], a, sizeof a);
        printf("%s%s %s", first ? "" : ", ", dsv4_dtype_name((dsv4_dtype)t), a);
        all += ps.bytes_by_dtype[t];
        first = 0;
    }
    bytes(all, a, sizeof a);
    printf(" (total %s)\n", a);
    bytes(ps.decode_bytes, a, sizeof a);
    printf("decode      %s of weights read per token (active set as stored)\n", a);

    const char *names[] = {"exact (f32 rows)", "default (FP8 + f32 rope)", "production (FP8 + bf16 rope)"};
    printf("\nKV state per token (amortised; windows are a fixed cost per sequence):\n");
    for (int f = 0; f < 3; f++) {
        dsv4_kv_costs k;
        dsv4_model_kv_costs(m, f, &k);
        bytes(k.window_bytes, a, sizeof a);
        printf("  %-29s row %4.0f B, index key %3.0f B | CSA %7.2f B/tok x %d, HCA %6.2f B/tok x %d | total %8.1f B/tok; windows %s\n",
               names[f], k.row_bytes, k.index_row_bytes, k.csa_per_token, k.n_csa, k.hca_per_token, k.n_hca, k.per_token, a);
    }
    dsv4_model_close(m);
    return 0;
}
