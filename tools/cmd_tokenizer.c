/* cmd_tokenizer.c: `dsv4 tokenizer train`, a byte-level BPE tokenizer in DeepSeek-V4's format.
 *
 *   dsv4 tokenizer train --corpus FILE... --vocab N --out tokenizer.json
 *
 * Every corpus file is read whole as UTF-8 text (special tokens in it, such as a rendered
 * chat's <｜User｜>, are skipped as encoding skips them). The same files give the same output
 * file, byte for byte. `dsv4 data text` writes the text the dataset builder trains on. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "commands.h"
#include "text/bpe_train.h"

static const char *cmd = "tokenizer";

static int usage(FILE *f) {
    fprintf(f,
            "usage: dsv4 tokenizer train --corpus FILE... --vocab N --out tokenizer.json\n"
            "  --corpus FILE...     UTF-8 text files (several may follow one --corpus)\n"
            "  --vocab N            ids in all, byte and chat tokens included (>= %d)\n"
            "  --out FILE           where to write the tokenizer.json\n"
            "  --min-frequency N    never merge a pair seen fewer times (default 2)\n"
            "  --merge-digits       allow merges inside numbers (default: one token per digit)\n"
            "  --quiet              no summary on stderr\n",
            DSV4_BPE_MIN_VOCAB);
    return f == stdout ? 0 : 2;
}

static int write_file(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return cli_fail(cmd, "%s: cannot create: %s", path, strerror(errno));
    bool ok = fwrite(data, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    return ok ? 0 : cli_fail(cmd, "%s: write failed", path);
}

static int train(int argc, char **argv) {
    const char **corpus = calloc((size_t)argc, sizeof *corpus);
    int n_corpus = 0, rc = 0;
    const char *out = NULL;
    bool quiet = false;
    dsv4_bpe_train_opts o = {.vocab_size = 0, .min_frequency = 2};
    long long v;
    if (!corpus) return cli_fail(cmd, "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, NULL, "--corpus")) {
            while (i + 1 < argc && argv[i + 1][0] != '-') corpus[n_corpus++] = argv[++i];
        } else if (cli_is(a, NULL, "--vocab")) {
            if (!cli_int(cli_value(argc, argv, &i), DSV4_BPE_MIN_VOCAB, 1 << 24, &v)) {
                rc = cli_fail(cmd, "--vocab needs an integer >= %d", DSV4_BPE_MIN_VOCAB);
                goto done;
            }
            o.vocab_size = (int)v;
        } else if (cli_is(a, NULL, "--min-frequency")) {
            if (!cli_int(cli_value(argc, argv, &i), 1, 1 << 30, &v)) {
                rc = cli_fail(cmd, "--min-frequency needs a positive integer");
                goto done;
            }
            o.min_frequency = (int)v;
        } else if (cli_is(a, NULL, "--merge-digits")) {
            o.merge_digits = true;
        } else if (cli_is(a, "-o", "--out")) {
            out = cli_value(argc, argv, &i);
        } else if (cli_is(a, "-q", "--quiet")) {
            quiet = true;
        } else if (cli_is(a, "-h", "--help")) {
            rc = usage(stdout);
            goto done;
        } else {
            rc = cli_fail(cmd, "unknown option %s", a);
            goto done;
        }
    }
    if (!n_corpus || !o.vocab_size || !out) {
        rc = usage(stderr);
        goto done;
    }

    dsv4_bpe_trainer *t;
    if (dsv4_bpe_trainer_new(&t)) {
        rc = cli_fail_lib(cmd, NULL);
        goto done;
    }
    double t0 = dsv4_now();
    for (int k = 0; k < n_corpus && !rc; k++) {
        size_t len;
        char *text = cli_read_file(corpus[k], &len);
        if (!text) {
            rc = cli_fail(cmd, "%s: %s", corpus[k], strerror(errno));
            break;
        }
        if (dsv4_bpe_trainer_feed(t, text, len, 1)) rc = cli_fail_lib(cmd, corpus[k]);
        free(text);
    }
    json_t *doc = NULL;
    dsv4_bpe_train_stats stats;
    if (!rc && dsv4_bpe_trainer_run(t, &o, &doc, &stats)) rc = cli_fail_lib(cmd, "training");
    dsv4_bpe_trainer_free(t);
    if (!rc) {
        size_t len;
        char *text = dsv4_bpe_tokenizer_dumps(doc, &len);
        rc = text ? write_file(out, text, len) : cli_fail(cmd, "out of memory writing the tokenizer");
        free(text);
    }
    json_decref(doc);
    if (!rc && !quiet)
        fprintf(stderr,
                "dsv4 tokenizer: %zu pieces (%zu distinct, %zu bytes) -> %d merges, vocab %d, %.1f s -> %s\n",
                stats.pieces, stats.distinct_pieces, stats.bytes, stats.merges, stats.vocab_size, dsv4_now() - t0,
                out);
done:
    free(corpus);
    return rc;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "train")) return train(argc - 1, argv + 1);
    if (argc >= 2 && (cli_is(argv[1], "-h", "--help"))) return usage(stdout);
    return usage(stderr);
}
