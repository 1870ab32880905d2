/* test_train_forward.c: the training forward cannot drift from inference or from DeepSeek's.
 *
 * On the tiny V4-Flash model (FP8/FP4 on disk) and the 160 ids of refvectors/grads/long160:
 *   - the training forward's logits and MTP logits equal the inference engine's exact-mode
 *     prefill (the same library math in the same order: they agree to rounding, <= 1e-5);
 *   - both match DeepSeek's exact-math reference (the first 160 rows of long1000's
 *     bf16-fp32-noqat arrays: every row depends only on the ids up to it) within the atol of
 *     tolerances.json;
 *   - L and L_mtp equal loss.json (torch autograd through the official model.py);
 *   - the training model's own weight views run in the inference engine (tm->model) and give
 *     the same logits, and its weights written as F32 safetensors load back as a model that
 *     does too (the checkpoint path of a trainer). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "check.h"
#include "io/npy.h"
#include "train/train.h"

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* Prefill logits [T, V] and MTP logits [T-1, V] from the inference engine. */
static int engine_logits(dsv4_model *m, const int32_t *ids, int T, float *logits, float *mtp) {
    int hc = dsv4_model_hc(m), d = dsv4_model_dim(m);
    dsv4_session *s;
    if (dsv4_session_new(m, T + 1, &s)) return -1;
    float *hidden = malloc((size_t)T * hc * d * sizeof(float));
    dsv4_batch_item it = {s, ids, T, DSV4_LOGITS_ALL, logits, hidden};
    int rc = dsv4_forward_batch(m, &it, 1) ? -1 : 0;
    if (!rc && mtp && dsv4_mtp_forward(s, hidden, ids + 1, T - 1, mtp)) rc = -1;
    free(hidden);
    dsv4_session_free(s);
    return rc;
}

static double json_number(const char *path, const char *key) {
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    double v = json_number_value(json_object_get(j, key));
    json_decref(j);
    return v;
}

