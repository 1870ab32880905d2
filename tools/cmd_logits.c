/* cmd_logits.c: `dsv4 logits`, next-token logits of a token list as a .npy file.
 *
 * Row i of the output holds the logits after ids[0..i]. The feeding path is selectable so
 * that every path of the engine can be checked against the reference vectors:
 *   (default)   one call with all tokens (prefill)
 *   --chunk N   N tokens per call (1 = token by token)
 *   --split K   the first K tokens in one call, then one at a time
 *   --mtp       the MTP block's logits instead: [T-1, vocab], row i fed the final streams at
 *               position i and ids[i+1] (so it predicts ids[i+2]); fed along the same path. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "io/npy.h"

static const char *usage =
    "usage: dsv4 logits [-m DIR] --ids 0,17,42,...|@FILE.json --out FILE.npy\n"
    "                   [--chunk N | --split K] [--mtp] [--numerics exact|default] [--threads N]\n";

int cmd_logits(int argc, char **argv) {
    const char *cmd = "logits", *dir = NULL, *ids_spec = NULL, *out = NULL;
    long long chunk = 0, split = -1;
    bool mtp = false;
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
        } else if (cli_is(a, NULL, "--chunk")) {
            if (!cli_int(cli_value(argc, argv, &i), 1, 1 << 30, &chunk)) return cli_fail(cmd, "--chunk needs a positive integer"), 2;
        } else if (cli_is(a, NULL, "--split")) {
            if (!cli_int(cli_value(argc, argv, &i), 0, 1 << 30, &split)) return cli_fail(cmd, "--split needs a non-negative integer"), 2;
        } else if (cli_is(a, NULL, "--mtp")) {
            mtp = true;
        } else {
            fputs(usage, stderr);
            return cli_fail(cmd, "unknown option %s", a), 2;
        }
    }
    if (!ids_spec || !out) {
        fputs(usage, stderr);
        return 2;
    }
    if (chunk && split >= 0) return cli_fail(cmd, "--chunk and --split are exclusive"), 2;
    if (!dir) dir = cli_default_model();
    int *ids32 = NULL, T = 0;
    if (!cli_parse_ids(cmd, ids_spec, &ids32, &T)) return 2;
    if (T == 0) {
        free(ids32);
        return cli_fail(cmd, "--ids is empty"), 2;
    }
    dsv4_model *m;
    if (dsv4_model_open(dir, &opts, &m)) {
        free(ids32);
        return cli_fail_lib(cmd, NULL);
    }
    int rc = 0;
    int V = dsv4_model_vocab(m), hc = dsv4_model_hc(m), d = dsv4_model_dim(m);
    if (mtp && !dsv4_model_has_mtp(m)) {
        rc = cli_fail(cmd, "%s has no MTP block", dir);
        goto done;
    }
    if (mtp && T < 2) {
        rc = cli_fail(cmd, "--mtp needs at least 2 ids");
        goto done;
    }
    dsv4_session *s = NULL;
    float *logits = malloc((size_t)T * V * sizeof(float));
    float *hidden = mtp ? malloc((size_t)T * hc * d * sizeof(float)) : NULL;
    if (!logits || (mtp && !hidden)) {
        rc = cli_fail(cmd, "out of memory for %d x %d logits", T, V);
        goto free_bufs;
    }
    if (dsv4_session_new(m, T + 1, &s)) {
        rc = cli_fail_lib(cmd, NULL);
        goto free_bufs;
    }
    /* the sizes of successive calls */
    int step_first = chunk ? (int)chunk : split >= 0 ? (int)(split ? split : 1) : T;
    int step_rest = chunk ? (int)chunk : split >= 0 ? 1 : T;
    for (int p = 0; p < T && !rc;) {
        int n = p == 0 ? step_first : step_rest;
        if (n > T - p) n = T - p;
        dsv4_batch_item it = {s, ids32 + p, n, DSV4_LOGITS_ALL, logits + (size_t)p * V,
                              hidden ? hidden + (size_t)p * hc * d : NULL};
        if (dsv4_forward_batch(m, &it, 1)) rc = cli_fail_lib(cmd, "forward");
        p += n;
    }
    int rows = T;
    if (!rc && mtp) {
        /* the MTP block over positions 0..T-2, fed along the same path */
        rows = T - 1;
        for (int p = 0; p < rows && !rc;) {
            int n = p == 0 ? step_first : step_rest;
            if (n > rows - p) n = rows - p;
            if (dsv4_mtp_forward(s, hidden + (size_t)p * hc * d, ids32 + p + 1, n, logits + (size_t)p * V))
                rc = cli_fail_lib(cmd, "MTP forward");
            p += n;
        }
    }
    if (!rc) {
        int64_t shape[2] = {rows, V};
        if (dsv4_npy_write_f32(out, logits, 2, shape)) rc = cli_fail_lib(cmd, NULL);
    }
free_bufs:
    dsv4_session_free(s);
    free(logits);
    free(hidden);
done:
    dsv4_model_close(m);
    free(ids32);
    return rc;
}
