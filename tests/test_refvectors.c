/* test_refvectors.c: the engine against DeepSeek's official logits (../shared/refvectors).
 *
 * For every case and variant listed in index.json, every path is run through the library
 * exactly as `dsv4 logits` runs it: one-shot prefill, token by token (decode), the split path
 * (chunked_prefill_len tokens, then one at a time) and the MTP block; each array is compared
 * with the reference of the same name using the rule tolerances.json gives for it:
 *   tight: max |got - ref| <= atol over all elements;
 *   stat:  share of positions whose arg-max agrees >= min_top1, and the median over positions
 *          of the per-position max |got - ref| <= max_median.
 * Variant bf16-fp32-noqat is computed in exact numerics, the fp8 variants in default numerics.
 *
 * The bounds of tolerances.json are used as given, with one documented exception: for the
 * fp8-fp32 arrays whose reference does not agree with itself (long1000, where DeepSeek's own
 * prefill and decode paths differ by a median of 0.095) the official code itself, run on a
 * different CPU, lands further away than the given bound; see docs/numerics.md for the
 * measurements. For those arrays the bound is derived with the same rule from the official
 * code's cross-machine agreement (OVERRIDE below), and the engine must also agree with the
 * reference exactly up to the first FP8 rounding flip (the leading positions within 1e-3).
 * The short32 fp8-fp32 main arrays get the same treatment from a different measurement: the
 * spread of an exact engine over legitimate orders of its fp32 sums (the SIMD kernels sum in
 * another order than the portable one). Those summation-order entries are ignored when
 * DSV4_REF_STRICT is set: CTest runs the test a second time that way with the portable kernels
 * (the definition the SIMD kernels are tested against), which meet the given bounds.
 *
 * Usage: test_refvectors [REFVECTORS_DIR] (default DSV4_SHARED/refvectors); DSV4_REF_CASE
 * limits the run to one case (e.g. short32) for quick checks. */
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dsv4.h"
#include "io/npy.h"
#include "refcompare.h"

static inline int DSV4_MIN_I(int a, int b) { return a < b ? a : b; }

static metrics compare(const float *got, const float *ref, int rows, int V) {
    return compare_grouped(got, ref, rows, V, 1);
}

/* Run one path. chunk = tokens per call (0 = all at once); split = first call size (-1: none). */
static int run_path(dsv4_model *model, const int32_t *ids, int T, int chunk, int split, int mtp, float *logits) {
    int V = dsv4_model_vocab(model), hc = dsv4_model_hc(model), d = dsv4_model_dim(model);
    dsv4_session *s;
    if (dsv4_session_new(model, T + 1, &s)) return -1;
    float *hidden = mtp ? malloc((size_t)T * hc * d * sizeof(float)) : NULL;
    int first = split >= 0 ? split : chunk ? chunk : T, rest = split >= 0 ? 1 : chunk ? chunk : T;
    int rc = 0;
    for (int p = 0; p < T && !rc;) {
        int n = DSV4_MIN_I(p == 0 ? first : rest, T - p);
        dsv4_batch_item it = {s, ids + p, n, mtp ? DSV4_LOGITS_NONE : DSV4_LOGITS_ALL, logits + (size_t)p * V,
                              hidden ? hidden + (size_t)p * hc * d : NULL};
        if (dsv4_forward_batch(model, &it, 1)) rc = -1;
        p += n;
    }
    for (int p = 0; mtp && p < T - 1 && !rc;) {
        int n = DSV4_MIN_I(p == 0 ? first : rest, T - 1 - p);
        if (dsv4_mtp_forward(s, hidden + (size_t)p * hc * d, ids + p + 1, n, logits + (size_t)p * V)) rc = -1;
        p += n;
    }
    free(hidden);
    dsv4_session_free(s);
    return rc;
}

/* Arrays whose official bound the official code itself misses on another CPU, or that a
 * correct engine misses with another (equally exact) order of its fp32 sums (docs/numerics.md).
 * `lead`: leading positions that must still agree within 1e-3 (before any rounding flip). */
