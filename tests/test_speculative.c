/* test_speculative.c: DSpark speculative decoding gives exactly greedy decoding's tokens.
 *
 * On the tiny V4.1 reference checkpoint (../shared/refvectors-v41), for both numerics and
 * both index-key behaviours (two of the four combinations in the sanitizer build):
 *  - a decode step of several tokens gives, bit for bit, the logits of feeding them one at a
 *    time (the verification step computes what single-token steps would, including the
 *    official stale index-key slot), also at a short context where the engine must fall back
 *    to single-token steps;
 *  - taking back the tail of a step (3 of 5 tokens kept, the rejected ones completing a
 *    ratio-2 group) leaves the session exactly as if only the kept tokens had been fed: the
 *    next step's logits and the next DSpark draft are bit-identical;
 *  - dsv4_generate_greedy with speculation gives the same tokens as without;
 *  - one batched step over two sessions (a prefill and a decode step) gives each session's
 *    logits bit for bit as two separate steps;
 *  - a V4.1 session saved in the middle of a ratio-2 group and restored elsewhere continues
 *    bit for bit (windows, compressor slots, compressed rows, index keys, the shared
 *    index-key slot, the Engram history, the DSpark windows). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dsv4.h"
#include "infer/snapshot.h"
#include "infer/speculative.h"
#include "kernels/linear.h"

static const int32_t PROMPT[8] = {116, 278, 343, 231, 30, 332, 42, 468};

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* Logits of ids[pre..pre+n) after ids[0..pre): one step, or one token per step. */
static void step_vs_tokens(dsv4_model *m, const int32_t *ids, int pre, int n, const char *what) {
    int V = dsv4_model_vocab(m);
    float *a = malloc((size_t)n * V * sizeof(float)), *b = malloc((size_t)n * V * sizeof(float));
    dsv4_session *s1, *s2;
    CHECK(!dsv4_session_new(m, 64, &s1) && !dsv4_session_new(m, 64, &s2), "session: %s", dsv4_errmsg());
    CHECK(!dsv4_forward(s1, ids, pre, DSV4_LOGITS_NONE, NULL) && !dsv4_forward(s2, ids, pre, DSV4_LOGITS_NONE, NULL),
          "prompt: %s", dsv4_errmsg());
    CHECK(!dsv4_forward(s1, ids + pre, n, DSV4_LOGITS_ALL, a), "step: %s", dsv4_errmsg());
    for (int t = 0; t < n; t++) CHECK(!dsv4_forward(s2, ids + pre + t, 1, DSV4_LOGITS_ALL, b + (size_t)t * V), "token");
    CHECK(!memcmp(a, b, (size_t)n * V * sizeof(float)), "%s: a step of %d tokens at position %d differs from single tokens",
          what, n, pre);
    dsv4_session_free(s1);
    dsv4_session_free(s2);
    free(a);
    free(b);
}

static void rollback_exact(dsv4_model *m, const int32_t *greedy, const char *what) {
    int V = dsv4_model_vocab(m), B = dsv4_model_dspark_block(m);
    float *a = malloc((size_t)5 * V * sizeof(float)), *b = malloc((size_t)V * sizeof(float));
    float *da = malloc((size_t)B * V * sizeof(float)), *db = malloc((size_t)B * V * sizeof(float));
    int32_t ida[8], idb[8];
    dsv4_session *s1, *s2;
    CHECK(!dsv4_session_new(m, 64, &s1) && !dsv4_session_new(m, 64, &s2), "session: %s", dsv4_errmsg());
    /* s1: the prompt, then greedy[0..2] and two wrong tokens in one step, rolled back to 3;
     * the prompt has 8 tokens, so the wrong ones (positions 11, 12) complete group 5 */
    int32_t chunk[5] = {greedy[0], greedy[1], greedy[2], 7, 9};
    CHECK(!dsv4_forward(s1, PROMPT, 8, DSV4_LOGITS_NONE, NULL), "prompt: %s", dsv4_errmsg());
    dsv4_step_mark mk;
    CHECK(!dsv4_step_mark_save(s1, 5, &mk), "mark: %s", dsv4_errmsg());
    CHECK(!dsv4_forward(s1, chunk, 5, DSV4_LOGITS_ALL, a), "step: %s", dsv4_errmsg());
    dsv4_step_rollback(s1, &mk, 3);
    dsv4_step_mark_free(&mk);
    CHECK(dsv4_session_pos(s1) == 11, "rollback: position %d, expected 11", dsv4_session_pos(s1));
    /* s2: the prompt and the three kept tokens only */
    CHECK(!dsv4_forward(s2, PROMPT, 8, DSV4_LOGITS_NONE, NULL) && !dsv4_forward(s2, chunk, 3, DSV4_LOGITS_NONE, NULL), "feed");
    CHECK(!dsv4_dspark_draft(s1, greedy[3], ida, da, NULL) && !dsv4_dspark_draft(s2, greedy[3], idb, db, NULL), "draft: %s",
          dsv4_errmsg());
    CHECK(!memcmp(da, db, (size_t)B * V * sizeof(float)), "%s: the draft after a rollback differs", what);
    CHECK(!dsv4_forward(s1, greedy + 3, 1, DSV4_LOGITS_LAST, a) && !dsv4_forward(s2, greedy + 3, 1, DSV4_LOGITS_LAST, b), "next");
    CHECK(!memcmp(a, b, (size_t)V * sizeof(float)), "%s: the step after a rollback differs", what);
    CHECK(argmax(a, V) == greedy[4], "%s: greedy token after the rollback %d, expected %d", what, argmax(a, V), greedy[4]);
    dsv4_session_free(s1);
    dsv4_session_free(s2);
    free(a);
    free(b);
    free(da);
    free(db);
}

