/* test_indexer.c: top-k selection and the lightning indexer (src/model/indexer.c).
 *
 * dsv4_topk against a selection sort (repeatedly take the largest remaining score, the lower
 * index first on ties), on data full of ties. The score formula against the spec (v4-model.md
 * 2.4.2), score(w) = sum_h omega_h relu(qI_h . K_w). The whole indexer step of a CSA layer on a
 * fake one-layer model (exact numerics, fp32 weights): queries qI = Hadamard(RoPE(wq_b q_lat))
 * with the rope on the LAST rope dims at the query position, omega = weights_proj(u) /
 * sqrt(head_dim * n_heads), only the entries complete at position t ((t+1)/4 of them) are
 * candidates, and the indexer compressor runs before scoring so an entry completed by the
 * current token can be chosen; prefill and token-by-token decoding must choose alike. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/state.h"
#include "model/forward.h"

static uint64_t rng = 0x1f83d9abfb41bd6bull;
static double uniform(void) { /* in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return 2.0 * (double)(rng >> 11) / 9007199254740992.0 - 1.0;
}

/* selection sort: the k largest, descending, ties to the lower index */
static int ref_topk(const float *s, int n, int k, int *out) {
    if (k > n) k = n;
    char used[4096] = {0};
    for (int i = 0; i < k; i++) {
        int best = -1;
        for (int j = 0; j < n; j++)
            if (!used[j] && (best < 0 || s[j] > s[best])) best = j;
        used[best] = 1;
        out[i] = best;
    }
    return k < 0 ? 0 : k;
}

static void test_topk(void) {
    /* by hand */
    float s[6] = {1, 3, 3, -2, 5, 3};
    int out[8];
    int n = dsv4_topk(s, 6, 4, out);
    CHECK(n == 4 && out[0] == 4 && out[1] == 1 && out[2] == 2 && out[3] == 5,
          "topk of (1,3,3,-2,5,3), k 4: got %d: %d %d %d %d, expected 4 1 2 5", n, out[0], out[1], out[2], out[3]);
    n = dsv4_topk(s, 6, 8, out); /* k > n: all of them */
    CHECK(n == 6 && out[0] == 4 && out[4] == 0 && out[5] == 3, "k > n returns all n in order (got %d)", n);
    CHECK(dsv4_topk(s, 6, 0, out) == 0, "k = 0 selects nothing");
    CHECK(dsv4_topk(s, 0, 3, out) == 0, "n = 0 selects nothing");
    float neg[3] = {-INFINITY, -1, -INFINITY};
    n = dsv4_topk(neg, 3, 3, out);
    CHECK(n == 3 && out[0] == 1 && out[1] == 0 && out[2] == 2, "-inf entries last, ties to the lower index");

    /* random, with many ties (scores from 5 levels) and without */
    for (int trial = 0; trial < 300; trial++) {
        int len = 1 + (int)((uniform() + 1) * 100);
        int k = 1 + (int)((uniform() + 1) * 60);
        float *v = malloc((size_t)len * sizeof(float));
        for (int i = 0; i < len; i++) v[i] = trial & 1 ? (float)(int)((uniform() + 1) * 2.5) : (float)uniform();
        int got[256], want[256];
        int ng = dsv4_topk(v, len, k, got), nw = ref_topk(v, len, k, want);
        CHECK(ng == nw, "topk count %d vs %d (n %d, k %d)", ng, nw, len, k);
        int bad = 0;
        for (int i = 0; i < nw && i < ng; i++) bad += got[i] != want[i];
        CHECK(bad == 0, "topk trial %d (n %d, k %d, ties %d): %d positions differ", trial, len, k, trial & 1, bad);
        free(v);
    }
}

static void test_scores(void) {
    /* by hand: 2 heads of 2 dims, q_0 = (1, 0), q_1 = (0, 1), w = (2, 3).
     * key (1, -1): relu(1) * 2 + relu(-1) * 3 = 2;  key (-2, 4): 0 + 4 * 3 = 12. */
    float q[4] = {1, 0, 0, 1}, w[2] = {2, 3}, keys[4] = {1, -1, -2, 4}, sc[2];
    dsv4_indexer_scores(q, w, 2, 2, keys, 2, sc);
    CHECK(sc[0] == 2.0f && sc[1] == 12.0f, "scores (%g, %g), expected (2, 12)", sc[0], sc[1]);
    /* random against double */
    enum { NH = 8, HD = 32, NK = 20 };
    float qq[NH * HD], ww[NH], kk[NK * HD], ss[NK];
    for (int i = 0; i < NH * HD; i++) qq[i] = (float)uniform();
    for (int i = 0; i < NH; i++) ww[i] = (float)uniform();
    for (int i = 0; i < NK * HD; i++) kk[i] = (float)uniform();
    dsv4_indexer_scores(qq, ww, NH, HD, kk, NK, ss);
    for (int k = 0; k < NK; k++) {
        double s = 0;
        for (int h = 0; h < NH; h++) {
            double d = 0;
            for (int i = 0; i < HD; i++) d += (double)qq[h * HD + i] * kk[k * HD + i];
            s += ww[h] * fmax(d, 0);
        }
        CHECK(fabs(ss[k] - s) < 1e-5, "score %d: %.9g vs %.9g", k, ss[k], s);
    }
}

