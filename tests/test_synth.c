/* test_synth.c: synthetic checkpoints load into the engine and run.
 *
 * A Flash-like and a Pro-like model with small widths are written (the Pro one sharded into
 * several files with an index), then opened with dsv4_model_open, which checks every name,
 * dtype and shape against the config. We check the layer-kind schedule and the storage
 * formats, that the forward pass is finite and that prefill and decode agree (in exact
 * numerics), and that the same seed writes the same bytes. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "dsv4.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/synth.h"

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            remove(p);
        }
    closedir(d);
    rmdir(dir);
}

static dsv4_synth_opts tiny(const char *like, int layers, uint64_t seed) {
    dsv4_synth_opts o = {.like = like, .n_layers = layers, .n_experts = 8, .seed = seed, .dim = 256, .vocab = 1000,
                         .moe_inter = 128, .n_heads = 4, .head_dim = 128, .q_lora_rank = 128, .o_lora_rank = 64,
                         .o_groups = 2, .index_n_heads = 4, .index_topk = 16, .window = 16};
    return o;
}

static const dsv4_tensor *tensor(dsv4_st *st, const char *name) {
    const dsv4_tensor *t = dsv4_st_find(st, name);
    CHECK(t != NULL, "missing %s", name);
    return t;
}

static void check_model(const char *dir, const char *like, const int *ratios, int n_ratios) {
    struct dsv4_config c;
    CHECK(dsv4_config_load(dir, &c) == DSV4_OK, "%s: %s", dir, dsv4_errmsg());
    CHECK(c.n_layers + c.n_mtp_layers == n_ratios, "%s: %d + %d layers", like, c.n_layers, c.n_mtp_layers);
    for (int i = 0; i < n_ratios; i++) CHECK(c.compress_ratios[i] == ratios[i], "%s: ratio[%d] = %d, want %d", like, i, c.compress_ratios[i], ratios[i]);
    CHECK(c.fp8 && c.expert_fp4 && c.block_r == 128 && c.block_c == 128, "%s: storage formats in the config", like);

    dsv4_st *st;
    CHECK(dsv4_st_open_dir(dir, &st) == DSV4_OK, "%s", dsv4_errmsg());
    if (st) {
        CHECK(tensor(st, "embed.weight")->dtype == DSV4_DT_BF16, "embed dtype");
        CHECK(tensor(st, "layers.0.attn.wq_a.weight")->dtype == DSV4_DT_F8_E4M3, "wq_a dtype");
        CHECK(tensor(st, "layers.0.attn.wq_a.scale")->dtype == DSV4_DT_F8_E8M0, "wq_a scale dtype");
        const dsv4_tensor *w1 = tensor(st, "layers.0.ffn.experts.7.w1.weight"), *s1 = tensor(st, "layers.0.ffn.experts.7.w1.scale");
        CHECK(w1->dtype == DSV4_DT_I8 && w1->shape[0] == 128 && w1->shape[1] == 128, "FP4 expert weight packed [inter, dim/2]");
        CHECK(s1->dtype == DSV4_DT_F8_E8M0 && s1->shape[1] == 256 / 32, "FP4 expert scale per 32 inputs");
        CHECK(tensor(st, "layers.0.ffn.gate.tid2eid")->dtype == DSV4_DT_I64, "tid2eid dtype");
        CHECK(tensor(st, "layers.0.hc_attn_fn")->dtype == DSV4_DT_F32, "hc dtype");
        CHECK(tensor(st, "mtp.0.e_proj.weight")->dtype == DSV4_DT_F8_E4M3, "MTP e_proj");
        CHECK(dsv4_st_find(st, "mtp.0.ffn.gate.tid2eid") == NULL, "the MTP block is score-routed");
        dsv4_st_close(st);
    }

    /* exact numerics: prefill and decode then agree to rounding (in the default numerics the
     * two paths' different fp32 sums may flip an FP8 rounding, see docs/numerics.md) */
    dsv4_model *m;
    dsv4_open_opts opts = {.numerics = DSV4_NUMERICS_EXACT};
    CHECK(dsv4_model_open(dir, &opts, &m) == DSV4_OK, "%s: %s", dir, dsv4_errmsg());
    if (!m) return;
    enum { T = 12 };
    int V = dsv4_model_vocab(m);
    int32_t ids[T];
    for (int i = 0; i < T; i++) ids[i] = (i * 37 + 5) % V;
    float *pre = malloc((size_t)T * V * sizeof(float)), *dec = malloc((size_t)T * V * sizeof(float));
    dsv4_session *s;
    CHECK(dsv4_session_new(m, T + 1, &s) == DSV4_OK, "session: %s", dsv4_errmsg());
    CHECK(dsv4_forward(s, ids, T, DSV4_LOGITS_ALL, pre) == DSV4_OK, "prefill: %s", dsv4_errmsg());
    dsv4_session_reset(s);
    for (int i = 0; i < T; i++) CHECK(dsv4_forward(s, ids + i, 1, DSV4_LOGITS_LAST, dec + (size_t)i * V) == DSV4_OK, "decode");
    double worst = 0, sq = 0;
    int finite = 1;
    for (size_t i = 0; i < (size_t)T * V; i++) {
        finite &= isfinite(pre[i]) && isfinite(dec[i]);
        worst = fmax(worst, fabs((double)pre[i] - dec[i]));
        sq += (double)pre[i] * pre[i];
    }
    double rms = sqrt(sq / ((double)T * V));
    CHECK(finite, "%s: logits are finite", like);
    CHECK(rms > 0.05 && rms < 50, "%s: logits have a sane spread (rms %g)", like, rms);
    CHECK(worst < 1e-3 * fmax(1.0, rms), "%s: prefill and decode agree (max |d| %g)", like, worst);
    dsv4_session_free(s);
    dsv4_model_close(m);

    /* the default numerics (FP8 activations, compact KV rows) run and stay finite */
    CHECK(dsv4_model_open(dir, NULL, &m) == DSV4_OK, "%s: %s", dir, dsv4_errmsg());
    if (m) {
        finite = 1;
        CHECK(dsv4_session_new(m, T + 1, &s) == DSV4_OK, "session: %s", dsv4_errmsg());
        CHECK(dsv4_forward(s, ids, T, DSV4_LOGITS_ALL, pre) == DSV4_OK, "prefill: %s", dsv4_errmsg());
        for (size_t i = 0; i < (size_t)T * V; i++) finite &= isfinite(pre[i]);
        CHECK(finite, "%s: default-numerics logits are finite", like);
        dsv4_session_free(s);
        dsv4_model_close(m);
    }
    free(pre);
    free(dec);
}

