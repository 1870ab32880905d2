/* cmd_grad.c: `dsv4 grad`, the loss of a token sequence and its gradient w.r.t. every weight.
 *
 * One training forward over the ids (a one-shot prefill from position 0, exact fp32 numerics,
 * the weights dequantised from whatever format they are stored in) and its backward. The loss
 * is L = mean_{i<T-1} CE(logits_i, ids[i+1]), or with --mtp the MTP block's
 * L_mtp = mean_{i<T-2} CE(mtp_logits_i, ids[i+2]) (row i fed the final streams at position i
 * and ids[i+1]), or with --indexer the lightning indexers' KL loss toward the main attention
 * (src/train/indexer_train.c; it trains only the indexers' parameters). Expert choices and
 * the indexer's top-k are taken as the forward makes them.
 * The gradient is written as F32 safetensors under the official tensor names; tensors whose
 * gradient is exactly zero (the indexer's, gate.bias, and for L every mtp.* tensor) are left
 * out, as in the reference files.
 *
 * --ref FILE compares the gradient (as written to --out, when given) with a reference file
 * tensor by tensor: the relative L2 error ||got - ref|| / ||ref|| must be <= --rtol (default
 * 1e-4); a reference tensor we lack, or a non-zero tensor the reference lacks, fails. The exit
 * status says whether all passed; -v lists every tensor's error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "commands.h"
#include "io/safetensors.h"
#include "train/train.h"

static const char *usage =
    "usage: dsv4 grad [-m DIR] --ids 0,17,42,...|@FILE.json [--out GRADS.safetensors] [--mtp | --indexer]\n"
    "                 [--ref REF.safetensors [--rtol 1e-4] [-v]] [--threads N]\n";

static bool all_zero(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0.0f) return false;
    return true;
}

/* The gradient we computed, by name: from the file we wrote (so the comparison covers the
 * writer too) or, without one, from memory. */
typedef struct got_set {
    const dsv4_tmodel *tm;
    const dsv4_st *file;
} got_set;

static const float *got_find(const got_set *g, const char *name, size_t *n) {
    if (g->file) {
        const dsv4_tensor *t = dsv4_st_find(g->file, name);
        if (!t || t->dtype != DSV4_DT_F32) return NULL;
        *n = (size_t)dsv4_tensor_numel(t);
        return t->data;
    }
    const dsv4_tparam *p = dsv4_tmodel_find(g->tm, name);
    if (!p || all_zero(g->tm->grads + p->off, p->n)) return NULL;
    *n = p->n;
    return g->tm->grads + p->off;
}

/* Compare our gradients with the reference file; prints a line per failing tensor and a
 * summary; returns the exit status. */
static int compare_ref(const char *cmd, const got_set *got, const char *path, double rtol, bool verbose) {
    dsv4_st *ref;
    if (dsv4_st_open_file(path, &ref)) return cli_fail_lib(cmd, NULL);
    int failures = 0, compared = 0;
    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < dsv4_st_count(ref); i++) {
        const dsv4_tensor *t = dsv4_st_at(ref, i);
        size_t n = 0;
        const float *g = got_find(got, t->name, &n);
        if (!g) {
            printf("FAIL %s: in the reference, missing from ours\n", t->name);
            failures++;
            continue;
        }
        if (t->dtype != DSV4_DT_F32 || (size_t)dsv4_tensor_numel(t) != n) {
            printf("FAIL %s: reference is %s with %lld values, ours F32 with %zu\n", t->name, dsv4_dtype_name(t->dtype),
                   (long long)dsv4_tensor_numel(t), n);
            failures++;
            continue;
        }
        double num = 0.0, den = 0.0;
        for (size_t j = 0; j < n; j++) {
            float r, v;
            memcpy(&r, (const char *)t->data + 4 * j, 4);
            memcpy(&v, (const char *)g + 4 * j, 4);
            num += ((double)v - r) * ((double)v - r);
            den += (double)r * r;
        }
        double err = den > 0 ? sqrt(num / den) : sqrt(num);
        compared++;
        if (err > worst) {
            worst = err;
            worst_name = t->name;
        }
        if (!(err <= rtol)) {
            printf("FAIL %s: relative L2 error %.3g > %.3g\n", t->name, err, rtol);
            failures++;
        } else if (verbose) {
            printf("ok   %s: relative L2 error %.3g\n", t->name, err);
        }
    }
    /* ours, absent from the reference: fine only when all zero */
    int n_ours = got->file ? dsv4_st_count(got->file) : got->tm->n_table;
    for (int i = 0; i < n_ours; i++) {
        const char *name = got->file ? dsv4_st_at(got->file, i)->name : got->tm->table[i].name;
        size_t n = 0;
        const float *g = got_find(got, name, &n);
        if (g && !dsv4_st_find(ref, name) && !all_zero(g, n)) {
            printf("FAIL %s: non-zero gradient, absent from the reference\n", name);
            failures++;
        }
    }
    printf("compared %d tensors with %s: worst relative L2 error %.3g (%s), %d failures\n", compared, path, worst,
           worst_name, failures);
    dsv4_st_close(ref);
    return failures ? 1 : 0;
}