/* ---- the indexer step on a fake CSA layer ---- */

enum { DIM = 16, QR = 12, RD = 8, NH = 4, HD = 16, TOPK = 2, NTOK = 14 };

typedef struct {
    struct dsv4_model m;
    dsv4_layer_w layer;
    dsv4_rope rope;
    float wq_b[NH * HD * QR], wproj[NH * DIM], wkv[2 * HD * DIM], wgate[2 * HD * DIM], ape[4 * 2 * HD], norm[HD];
} fake;

static dsv4_linear f32_linear(const float *w, int rows, int cols) {
    dsv4_linear L = {.fmt = DSV4_W_F32, .rows = rows, .cols = cols, .w = w, .name = "test"};
    return L;
}

static void fake_init(fake *f) {
    memset(f, 0, sizeof *f);
    for (int i = 0; i < NH * HD * QR; i++) f->wq_b[i] = (float)(0.5 * uniform());
    for (int i = 0; i < NH * DIM; i++) f->wproj[i] = (float)(0.5 * uniform());
    for (int i = 0; i < 2 * HD * DIM; i++) f->wkv[i] = (float)(0.5 * uniform()), f->wgate[i] = (float)uniform();
    for (int i = 0; i < 4 * 2 * HD; i++) f->ape[i] = (float)(0.3 * uniform());
    for (int i = 0; i < HD; i++) f->norm[i] = (float)(1 + 0.2 * uniform());
    dsv4_rope_init(&f->rope, RD, 160000.0f, 65536, 16.0f, 32.0f, 1.0f);
    struct dsv4_config *c = &f->m.cfg;
    c->n_layers = 1;
    c->dim = DIM;
    c->q_lora_rank = QR;
    c->rope_head_dim = RD;
    c->head_dim = 32;
    c->window_size = 8;
    c->norm_eps = 1e-6f;
    c->max_position_embeddings = 4096;
    f->m.numerics = DSV4_NUMERICS_EXACT;
    dsv4_attn_w *aw = &f->layer.attn;
    aw->ratio = 4;
    aw->has_indexer = true;
    aw->rope = &f->rope;
    aw->comp.ratio = 4, aw->comp.dc = 32, aw->comp.overlap = true; /* main compressor: state only */
    dsv4_indexer_w *ix = &aw->indexer;
    ix->n_heads = NH, ix->head_dim = HD, ix->topk = TOPK;
    ix->wq_b = f32_linear(f->wq_b, NH * HD, QR);
    ix->weights_proj = f32_linear(f->wproj, NH, DIM);
    ix->comp.ratio = 4, ix->comp.dc = HD, ix->comp.overlap = true, ix->comp.rotate = true;
    ix->comp.wkv = f32_linear(f->wkv, 2 * HD, DIM);
    ix->comp.wgate = f32_linear(f->wgate, 2 * HD, DIM);
    ix->comp.ape = f->ape;
    ix->comp.norm = f->norm;
    f->m.layers = &f->layer;
}

/* Run rows [p0, p0+n) as one step of session s. */
static void step(fake *f, dsv4_session *s, const float *u, const float *qlat, int p0, int n, int *sel, int *n_sel) {
    int pos[NTOK], seg_of[NTOK] = {0};
    int32_t ids[NTOK] = {0};
    for (int i = 0; i < n; i++) pos[i] = p0 + i;
    dsv4_fwd_seg seg = {.s = s, .row0 = 0, .n = n, .pos0 = p0};
    dsv4_fwd_batch b = {.n_rows = n, .n_segs = 1, .segs = &seg, .pos = pos, .ids = ids, .seg_of = seg_of, .state = 0};
    dsv4_workspace ws = {0};
    dsv4_status rc =
        dsv4_indexer_forward(&f->m, &f->layer.attn, &b, u + (size_t)p0 * DIM, qlat + (size_t)p0 * QR, sel, n_sel, &ws);
    CHECK(rc == DSV4_OK, "indexer step at %d failed", p0);
    dsv4_ws_free(&ws);
}