static long file_size(const char *p) {
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static bool same_file(const char *a, const char *b) {
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    bool same = f && g;
    while (same) {
        int x = fgetc(f), y = fgetc(g);
        if (x != y) same = false;
        if (x == EOF) break;
    }
    if (f) fclose(f);
    if (g) fclose(g);
    return same;
}

int main(void) {
    char flash[] = "/tmp/dsv4_synth_flash_XXXXXX", pro[] = "/tmp/dsv4_synth_pro_XXXXXX", again[] = "/tmp/dsv4_synth_again_XXXXXX";
    CHECK(mkdtemp(flash) && mkdtemp(pro) && mkdtemp(again), "temporary directories");

    /* Flash: layers 0,1 window only, then CSA / HCA alternating, then the MTP block (0) */
    dsv4_synth_opts o = tiny("flash", 5, 1);
    uint64_t bytes = 0;
    CHECK(dsv4_synth_write(&o, flash, &bytes) == DSV4_OK, "flash: %s", dsv4_errmsg());
    const int flash_ratios[] = {0, 0, 4, 128, 4, 0};
    check_model(flash, "flash", flash_ratios, 6);
    char p[4096], q[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", flash);
    CHECK(file_size(p) > (long)bytes, "single file holds every tensor (%ld bytes)", file_size(p));

    /* the same seed writes the same bytes; another seed does not */
    CHECK(dsv4_synth_write(&o, again, NULL) == DSV4_OK, "again: %s", dsv4_errmsg());
    snprintf(q, sizeof q, "%s/model.safetensors", again);
    CHECK(same_file(p, q), "the same seed writes the same checkpoint");
    o.seed = 2;
    CHECK(dsv4_synth_write(&o, again, NULL) == DSV4_OK, "again: %s", dsv4_errmsg());
    CHECK(!same_file(p, q), "another seed writes another checkpoint");

    /* Pro: layers 0,1 HCA; sharded (1 MiB shards) with an index */
    dsv4_synth_opts op = tiny("pro", 4, 3);
    op.shard_gib = 1.0 / 1024;
    CHECK(dsv4_synth_write(&op, pro, NULL) == DSV4_OK, "pro: %s", dsv4_errmsg());
    const int pro_ratios[] = {128, 128, 4, 128, 0};
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", pro);
    CHECK(file_size(p) > 0, "sharded checkpoint has an index");
    check_model(pro, "pro", pro_ratios, 5);

    /* bad requests are refused with a message */
    dsv4_synth_opts bad = tiny("flash", 2, 1);
    bad.dim = 250;
    CHECK(dsv4_synth_write(&bad, again, NULL) == DSV4_EINVAL && strstr(dsv4_errmsg(), "multiples of 32"), "dim not a multiple of 32");
    bad = tiny("grok", 2, 1);
    CHECK(dsv4_synth_write(&bad, again, NULL) == DSV4_EINVAL && strstr(dsv4_errmsg(), "unknown model"), "unknown model");

    rm_tree(flash);
    rm_tree(pro);
    rm_tree(again);
    return check_done("test_synth");
}