static void snapshot_exact(dsv4_model *m, const int32_t *greedy, const char *what) {
    int V = dsv4_model_vocab(m), B = dsv4_model_dspark_block(m);
    float *a = malloc((size_t)2 * V * sizeof(float)), *b = malloc((size_t)2 * V * sizeof(float));
    float *da = malloc((size_t)B * V * sizeof(float)), *db = malloc((size_t)B * V * sizeof(float));
    int32_t ida[8], idb[8];
    dsv4_session *s1, *s2;
    CHECK(!dsv4_session_new(m, 64, &s1) && !dsv4_session_new(m, 64, &s2), "session: %s", dsv4_errmsg());
    CHECK(!dsv4_forward(s1, PROMPT, 8, DSV4_LOGITS_NONE, NULL) && !dsv4_forward(s1, greedy, 3, DSV4_LOGITS_NONE, NULL), "feed");
    size_t n = dsv4_session_snapshot_size(s1), used = 0;
    void *buf = malloc(n);
    CHECK(!dsv4_session_save(s1, buf, n, &used) && used == n, "save: %s", dsv4_errmsg());
    CHECK(!dsv4_session_restore(s2, buf, used), "%s: restore: %s", what, dsv4_errmsg());
    CHECK(!dsv4_forward(s1, greedy + 3, 2, DSV4_LOGITS_ALL, a) && !dsv4_forward(s2, greedy + 3, 2, DSV4_LOGITS_ALL, b), "step");
    CHECK(!memcmp(a, b, (size_t)2 * V * sizeof(float)), "%s: a restored session continues differently", what);
    CHECK(!dsv4_dspark_draft(s1, greedy[5], ida, da, NULL) && !dsv4_dspark_draft(s2, greedy[5], idb, db, NULL), "draft");
    CHECK(!memcmp(da, db, (size_t)B * V * sizeof(float)), "%s: a restored session drafts differently", what);
    free(buf);
    dsv4_session_free(s1);
    dsv4_session_free(s2);
    free(a);
    free(b);
    free(da);
    free(db);
}

/* One step over two sessions vs two steps. Bit for bit with the portable kernels (every
 * output one fixed-order sum); the SIMD kernels pick their shape (row-dot or panel) and the
 * bf16 path by the whole product, so there a session's logits may move in the last bits with
 * what it is batched with: held to the same top-1 everywhere and 1e-3 (exact) / 0.05. */
