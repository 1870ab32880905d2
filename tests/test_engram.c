/* test_engram.c: Engram's hashing, its constants and its vocabulary, piece by piece.
 *
 *  1. The rolling-XOR n-gram hash on a short id sequence with small constants, every row
 *     worked out by hand below, including the look-back padding at the sequence start.
 *  2. The hash multipliers (numpy's default_rng(10007 * layer), re-implemented) against the
 *     values the official code produced: the tiny reference checkpoint's
 *     engram_hash_constants.json, and the DeepSeek-V4.1-Flash values quoted in the spec.
 *  3. The prime walk against the same two sources (and V4.1-Flash's table sizes, which are
 *     the sums of each layer's primes).
 *  4. The compressed vocabulary of the reference checkpoints' synthetic tokenizer (built
 *     through the ICU normaliser) against engram_token_map.npy, and a few normaliser cases
 *     whose result the Unicode standard fixes.
 *  5. The three table placements (memory map with read-ahead, RAM, memory map read at the
 *     layer) give bit-identical logits on the tiny reference checkpoint.
 * The full 129,280-id vocabulary is checked against Hugging Face by engram_vocab_oracle. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dsv4.h"
#include "io/npy.h"
#include "model/engram.h"
#include "text/normalize.h"

/* 1. Orders 2 and 3 (max_ngram 3), 2 heads, multipliers m = (3, 5, 7), primes (11, 13) for
 * order 2 and (17, 19) for order 3, so offsets 0, 11, 24, 41; pad id 2; compressed ids
 * c = (4, 1, 6). With tok_s = c[t-s] (pad before the start):
 *   t=0: tok = (4, 2, 2)  h2 = 4*3 ^ 2*5 = 12 ^ 10 = 6     h3 = 6 ^ 2*7 = 6 ^ 14 = 8
 *        rows 0+6%11=6, 11+6%13=17, 24+8%17=32, 41+8%19=49
 *   t=1: tok = (1, 4, 2)  h2 = 3 ^ 20 = 23                 h3 = 23 ^ 14 = 25
 *        rows 0+23%11=1, 11+23%13=21, 24+25%17=32, 41+25%19=47
 *   t=2: tok = (6, 1, 4)  h2 = 18 ^ 5 = 23                 h3 = 23 ^ 28 = 11
 *        rows 1, 21, 24+11=35, 41+11=52 */
static void test_hand_hash(void) {
    const int64_t mult[3] = {3, 5, 7}, primes[4] = {11, 13, 17, 19}, offsets[4] = {0, 11, 24, 41};
    const int32_t c[3] = {4, 1, 6};
    const int64_t want[3][4] = {{6, 17, 32, 49}, {1, 21, 32, 47}, {1, 21, 35, 52}};
    for (int t = 0; t < 3; t++) {
        int64_t rows[4];
        dsv4_engram_hash(c, t, 3, 2, 2, mult, primes, offsets, rows);
        for (int k = 0; k < 4; k++)
            CHECK(rows[k] == want[t][k], "hand hash: position %d column %d: %lld, expected %lld", t, k, (long long)rows[k],
                  (long long)want[t][k]);
    }
}

/* 2. + 3. against the tiny checkpoint's constants (written by the official code). */
static void test_reference_constants(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/refvectors-v41/models/tiny_v41flash/engram_hash_constants.json", DSV4_SHARED);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    CHECK(j != NULL, "cannot read %s: %s", path, err.text);
    if (!j) return;
    int vocab = (int)json_integer_value(json_object_get(j, "compressed_vocab_size"));
    json_t *layers = json_object_get(j, "layer_ids"), *mults = json_object_get(j, "multipliers");
    json_t *primes = json_object_get(j, "primes"), *offsets = json_object_get(j, "offsets");
    int n_layers = (int)json_array_size(layers), n_heads = 2, max_ngram = 4, n_cols = (max_ngram - 1) * n_heads;
    int64_t walk[2 * 6];
    dsv4_engram_primes(n_layers, max_ngram, n_heads, 2000, walk);
    for (int l = 0; l < n_layers; l++) {
        int layer = (int)json_integer_value(json_array_get(layers, (size_t)l));
        int64_t m[4];
        CHECK(dsv4_engram_multipliers(layer, max_ngram, vocab, m) == DSV4_OK, "multipliers: %s", dsv4_errmsg());
        for (int k = 0; k < max_ngram; k++) {
            long long want = json_integer_value(json_array_get(json_array_get(mults, (size_t)l), (size_t)k));
            CHECK(m[k] == want, "layer %d multiplier %d: %lld, the official code gives %lld", layer, k, (long long)m[k], want);
        }
        int64_t sum = 0;
        for (int k = 0; k < n_cols; k++) {
            json_t *po = json_array_get(json_array_get(primes, (size_t)l), (size_t)(k / n_heads));
            long long want = json_integer_value(json_array_get(po, (size_t)(k % n_heads)));
            long long off = json_integer_value(json_array_get(json_array_get(offsets, (size_t)l), (size_t)k));
            CHECK(walk[l * n_cols + k] == want, "layer %d prime %d: %lld, the official code gives %lld", layer, k,
                  (long long)walk[l * n_cols + k], want);
            CHECK(sum == off, "layer %d offset %d: %lld, the official code gives %lld", layer, k, (long long)sum, off);
            sum += walk[l * n_cols + k];
        }
    }
    json_decref(j);
}

