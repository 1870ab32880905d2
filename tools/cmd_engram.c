/* cmd_engram.c: `dsv4 engram`, DeepSeek-V4.1's Engram vocabulary and hashing from the shell.
 *
 *   dsv4 engram map --tokenizer FILE [--vocab N]
 *       the compressed id of every token id 0..N-1 (default: the tokenizer's size), one per
 *       line; the number of compressed ids on stderr (99092 for DeepSeek's tokenizer)
 *   dsv4 engram hash -m DIR --ids 1,2,3|@FILE.json
 *       the table rows each position reads, one JSON line per position:
 *       {"pos": t, "rows": [[layer 0 columns...], [layer 1 columns...]]}
 *   dsv4 engram bench -m DIR [-n N] [--prompt P] [--seed S] [model flags]
 *       the decode cost of where the Engram tables live. The model is opened three times:
 *       tables in RAM; tables read through the memory map with read-ahead ("mapped-cold");
 *       the same without read-ahead ("mapped-cold-sync"). Each decodes the same N seeded
 *       random tokens one per step after a P-token prompt (fresh n-grams, so fresh rows), the
 *       three taking turns step by step (so a change in machine load hits all three alike),
 *       and the mapped ones drop their tables from the page cache before every step (so every
 *       row is read from the disk). One JSON line: per placement the median and mean step
 *       time, the median against RAM, the median of the per-step ratios to RAM, and the time
 *       per step the forward pass waited for rows.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "commands.h"
#include "model/engram.h"
#include "model/model.h"
#include "text/tokenizer.h"

static const char *usage = "usage: dsv4 engram map --tokenizer FILE [--vocab N]\n"
                           "       dsv4 engram hash -m DIR --ids LIST|@FILE.json\n"
                           "       dsv4 engram bench -m DIR [-n N] [--prompt P] [--seed S] [--threads N]\n";

static int engram_map(int argc, char **argv) {
    const char *cmd = "engram map", *tok = NULL;
    long long vocab = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], NULL, "--tokenizer")) {
            if (!(tok = cli_value(argc, argv, &i))) return cli_fail(cmd, "--tokenizer needs a file"), 2;
        } else if (cli_is(argv[i], NULL, "--vocab")) {
            if (!cli_int(cli_value(argc, argv, &i), 1, 1 << 24, &vocab)) return cli_fail(cmd, "--vocab needs a positive integer"), 2;
        } else return cli_fail(cmd, "unknown option %s", argv[i]), 2;
    }
    if (!tok) return fputs(usage, stderr), 2;
    if (!vocab) {
        dsv4_tokenizer *t;
        if (dsv4_tokenizer_load(tok, &t)) return cli_fail_lib(cmd, NULL);
        vocab = dsv4_tokenizer_vocab_size(t);
        dsv4_tokenizer_free(t);
    }
    int32_t *map;
    int n;
    if (dsv4_engram_token_map_from_tokenizer(tok, (int)vocab, &map, &n)) return cli_fail_lib(cmd, NULL);
    for (long long i = 0; i < vocab; i++) printf("%d\n", map[i]);
    fprintf(stderr, "compressed vocabulary: %d ids\n", n);
    free(map);
    return 0;
}

static int engram_hash(int argc, char **argv) {
    const char *cmd = "engram hash", *dir = NULL, *spec = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "-m", "--model")) {
            if (!(dir = cli_value(argc, argv, &i))) return cli_fail(cmd, "-m needs a directory"), 2;
        } else if (cli_is(argv[i], NULL, "--ids")) {
            if (!(spec = cli_value(argc, argv, &i))) return cli_fail(cmd, "--ids needs a list"), 2;
        } else return cli_fail(cmd, "unknown option %s", argv[i]), 2;
    }
    if (!dir || !spec) return fputs(usage, stderr), 2;
    int *ids, n;
    if (!cli_parse_ids(cmd, spec, &ids, &n)) return 2;
    dsv4_open_opts opts = {0};
    dsv4_model *m;
    if (dsv4_model_open(dir, &opts, &m)) {
        free(ids);
        return cli_fail_lib(cmd, NULL);
    }
    int rc = 0;
    const dsv4_engram *e = m->engram;
    if (!e) rc = cli_fail(cmd, "%s has no Engram layers", dir);
    int32_t *c = malloc(((size_t)n + 1) * sizeof(int32_t));
    int64_t *rows = malloc(((size_t)(e ? e->n_cols : 0) + 1) * sizeof(int64_t));
    for (int t = 0; t < n && !rc; t++) {
        if (ids[t] < 0 || ids[t] >= e->vocab) {
            rc = cli_fail(cmd, "id %d at index %d is outside the vocabulary", ids[t], t);
            break;
        }
        c[t] = e->token_map[ids[t]];
    }
    for (int t = 0; t < n && !rc; t++) {
        printf("{\"pos\": %d, \"rows\": [", t);
        for (int l = 0; l < e->n_layers; l++) {
            const dsv4_engram_w *w = &e->layers[l];
            dsv4_engram_hash(c, t, e->max_ngram, e->n_heads, e->pad_c, w->mult, w->primes, w->offsets, rows);
            printf("%s[", l ? ", " : "");
            for (int k = 0; k < e->n_cols; k++) printf("%s%lld", k ? ", " : "", (long long)rows[k]);
            printf("]");
        }
        printf("]}\n");
    }
    free(c);
    free(rows);
    free(ids);
    dsv4_model_close(m);
    return rc;
}

/* One model per placement, stepped in turn on the same tokens. */
typedef struct {
    const char *name;
    dsv4_model *m;
    dsv4_session *s;
    bool cold;
    double *ms, *wait, *ask; /* per step: time, waiting for rows, asking for them */
} placement_run;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n) {
    double *c = malloc((size_t)n * sizeof(double));
    if (!c) return NAN;
    memcpy(c, v, (size_t)n * sizeof(double));
    qsort(c, (size_t)n, sizeof(double), cmp_double);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

static int engram_bench(int argc, char **argv) {
    const char *cmd = "engram bench", *dir = NULL;
    long long n = 64, n_prompt = 16, seed = 1;
    dsv4_open_opts opts = {0};
    for (int i = 1; i < argc; i++) {
        int used = cli_model_flag(cmd, argc, argv, &i, &opts);
        if (used < 0) return 2;
        if (used) continue;
        if (cli_is(argv[i], "-m", "--model")) {
            if (!(dir = cli_value(argc, argv, &i))) return cli_fail(cmd, "-m needs a directory"), 2;
        } else if (cli_is(argv[i], "-n", NULL)) {
            if (!cli_int(cli_value(argc, argv, &i), 1, 1 << 20, &n)) return cli_fail(cmd, "-n needs a positive integer"), 2;
        } else if (cli_is(argv[i], NULL, "--prompt")) {
            if (!cli_int(cli_value(argc, argv, &i), 1, 1 << 20, &n_prompt)) return cli_fail(cmd, "--prompt needs a positive integer"), 2;
        } else if (cli_is(argv[i], NULL, "--seed")) {
            if (!cli_int(cli_value(argc, argv, &i), 0, 1LL << 62, &seed)) return cli_fail(cmd, "--seed needs an integer"), 2;
        } else return cli_fail(cmd, "unknown option %s", argv[i]), 2;
    }
    if (!dir) return fputs(usage, stderr), 2;
    placement_run runs[3] = {{"ram", NULL, NULL, false, NULL, NULL, NULL},
                             {"mapped-cold", NULL, NULL, true, NULL, NULL, NULL},
                             {"mapped-cold-sync", NULL, NULL, true, NULL, NULL, NULL}};
    int rc = 0, T = (int)(n_prompt + n);
    for (int k = 0; k < 3 && !rc; k++) {
        dsv4_open_opts o = opts;
        o.engram_ram = k == 0;
        o.engram_sync = k == 2;
        if (dsv4_model_open(dir, &o, &runs[k].m)) rc = cli_fail_lib(cmd, NULL);
        else if (!runs[k].m->engram) rc = cli_fail(cmd, "%s has no Engram layers", dir);
        else if (dsv4_session_new(runs[k].m, T + 1, &runs[k].s)) rc = cli_fail_lib(cmd, "session");
        runs[k].ms = calloc((size_t)n, sizeof(double));
        runs[k].wait = calloc((size_t)n, sizeof(double));
        runs[k].ask = calloc((size_t)n, sizeof(double));
    }
    int V = rc ? 0 : dsv4_model_vocab(runs[0].m);
    int32_t *ids = malloc((size_t)T * sizeof(int32_t));
    float *logits = malloc(((size_t)V + 1) * sizeof(float));
    uint64_t x = (uint64_t)seed * 0x9e3779b97f4a7c15ull + 1;
    for (int t = 0; t < T && !rc; t++) { /* xorshift: ids in [3, V) */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[t] = 3 + (int32_t)(x % (uint64_t)(V - 3));
    }
    for (int k = 0; k < 3 && !rc; k++) {
        if (dsv4_forward(runs[k].s, ids, (int)n_prompt, DSV4_LOGITS_LAST, logits)) rc = cli_fail_lib(cmd, "prompt");
    }
    /* step t runs the placements in turn, starting with a different one each step; the cold
     * ones drop their tables from the page cache first (untimed), so every row is read */
    for (int t = 0; t < n && !rc; t++)
        for (int j = 0; j < 3 && !rc; j++) {
            placement_run *p = &runs[(t + j) % 3];
            for (int k = 1; k < 3 && p->cold && !rc; k++) /* both maps must let go of the pages */
                if (dsv4_engram_evict(runs[k].m)) rc = cli_fail_lib(cmd, "evicting the Engram tables");
            const dsv4_engram *e = p->m->engram;
            double t0 = dsv4_now(), w0 = e->wait_s, a0 = e->prefetch_s;
            if (!rc && dsv4_forward(p->s, ids + n_prompt + t, 1, DSV4_LOGITS_LAST, logits)) rc = cli_fail_lib(cmd, "decode");
            p->ms[t] = 1e3 * (dsv4_now() - t0);
            p->wait[t] = 1e3 * (e->wait_s - w0);
            p->ask[t] = 1e3 * (e->prefetch_s - a0);
        }
    if (!rc) {
        double *ratio = malloc((size_t)n * sizeof(double)), ram_med = 0;
        printf("{\"steps\": %lld", n);
        for (int k = 0; k < 3; k++) {
            for (int t = 0; t < n; t++) ratio[t] = runs[k].ms[t] / runs[0].ms[t];
            double mean = 0;
            for (int t = 0; t < n; t++) mean += runs[k].ms[t] / (double)n;
            double med = median(runs[k].ms, (int)n);
            if (k == 0) ram_med = med;
            printf(", \"%s\": {\"ms_median\": %.3f, \"ms_mean\": %.3f, \"vs_ram_median\": %.4f, \"paired_ratio_median\": %.4f, "
                   "\"wait_ms_median\": %.4f, \"readahead_ms_median\": %.4f}",
                   runs[k].name, med, mean, med / ram_med, median(ratio, (int)n), median(runs[k].wait, (int)n),
                   median(runs[k].ask, (int)n));
        }
        printf("}\n");
        free(ratio);
    }
    for (int k = 0; k < 3; k++) {
        dsv4_session_free(runs[k].s);
        if (runs[k].m) dsv4_model_close(runs[k].m);
        free(runs[k].ms);
        free(runs[k].wait);
        free(runs[k].ask);
    }
    free(ids);
    free(logits);
    return rc;
}

int cmd_engram(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "bench")) return engram_bench(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "map")) return engram_map(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "hash")) return engram_hash(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) return fputs(usage, stdout), 0;
    fputs(usage, stderr);
    return 2;
}
