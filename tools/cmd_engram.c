/* cmd_engram.c: `dsv4 engram`, DeepSeek-V4.1's Engram vocabulary and hashing from the shell.
 *
 *   dsv4 engram map --tokenizer FILE [--vocab N]
 *       the compressed id of every token id 0..N-1 (default: the tokenizer's size), one per
 *       line; the number of compressed ids on stderr (99092 for DeepSeek's tokenizer)
 *   dsv4 engram hash -m DIR --ids 1,2,3|@FILE.json
 *       the table rows each position reads, one JSON line per position:
 *       {"pos": t, "rows": [[layer 0 columns...], [layer 1 columns...]]}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "model/engram.h"
#include "model/model.h"
#include "text/tokenizer.h"

static const char *usage = "usage: dsv4 engram map --tokenizer FILE [--vocab N]\n"
                           "       dsv4 engram hash -m DIR --ids LIST|@FILE.json\n";

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

int cmd_engram(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "map")) return engram_map(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "hash")) return engram_hash(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) return fputs(usage, stdout), 0;
    fputs(usage, stderr);
    return 2;
}