/* DeepSeek-V4.1-Flash (spec v41-model.md section 4.2): layers 1 and 14, compressed vocabulary
 * 99092, 8 heads of orders 2..4, primes from 16,000,000. */
static void test_flash_constants(void) {
    const int64_t want_mult[2][4] = {{76632096046245, 4839876093313, 35959672319349, 73987337458391},
                                     {67716810739261, 51510806800915, 30921347202721, 82619226485591}};
    const int layers[2] = {1, 14};
    for (int l = 0; l < 2; l++) {
        int64_t m[4];
        CHECK(dsv4_engram_multipliers(layers[l], 4, 99092, m) == DSV4_OK, "multipliers: %s", dsv4_errmsg());
        for (int k = 0; k < 4; k++)
            CHECK(m[k] == want_mult[l][k], "V4.1-Flash layer %d multiplier %d: %lld, expected %lld", layers[l], k,
                  (long long)m[k], (long long)want_mult[l][k]);
    }
    int64_t p[48];
    dsv4_engram_primes(2, 4, 8, 16000000, p);
    const int64_t first[2][3] = {{16000057, 16000189, 16000339}, {16000477, 16000667, 16000781}};
    const int64_t last[2][3] = {{16000183, 16000321, 16000463}, {16000627, 16000769, 16000889}};
    const int64_t rows[2] = {384006168, 384016682};
    for (int l = 0; l < 2; l++) {
        int64_t sum = 0;
        for (int k = 0; k < 24; k++) sum += p[l * 24 + k];
        CHECK(sum == rows[l], "V4.1-Flash layer %d: primes sum to %lld, its table has %lld rows", layers[l], (long long)sum,
              (long long)rows[l]);
        for (int o = 0; o < 3; o++) {
            CHECK(p[l * 24 + o * 8] == first[l][o], "V4.1-Flash layer %d order %d first prime %lld", layers[l], o + 2,
                  (long long)p[l * 24 + o * 8]);
            CHECK(p[l * 24 + o * 8 + 7] == last[l][o], "V4.1-Flash layer %d order %d last prime %lld", layers[l], o + 2,
                  (long long)p[l * 24 + o * 8 + 7]);
        }
    }
}

/* 4. The synthetic tokenizer's map, through the normaliser, is the one the reference used. */
static void test_synthetic_map(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/refvectors-v41/models/tiny_v41flash/engram_token_map.npy", DSV4_SHARED);
    int64_t *want, shape[8];
    int nd;
    if (dsv4_npy_read_i64(path, &want, &nd, shape)) {
        CHECK(0, "%s", dsv4_errmsg());
        return;
    }
    int32_t *map;
    int n;
    CHECK(dsv4_engram_token_map_synthetic((int)shape[0], &map, &n) == DSV4_OK, "synthetic map: %s", dsv4_errmsg());
    CHECK(n == 173, "synthetic tokenizer: %d compressed ids, the reference has 173", n);
    int bad = 0;
    for (int i = 0; i < shape[0]; i++) bad += map[i] != want[i];
    CHECK(bad == 0, "synthetic tokenizer: %d of %lld ids map differently from engram_token_map.npy", bad, (long long)shape[0]);
    free(map);
    free(want);
}

static void expect_norm(const char *in, const char *want) {
    char *out;
    size_t n;
    CHECK(dsv4_engram_normalize(in, strlen(in), &out, &n) == DSV4_OK, "normalize: %s", dsv4_errmsg());
    CHECK(!strcmp(out, want), "normalize(\"%s\") = \"%s\", expected \"%s\"", in, out, want);
    free(out);
}