static void test_indexer_step(void) {
    static fake f;
    fake_init(&f);
    float u[NTOK * DIM], qlat[NTOK * QR];
    for (int i = 0; i < NTOK * DIM; i++) u[i] = (float)uniform();
    for (int i = 0; i < NTOK * QR; i++) qlat[i] = (float)uniform();

    dsv4_session *sp, *sd;
    CHECK(dsv4_session_new(&f.m, 256, &sp) == DSV4_OK && dsv4_session_new(&f.m, 256, &sd) == DSV4_OK, "sessions");
    int sel_p[NTOK * TOPK], nsel_p[NTOK], sel_d[NTOK * TOPK], nsel_d[NTOK];
    step(&f, sp, u, qlat, 0, NTOK, sel_p, nsel_p);                                            /* prefill */
    for (int t = 0; t < NTOK; t++) step(&f, sd, u, qlat, t, 1, sel_d + t * TOPK, nsel_d + t); /* decode */

    const dsv4_comp_state *st = &sp->layers[0].idx;
    CHECK(st->n_rows == NTOK / 4, "indexer keys: %d, expected %d", st->n_rows, NTOK / 4);
    float keys[NTOK / 4][HD];
    for (int k = 0; k < st->n_rows; k++) dsv4_rowstore_get(&st->rows, k, keys[k]);

    for (int t = 0; t < NTOK; t++) {
        /* the spec's query for position t, in double */
        double q[NH][HD], omega[NH];
        for (int h = 0; h < NH; h++) {
            double v[HD];
            for (int i = 0; i < HD; i++) {
                double s = 0;
                for (int j = 0; j < QR; j++) s += (double)f.wq_b[(h * HD + i) * QR + j] * qlat[t * QR + j];
                v[i] = s;
            }
            for (int i = 0; i < RD / 2; i++) { /* RoPE on the last RD dims, interleaved pairs */
                double ang = (double)((float)t * f.rope.freqs[i]);
                double x0 = v[HD - RD + 2 * i], x1 = v[HD - RD + 2 * i + 1];
                v[HD - RD + 2 * i] = x0 * cos(ang) - x1 * sin(ang);
                v[HD - RD + 2 * i + 1] = x0 * sin(ang) + x1 * cos(ang);
            }
            for (int i = 0; i < HD; i++) { /* Sylvester Hadamard / sqrt(HD) */
                double s = 0;
                for (int j = 0; j < HD; j++) s += (__builtin_popcount((unsigned)(i & j)) & 1 ? -1.0 : 1.0) * v[j];
                q[h][i] = s / sqrt(HD);
            }
            double o = 0;
            for (int j = 0; j < DIM; j++) o += (double)f.wproj[h * DIM + j] * u[t * DIM + j];
            omega[h] = o / sqrt((double)HD * NH);
        }
        int visible = (t + 1) / 4;
        float score[NTOK];
        for (int k = 0; k < visible; k++) {
            double s = 0;
            for (int h = 0; h < NH; h++) {
                double d = 0;
                for (int i = 0; i < HD; i++) d += q[h][i] * keys[k][i];
                s += omega[h] * fmax(d, 0);
            }
            score[k] = (float)s;
        }
        int want[TOPK];
        int nw = ref_topk(score, visible, TOPK, want);
        CHECK(nsel_p[t] == nw, "position %d: %d entries selected, expected min(topk, (t+1)/4) = %d", t, nsel_p[t], nw);
        CHECK(nsel_d[t] == nw, "position %d (decode): %d entries selected, expected %d", t, nsel_d[t], nw);
        for (int i = 0; i < nw && i < nsel_p[t]; i++) {
            /* the order is the score order; a near-tie (double vs fp32) would be no finding */
            bool near_tie = i + 1 < nw && fabsf(score[want[i]] - score[want[i + 1]]) < 1e-5f;
            CHECK(sel_p[t * TOPK + i] == want[i] || near_tie, "position %d rank %d: entry %d, expected %d", t, i,
                  sel_p[t * TOPK + i], want[i]);
            CHECK(sel_d[t * TOPK + i] == sel_p[t * TOPK + i], "position %d rank %d: decode %d vs prefill %d", t, i,
                  sel_d[t * TOPK + i], sel_p[t * TOPK + i]);
        }
    }
    dsv4_session_free(sp);
    dsv4_session_free(sd);
}

int main(void) {
    test_topk();
    test_scores();
    test_indexer_step();
    return check_done("test_indexer");
}