static const struct {
    const char *c, *v, *array;
    double min_top1, max_median;
    int lead;
    int order; /* 1: a summation-order allowance (not applied in strict runs) */
} OVERRIDE[] = {
    /* official code here vs the reference: top-1 82.5 %, median 0.262 -> 78.5 %, 0.393 */
    {"long1000", "fp8-fp32", "logits_prefill", 0.785, 0.393, 16, 0},
    /* the decode kernels' order flips a rounding at position 2 (docs/numerics.md) */
    {"long1000", "fp8-fp32", "logits_decode", 0.785, 0.393, 0, 1},
    {"long1000", "fp8-fp32", "logits_decode", 0.785, 0.393, 16, 0},
    {"long1000", "fp8-fp32", "logits_chunked", 0.785, 0.393, 16, 0},
    /* official MTP here: 77.98 %, 0.320 -> 73.98 %, 0.480 */
    {"long1000", "fp8-fp32", "mtp_logits_prefill", 0.7398, 0.480, 0, 0},
    /* official MTP here: 96.77 %, 0.0742 -> 0.93 (the given bound), 0.111 */
    {"short32", "fp8-fp32", "mtp_logits_prefill", 0.93, 0.111, 0, 0},
    /* fp32 sums in other orders (sequential, 16 lanes, blocked, in double): worst 90.6 %,
     * 0.124 -> 86.6 %, 0.186; every order flips the rounding at position 0 */
    {"short32", "fp8-fp32", "logits_prefill", 0.866, 0.186, 0, 1},
    {"short32", "fp8-fp32", "logits_decode", 0.866, 0.186, 0, 1},
    {"short32", "fp8-fp32", "logits_chunked", 0.866, 0.186, 0, 1},
};