static void test_normalizer(void) {
    expect_norm("  H\xc3\xa9llo\tWORLD \n", "hello world");  /* accents, case, whitespace runs, strip */
    expect_norm(" ", " ");                                    /* a lone space survives (the sentinel) */
    expect_norm("\n\t", " ");                                 /* ... also when it came from a run */
    expect_norm("\xef\xac\x81", "fi");                        /* U+FB01 ligature: NFKC compatibility */
    expect_norm("\xef\xbd\x9c", "|");                         /* fullwidth vertical line */
    expect_norm("\xc4\xb0", "i");                              /* U+0130: NFD splits off the dot, a mark */
    expect_norm("\xce\xa3\xce\xa3", "\xcf\x83\xcf\x83");      /* capital sigma: no final-sigma context */
    expect_norm("a\xc2\xa0" "b", "a b");                      /* no-break space: NFKC makes it a space */
}

static void test_placements(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/refvectors-v41/models/tiny_v41flash", DSV4_SHARED);
    const int32_t ids[16] = {116, 278, 343, 231, 30, 332, 42, 468, 94, 19, 223, 112, 391, 222, 232, 43};
    float *got[3] = {0};
    for (int k = 0; k < 3; k++) {
        dsv4_open_opts o = {0};
        o.engram_ram = k == 1;
        o.engram_sync = k == 2;
        dsv4_model *m;
        dsv4_session *s;
        if (dsv4_model_open(dir, &o, &m) || dsv4_session_new(m, 32, &s)) {
            CHECK(0, "open %s: %s", dir, dsv4_errmsg());
            return;
        }
        int V = dsv4_model_vocab(m);
        got[k] = malloc((size_t)16 * V * sizeof(float));
        CHECK(!dsv4_forward(s, ids, 12, DSV4_LOGITS_ALL, got[k]), "prefill: %s", dsv4_errmsg());
        for (int t = 12; t < 16; t++) CHECK(!dsv4_forward(s, ids + t, 1, DSV4_LOGITS_ALL, got[k] + (size_t)t * V), "decode");
        if (k) CHECK(!memcmp(got[0], got[k], (size_t)16 * V * sizeof(float)), "placement %d gives other logits", k);
        dsv4_session_free(s);
        dsv4_model_close(m);
    }
    for (int k = 0; k < 3; k++) free(got[k]);
}

/* numpy's bounded integers on every path (values printed by numpy 1.24's
 * np.random.default_rng(seed).integers(0, high, n)): 32-bit Lemire with rejections, the full
 * 32-bit range, 64-bit Lemire, and the degenerate range. */
static void test_numpy_integers(void) {
    static const struct {
        uint64_t seed;
        int64_t high;
        int n;
        int64_t want[8];
    } cases[] = {
        {7, 1000, 5, {944, 625, 684, 897, 578}},
        {5, 2, 6, {1, 1, 0, 1, 0, 1}},
        {10007, 3221225473LL, 8, {483169958, 2652043824LL, 1997018920, 167495920, 1764548960, 964627058, 2560515391LL, 991374426}},
        {7, 4294967296LL, 3, {4058335883LL, 2684764585LL, 2938530453LL}},
        {7, 1099511627776LL, 3, {687299734001LL, 986497006767LL, 852875435924LL}},
        {3, 1, 4, {0, 0, 0, 0}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t got[8];
        CHECK(dsv4_numpy_integers(cases[c].seed, cases[c].high, cases[c].n, got) == DSV4_OK, "integers: %s", dsv4_errmsg());
        for (int i = 0; i < cases[c].n; i++)
            CHECK(got[i] == cases[c].want[i], "numpy integers seed %llu high %lld [%d]: %lld, numpy gives %lld",
                  (unsigned long long)cases[c].seed, (long long)cases[c].high, i, (long long)got[i],
                  (long long)cases[c].want[i]);
    }
    int64_t x;
    CHECK(dsv4_numpy_integers(1, 0, 1, &x) != DSV4_OK, "a bound of 0 is refused");
}

int main(void) {
    test_hand_hash();
    test_reference_constants();
    test_flash_constants();
    test_numpy_integers();
    test_synthetic_map();
    test_normalizer();
    test_placements();
    return check_done("test_engram");
}