static void batch_run(dsv4_model *m, const int32_t *greedy, const char *what, bool bitwise) {
    int V = dsv4_model_vocab(m);
    float *a = malloc((size_t)13 * V * sizeof(float)), *b = malloc((size_t)13 * V * sizeof(float));
    dsv4_session *s1, *s2, *t1, *t2;
    CHECK(!dsv4_session_new(m, 64, &s1) && !dsv4_session_new(m, 64, &s2) && !dsv4_session_new(m, 64, &t1) &&
              !dsv4_session_new(m, 64, &t2),
          "session: %s", dsv4_errmsg());
    CHECK(!dsv4_forward(s2, PROMPT, 8, DSV4_LOGITS_NONE, NULL) && !dsv4_forward(t2, PROMPT, 8, DSV4_LOGITS_NONE, NULL), "feed");
    /* s1 prefills the prompt and two more tokens while s2 decodes three tokens, in one step */
    int32_t pre[10];
    memcpy(pre, PROMPT, sizeof PROMPT);
    memcpy(pre + 8, greedy, 2 * sizeof(int32_t));
    dsv4_batch_item items[2] = {{s1, pre, 10, DSV4_LOGITS_ALL, a, NULL}, {s2, greedy, 3, DSV4_LOGITS_ALL, a + (size_t)10 * V, NULL}};
    CHECK(!dsv4_forward_batch(m, items, 2), "batch: %s", dsv4_errmsg());
    CHECK(!dsv4_forward(t1, pre, 10, DSV4_LOGITS_ALL, b) && !dsv4_forward(t2, greedy, 3, DSV4_LOGITS_ALL, b + (size_t)10 * V),
          "single");
    if (bitwise) {
        CHECK(!memcmp(a, b, (size_t)13 * V * sizeof(float)), "%s: a batched step differs from separate steps", what);
    } else {
        double mx = 0;
        for (size_t i = 0; i < (size_t)13 * V; i++) mx = fmax(mx, fabs((double)a[i] - b[i]));
        for (int r = 0; r < 13; r++)
            CHECK(argmax(a + (size_t)r * V, V) == argmax(b + (size_t)r * V, V), "%s: batched row %d: another top-1", what, r);
        double tol = strstr(what, "exact") ? 1e-3 : 0.05;
        printf("%-34s batched vs separate steps with %s kernels: max |d| %.3g\n", what, dsv4_kernels()->name, mx);
        CHECK(mx <= tol, "%s: batched step differs from separate steps by %.3g > %.3g", what, mx, tol);
    }
    dsv4_session_free(s1);
    dsv4_session_free(s2);
    dsv4_session_free(t1);
    dsv4_session_free(t2);
    free(a);
    free(b);
}

static void generate_same(dsv4_model *m, const int32_t *prompt, int n, int max_new, const char *what, int32_t *greedy_out) {
    int32_t *g = malloc((size_t)max_new * sizeof(int32_t)), *sp = malloc((size_t)max_new * sizeof(int32_t));
    int ng = 0, ns = 0;
    dsv4_spec_stats st;
    dsv4_session *s;
    CHECK(!dsv4_session_new(m, 128, &s), "session: %s", dsv4_errmsg());
    CHECK(!dsv4_generate_greedy(s, prompt, n, max_new, -1, 0, g, &ng, NULL), "greedy: %s", dsv4_errmsg());
    dsv4_session_reset(s);
    CHECK(!dsv4_generate_greedy(s, prompt, n, max_new, -1, 1, sp, &ns, &st), "speculative: %s", dsv4_errmsg());
    CHECK(ng == max_new && ns == max_new, "%s: %d and %d tokens, expected %d", what, ng, ns, max_new);
    CHECK(!memcmp(g, sp, (size_t)max_new * sizeof(int32_t)), "%s: speculative decoding gave other tokens", what);
    printf("%-34s %d tokens identical; %d steps, %d drafted, %d accepted\n", what, max_new, st.steps, st.drafted, st.accepted);
    if (greedy_out) memcpy(greedy_out, g, (size_t)max_new * sizeof(int32_t));
    dsv4_session_free(s);
    free(g);
    free(sp);
}

int main(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/refvectors-v41/models/tiny_v41flash", DSV4_SHARED);
    for (int mode = 0; mode < 4; mode++) {
#ifdef DSV4_SANITIZE
        /* under ASan two of the four: default numerics with the official keys and exact with
         * the intended ones still take every path (both row formats, both key behaviours) */
        if (mode == 1 || mode == 2) continue;
#endif
        dsv4_open_opts o = {0};
        o.numerics = mode & 1 ? DSV4_NUMERICS_EXACT : DSV4_NUMERICS_DEFAULT;
        o.index_keys_intended = mode >= 2;
        char what[64];
        snprintf(what, sizeof what, "%s numerics, %s keys", mode & 1 ? "exact" : "default", mode >= 2 ? "intended" : "official");
        dsv4_model *m;
        if (dsv4_model_open(dir, &o, &m)) {
            CHECK(0, "open %s: %s", dir, dsv4_errmsg());
            return check_done("test_speculative");
        }
        int32_t greedy[10];
        generate_same(m, PROMPT, 8, 10, what, greedy);
        generate_same(m, PROMPT, 2, 6, what, NULL); /* short context: verification in single steps */
        int32_t ids[13];
        memcpy(ids, PROMPT, sizeof PROMPT);
        memcpy(ids + 8, greedy, 5 * sizeof(int32_t));
        step_vs_tokens(m, ids, 8, 5, what);
        step_vs_tokens(m, ids, 2, 5, what);
        rollback_exact(m, greedy, what);
        snapshot_exact(m, greedy, what);
        batch_run(m, greedy, what, false);
        const dsv4_kernel_set *ks = dsv4_kernels();
        dsv4_kernels_use(&dsv4_kernels_portable);
        batch_run(m, greedy, what, true);
        dsv4_kernels_use(ks);
        dsv4_model_close(m);
    }
    return check_done("test_speculative");
}