int main(int argc, char **argv) {
    char base[4096];
    snprintf(base, sizeof base, "%s", argc > 1 ? argv[1] : DSV4_SHARED "/refvectors");
    const char *only = getenv("DSV4_REF_CASE");
    char path[16384];
    snprintf(path, sizeof path, "%s/index.json", base);
    json_error_t err;
    json_t *index = json_load_file(path, 0, &err);
    CHECK(index != NULL, "cannot read %s: %s", path, err.text);
    snprintf(path, sizeof path, "%s/tolerances.json", base);
    json_t *tol = json_load_file(path, 0, &err);
    CHECK(tol != NULL, "cannot read %s: %s", path, err.text);
    if (!index || !tol) return check_done("test_refvectors");

    const char *arrays[] = {"logits_prefill", "logits_decode", "logits_chunked", "mtp_logits_prefill"};
    const char *cname;
    json_t *cval;
    json_object_foreach(json_object_get(index, "cases"), cname, cval) {
        if (only && strcmp(only, cname)) continue;
        int split = (int)json_integer_value(json_object_get(cval, "chunked_prefill_len"));
        const char *vname;
        json_t *vval;
        json_object_foreach(json_object_get(cval, "variants"), vname, vval) {
            char dir[8192], mdir[8192];
            snprintf(dir, sizeof dir, "%s/%s", base, json_string_value(json_object_get(vval, "dir")));
            snprintf(mdir, sizeof mdir, "%s/%s", base, json_string_value(json_object_get(vval, "model")));
            dsv4_open_opts opts = {0};
            opts.numerics = !strcmp(vname, "bf16-fp32-noqat") ? DSV4_NUMERICS_EXACT : DSV4_NUMERICS_DEFAULT;
            dsv4_model *model;
            if (dsv4_model_open(mdir, &opts, &model)) {
                CHECK(0, "open %s: %s", mdir, dsv4_errmsg());
                continue;
            }
            snprintf(path, sizeof path, "%s/ids.json", dir);
            json_t *jids = json_load_file(path, 0, &err);
            int T = (int)json_array_size(jids), V = dsv4_model_vocab(model);
            int32_t *ids = malloc((size_t)T * sizeof(int32_t));
            for (int i = 0; i < T; i++) ids[i] = (int32_t)json_integer_value(json_array_get(jids, (size_t)i));
            json_decref(jids);
            float *got = malloc((size_t)T * V * sizeof(float));
            for (int a = 0; a < 4; a++) {
                json_t *rule = json_object_get(json_object_get(json_object_get(json_object_get(tol, "cases"), cname), vname), arrays[a]);
                if (!rule) continue;
                snprintf(path, sizeof path, "%s/%s.npy", dir, arrays[a]);
                float *ref;
                int nd;
                int64_t shape[8];
                if (dsv4_npy_read_f32(path, &ref, &nd, shape)) {
                    CHECK(0, "%s", dsv4_errmsg());
                    continue;
                }
                int rc = a == 0 ? run_path(model, ids, T, 0, -1, 0, got)
                       : a == 1 ? run_path(model, ids, T, 1, -1, 0, got)
                       : a == 2 ? run_path(model, ids, T, 0, split, 0, got)
                                : run_path(model, ids, T, 0, -1, 1, got);
                CHECK(rc == 0, "%s %s %s: forward failed: %s", cname, vname, arrays[a], dsv4_errmsg());
                int rows = a == 3 ? T - 1 : T;
                CHECK(nd == 2 && shape[0] == rows && shape[1] == V, "%s: unexpected shape", path);
                if (rc || nd != 2 || shape[0] != rows || shape[1] != V) {
                    free(ref);
                    continue;
                }
                metrics mt = compare(got, ref, rows, V);
                const char *mode = json_string_value(json_object_get(rule, "mode"));
                printf("%-9s %-16s %-19s max %.3g median %.3g top1 %.4f first>1e-3 %d", cname, vname, arrays[a], mt.max_abs,
                       mt.median, mt.top1, mt.first_over);
                if (mode && !strcmp(mode, "tight")) {
                    double atol = json_number_value(json_object_get(rule, "atol"));
                    printf("  [tight %.3g]\n", atol);
                    CHECK(mt.max_abs <= atol, "%s %s %s: max |d| %.3g > %.3g", cname, vname, arrays[a], mt.max_abs, atol);
                } else {
                    double min_top1 = json_number_value(json_object_get(rule, "min_top1"));
                    double max_median = json_number_value(json_object_get(rule, "max_median"));
                    const char *note = "";
                    /* a summation-order allowance (unless strict), else a cross-machine bound */
                    int hit = -1;
                    bool strict = getenv("DSV4_REF_STRICT") != NULL;
                    for (int pass = strict ? 0 : 1; pass >= 0 && hit < 0; pass--)
                        for (size_t o = 0; o < sizeof OVERRIDE / sizeof OVERRIDE[0] && hit < 0; o++)
                            if (OVERRIDE[o].order == pass && !strcmp(OVERRIDE[o].c, cname) && !strcmp(OVERRIDE[o].v, vname) &&
                                !strcmp(OVERRIDE[o].array, arrays[a]))
                                hit = (int)o;
                    if (hit >= 0) {
                        min_top1 = OVERRIDE[hit].min_top1;
                        max_median = OVERRIDE[hit].max_median;
                        note = OVERRIDE[hit].order ? " (summation-order bound, docs/numerics.md)"
                                                   : " (cross-machine bound, docs/numerics.md)";
                        /* the leading positions, before any rounding flip, must agree closely */
                        CHECK(mt.first_over < 0 || mt.first_over >= OVERRIDE[hit].lead,
                              "%s %s %s: diverges already at position %d", cname, vname, arrays[a], mt.first_over);
                    }
                    printf("  [stat top1>=%.2f median<=%.3g%s]\n", min_top1, max_median, note);
                    CHECK(mt.top1 >= min_top1, "%s %s %s: top-1 %.4f < %.4f", cname, vname, arrays[a], mt.top1, min_top1);
                    CHECK(mt.median <= max_median, "%s %s %s: median %.4g > %.4g", cname, vname, arrays[a], mt.median, max_median);
                }
                free(ref);
            }
            free(got);
            free(ids);
            dsv4_model_close(model);
        }
    }
    json_decref(index);
    json_decref(tol);
    return check_done("test_refvectors");
}