int main(void) {
    const char *model_dir = DSV4_SHARED "/refvectors/models/tiny_v4flash_fp8";
    const char *grads_dir = DSV4_SHARED "/refvectors/grads/long160";
    const char *ref_dir = DSV4_SHARED "/refvectors/cases/long1000/bf16-fp32-noqat";
    char path[4096];
    snprintf(path, sizeof path, "%s/ids.json", grads_dir);
    json_error_t err;
    json_t *jids = json_load_file(path, 0, &err);
    CHECK(json_is_array(jids), "cannot read %s: %s", path, err.text);
    if (!json_is_array(jids)) return check_done("test_train_forward");
    int T = (int)json_array_size(jids);
    int32_t *ids = malloc((size_t)T * sizeof(int32_t));
    for (int i = 0; i < T; i++) ids[i] = (int32_t)json_integer_value(json_array_get(jids, (size_t)i));
    json_decref(jids);

    dsv4_open_opts opts = {.numerics = DSV4_NUMERICS_EXACT};
    dsv4_model *m;
    if (dsv4_model_open(model_dir, &opts, &m)) {
        CHECK(0, "open %s: %s", model_dir, dsv4_errmsg());
        return check_done("test_train_forward");
    }
    int V = dsv4_model_vocab(m);
    size_t nl = (size_t)T * V, nm = (size_t)(T - 1) * V;
    float *eng = malloc(nl * sizeof(float)), *eng_mtp = malloc(nm * sizeof(float));
    float *view = malloc(nl * sizeof(float)), *reload = malloc(nl * sizeof(float));
    CHECK(engine_logits(m, ids, T, eng, eng_mtp) == 0, "engine prefill: %s", dsv4_errmsg());

    /* the training forward */
    dsv4_tmodel *tm;
    dsv4_tape *tp = dsv4_tape_new();
    CHECK(dsv4_tmodel_from_model(m, &tm) == DSV4_OK, "training model: %s", dsv4_errmsg());
    dsv4_model_close(m);
    dsv4_loss_opts lo = {.main = 1.0f, .mtp = 1.0f};
    dsv4_losses losses;
    CHECK(dsv4_train_forward(tm, tp, ids, T, &lo, &losses) == DSV4_OK, "training forward: %s", dsv4_errmsg());
    double d_main = max_abs_diff(tp->head.logits, eng, nl), d_mtp = max_abs_diff(tp->mtp_head.logits, eng_mtp, nm);
    printf("training vs inference logits: max |d| %.3g, MTP %.3g\n", d_main, d_mtp);
    CHECK(d_main <= 1e-5, "training and inference logits differ by %.3g", d_main);
    CHECK(d_mtp <= 1e-5, "training and inference MTP logits differ by %.3g", d_mtp);

    /* DeepSeek's reference */
    snprintf(path, sizeof path, "%s/tolerances.json", DSV4_SHARED "/refvectors");
    json_t *tol = json_load_file(path, 0, &err);
    json_t *rules = json_object_get(json_object_get(json_object_get(tol, "cases"), "long1000"), "bf16-fp32-noqat");
    const char *arrays[] = {"logits_prefill", "mtp_logits_prefill"};
    const float *ours[] = {tp->head.logits, tp->mtp_head.logits};
    for (int a = 0; a < 2; a++) {
        double atol = json_number_value(json_object_get(json_object_get(rules, arrays[a]), "atol"));
        CHECK(atol > 0, "tolerances.json has no atol for %s", arrays[a]);
        snprintf(path, sizeof path, "%s/%s.npy", ref_dir, arrays[a]);
        float *ref;
        int nd;
        int64_t shape[8];
        if (dsv4_npy_read_f32(path, &ref, &nd, shape)) {
            CHECK(0, "%s", dsv4_errmsg());
            continue;
        }
        int rows = a ? T - 1 : T;
        CHECK(nd == 2 && shape[0] >= rows && shape[1] == V, "%s: unexpected shape", path);
        if (nd == 2 && shape[0] >= rows && shape[1] == V) {
            double d = max_abs_diff(ours[a], ref, (size_t)rows * V);
            printf("training %s vs DeepSeek's (first %d rows): max |d| %.3g (atol %.3g)\n", arrays[a], rows, d, atol);
            CHECK(d <= atol, "%s: max |d| %.3g > %.3g", arrays[a], d, atol);
        }
        free(ref);
    }
    json_decref(tol);

    /* the losses of torch autograd through the official code */
    snprintf(path, sizeof path, "%s/loss.json", grads_dir);
    double want = json_number(path, "loss"), want_mtp = json_number(path, "loss_mtp");
    printf("L %.9g (loss.json %.9g), L_mtp %.9g (loss.json %.9g)\n", losses.main, want, losses.mtp, want_mtp);
    CHECK(fabs(losses.main - want) <= 1e-5, "L = %.9g, loss.json has %.9g", losses.main, want);
    CHECK(fabs(losses.mtp - want_mtp) <= 1e-5, "L_mtp = %.9g, loss.json has %.9g", losses.mtp, want_mtp);
    CHECK(losses.n_main == T - 1 && losses.n_mtp == T - 2, "loss terms %d, %d", losses.n_main, losses.n_mtp);

    /* the inference engine on the training model's weights */
    CHECK(engine_logits(&tm->model, ids, T, view, NULL) == 0, "engine on tm->model: %s", dsv4_errmsg());
    double d_view = max_abs_diff(view, eng, nl);
    printf("inference on the training weights: max |d| %.3g\n", d_view);
    CHECK(d_view <= 1e-5, "inference on the training weights differs by %.3g", d_view);

    /* written as F32 safetensors with the config, loaded back */
    char dir[] = "/tmp/dsv4_train_XXXXXX", cfg_src[4096], cfg_dst[4096], st_path[4096];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(cfg_src, sizeof cfg_src, "%s/config.json", model_dir);
    snprintf(cfg_dst, sizeof cfg_dst, "%s/config.json", dir);
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    FILE *in = fopen(cfg_src, "rb"), *out = fopen(cfg_dst, "wb");
    char buf[4096];
    size_t n;
    while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    if (in) fclose(in);
    if (out) fclose(out);
    CHECK(dsv4_tmodel_write(tm, st_path, false, false) == DSV4_OK, "writing the weights: %s", dsv4_errmsg());
    dsv4_model *m2;
    if (dsv4_model_open(dir, &opts, &m2) == DSV4_OK) {
        CHECK(engine_logits(m2, ids, T, reload, NULL) == 0, "engine on the written weights: %s", dsv4_errmsg());
        double d_reload = max_abs_diff(reload, eng, nl);
        printf("the written weights, reloaded: max |d| %.3g\n", d_reload);
        CHECK(d_reload <= 1e-5, "the written weights give logits %.3g away", d_reload);
        dsv4_model_close(m2);
    } else {
        CHECK(0, "reopening the written weights: %s", dsv4_errmsg());
    }
    unlink(st_path);
    unlink(cfg_dst);
    rmdir(dir);

    dsv4_tape_free(tp);
    dsv4_tmodel_free(tm);
    free(ids), free(eng), free(eng_mtp), free(view), free(reload);
    return check_done("test_train_forward");
}