int cmd_grad(int argc, char **argv) {
    const char *cmd = "grad", *dir = NULL, *ids_spec = NULL, *out = NULL, *ref = NULL;
    bool mtp = false, indexer = false, verbose = false;
    double rtol = 1e-4;
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
        } else if (cli_is(a, NULL, "--ids")) {
            if (!(ids_spec = cli_value(argc, argv, &i))) return cli_fail(cmd, "--ids needs a list"), 2;
        } else if (cli_is(a, "-o", "--out")) {
            if (!(out = cli_value(argc, argv, &i))) return cli_fail(cmd, "--out needs a file"), 2;
        } else if (cli_is(a, NULL, "--ref")) {
            if (!(ref = cli_value(argc, argv, &i))) return cli_fail(cmd, "--ref needs a file"), 2;
        } else if (cli_is(a, NULL, "--rtol")) {
            if (!cli_float(cli_value(argc, argv, &i), &rtol) || !(rtol >= 0)) return cli_fail(cmd, "--rtol needs a number >= 0"), 2;
        } else if (cli_is(a, NULL, "--mtp")) {
            mtp = true;
        } else if (cli_is(a, NULL, "--indexer")) {
            indexer = true;
        } else if (cli_is(a, "-v", "--verbose")) {
            verbose = true;
        } else {
            fputs(usage, stderr);
            return cli_fail(cmd, "unknown option %s", a), 2;
        }
    }
    if (!ids_spec || (!out && !ref)) {
        fputs(usage, stderr);
        return 2;
    }
    if (mtp && indexer) return cli_fail(cmd, "--mtp and --indexer are exclusive"), 2;
    if (!dir) dir = cli_default_model();
    int *ids = NULL, T = 0;
    if (!cli_parse_ids(cmd, ids_spec, &ids, &T)) return 2;
    if (T < (mtp ? 3 : 2)) {
        free(ids);
        return cli_fail(cmd, "--ids needs at least %d tokens for a loss", mtp ? 3 : 2), 2;
    }
    opts.numerics = DSV4_NUMERICS_EXACT;
    dsv4_model *m = NULL;
    dsv4_tmodel *tm = NULL;
    dsv4_tape *tp = NULL;
    int rc = 0;
    double t0 = dsv4_now();
    if (dsv4_model_open(dir, &opts, &m) || dsv4_tmodel_from_model(m, &tm)) {
        rc = cli_fail_lib(cmd, NULL);
        goto done;
    }
    dsv4_model_close(m); /* the training model holds its own fp32 copies */
    m = NULL;
    if (mtp && !tm->model.mtp) {
        rc = cli_fail(cmd, "%s has no MTP block", dir);
        goto done;
    }
    if (!(tp = dsv4_tape_new())) {
        rc = cli_fail(cmd, "out of memory");
        goto done;
    }
    double t1 = dsv4_now();
    dsv4_loss_opts lo = {.main = mtp || indexer ? 0.0f : 1.0f, .mtp = mtp ? 1.0f : 0.0f, .indexer = indexer ? 1.0f : 0.0f};
    dsv4_losses losses;
    if (dsv4_train_forward(tm, tp, (const int32_t *)ids, T, &lo, &losses)) {
        rc = cli_fail_lib(cmd, "forward");
        goto done;
    }
    double t2 = dsv4_now();
    dsv4_tmodel_zero_grad(tm);
    if (dsv4_train_backward(tm, tp)) {
        rc = cli_fail_lib(cmd, "backward");
        goto done;
    }
    double t3 = dsv4_now();
    if (mtp) printf("loss_mtp %.9g\n", losses.mtp);
    else if (indexer) printf("loss_indexer %.9g\n", losses.indexer);
    else printf("loss %.9g\n", losses.main);
    fprintf(stderr, "dsv4 grad: %d tokens, load %.2f s, forward %.2f s, backward %.2f s (%d threads)\n", T, t1 - t0,
            t2 - t1, t3 - t2, dsv4_threads());
    if (out && dsv4_tmodel_write(tm, out, true, true)) {
        rc = cli_fail_lib(cmd, NULL);
        goto done;
    }
    if (ref) {
        got_set got = {tm, NULL};
        dsv4_st *file = NULL;
        if (out && dsv4_st_open_file(out, &file)) {
            rc = cli_fail_lib(cmd, NULL);
            goto done;
        }
        got.file = file;
        rc = compare_ref(cmd, &got, ref, rtol, verbose);
        dsv4_st_close(file);
    }
done:
    dsv4_tape_free(tp);
    dsv4_tmodel_free(tm);
    dsv4_model_close(m);
    free(ids);
    return rc;
}
