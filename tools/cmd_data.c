/* cmd_data.c: `dsv4 data build` and `dsv4 data text`, the training data in one command.
 *
 *   dsv4 data build --out DIR [--seed S] [--tokenizer FILE] [--vocab N] [--scale F] ...
 *
 * reads the English corpus (Debian's fortunes), trains a tokenizer on it and on a sample of
 * the generated conversations unless --tokenizer gives one, generates every task family,
 * and writes the train and valid splits, tokenizer.json, manifest.json and README.md into DIR.
 * The same command gives the same bytes. `dsv4 data text --out FILE` writes the text the
 * tokenizer is trained on, for `dsv4 tokenizer train --corpus FILE` (which then gives the same
 * tokenizer.json as the build). docs/training-data.md describes it all. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "cli.h"
#include "commands.h"
#include "data/dataset.h"
#include "text/bpe_train.h"

static const char *cmd = "data";

#define DEFAULT_VOCAB 4096

static int usage(FILE *f) {
    fprintf(f,
            "usage: dsv4 data build --out DIR [options]\n"
            "       dsv4 data text --out FILE [--corpus DIR] [--seed S]\n"
            "options of build:\n"
            "  --seed S            the data's seed (default 1); validation uses a seed derived from it\n"
            "  --tokenizer FILE    use this tokenizer.json instead of training one\n"
            "  --vocab N           vocabulary of the trained tokenizer (default %d)\n"
            "  --corpus DIR        the fortune files (default %s, Debian package fortunes)\n"
            "  --scale F           multiply every family's count (default 1)\n"
            "  --count FAMILY=N    training sequences of one family (arith, table, needle, tools, text,\n"
            "                      chat, recall); text 0 means one pass over the corpus; recall\n"
            "                      (several questions per text or table) is 0 unless asked for\n"
            "  --needle-min N, --needle-max N   needle prompt lengths in tokens (default 256, 4096)\n"
            "  --think-share F     share of examples in thinking mode (default 0.2)\n"
            "  --table-reverse F   share of table questions asked from a cell to the row's key, \"Who\n"
            "                      lives in Oslo?\" (default: one in three, like each other kind)\n"
            "  --table-rows MIN-MAX rows of a table (default 3-7, at most 8)\n"
            "  --table-restate     cell-to-key answers name the cell before the key: \"The person\n"
            "                      in room 293 is Diana.\" (default: \"Diana is in room 293.\")\n"
            "  --table-layout plain|key-right   key-right repeats the key column on the right, after\n"
            "                      the column a cell-to-key question asks (default %s)\n"
            "  --valid-share F     validation sequences per training sequence (default 0.05)\n"
            "  --quiet             no progress or summary\n",
            DEFAULT_VOCAB, DSV4_FORTUNES_DIR, cli_table_layout_name(DSV4_TABLE_KEY_RIGHT_DEFAULT));
    return f == stdout ? 0 : 2;
}

typedef struct options {
    const char *out, *tokenizer, *corpus;
    int vocab;
    bool quiet;
    dsv4_build_opts build;
} options;

static int parse(int argc, char **argv, options *o) {
    double scale = 1;
    long counts[DSV4_N_FAMILIES];
    bool counted[DSV4_N_FAMILIES] = {0};
    memset(o, 0, sizeof *o);
    o->vocab = DEFAULT_VOCAB;
    o->corpus = DSV4_FORTUNES_DIR;
    dsv4_build_opts d;
    dsv4_build_defaults(&d, 1);
    uint64_t seed = d.seed;
    double think = d.task.think_share, valid = d.valid_share, reverse = d.task.table_reverse;
    int needle_min = d.task.needle_min, needle_max = d.task.needle_max;
    int rows_min = d.task.table_rows_min, rows_max = d.task.table_rows_max;
    bool restate = d.task.table_restate, key_right = d.task.table_key_right;
    long long v;
    double f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "-o", "--out")) {
            if (!(o->out = cli_value(argc, argv, &i))) return cli_fail(cmd, "--out needs a path");
        } else if (cli_is(a, NULL, "--tokenizer")) {
            if (!(o->tokenizer = cli_value(argc, argv, &i))) return cli_fail(cmd, "--tokenizer needs a file");
        } else if (cli_is(a, NULL, "--corpus")) {
            if (!(o->corpus = cli_value(argc, argv, &i))) return cli_fail(cmd, "--corpus needs a directory");
        } else if (cli_is(a, NULL, "--seed")) {
            if (!cli_int(cli_value(argc, argv, &i), 0, INT64_MAX, &v)) return cli_fail(cmd, "--seed needs an integer");
            seed = (uint64_t)v;
        } else if (cli_is(a, NULL, "--vocab")) {
            if (!cli_int(cli_value(argc, argv, &i), DSV4_BPE_MIN_VOCAB, 1 << 20, &v))
                return cli_fail(cmd, "--vocab needs an integer >= %d", DSV4_BPE_MIN_VOCAB);
            o->vocab = (int)v;
        } else if (cli_is(a, NULL, "--scale")) {
            if (!cli_float(cli_value(argc, argv, &i), &scale) || scale < 0 || scale > 1000)
                return cli_fail(cmd, "--scale needs a number in [0, 1000]");
        } else if (cli_is(a, NULL, "--count")) {
            const char *s = cli_value(argc, argv, &i);
            const char *eq = s ? strchr(s, '=') : NULL;
            char name[16];
            if (!eq || (size_t)(eq - s) >= sizeof name) return cli_fail(cmd, "--count needs FAMILY=N");
            memcpy(name, s, (size_t)(eq - s));
            name[eq - s] = 0;
            int fam = dsv4_family_of(name);
            if (fam < 0) return cli_fail(cmd, "--count: no family \"%s\"", name);
            if (!cli_int(eq + 1, 0, 100000000, &v)) return cli_fail(cmd, "--count %s: needs a count", name);
            counts[fam] = (long)v;
            counted[fam] = true;
        } else if (cli_is(a, NULL, "--needle-min") || cli_is(a, NULL, "--needle-max")) {
            bool max = !strcmp(a, "--needle-max");
            if (!cli_int(cli_value(argc, argv, &i), 32, 1 << 22, &v)) return cli_fail(cmd, "%s needs a token count", a);
            *(max ? &needle_max : &needle_min) = (int)v;
        } else if (cli_is(a, NULL, "--think-share")) {
            if (!cli_float(cli_value(argc, argv, &i), &f) || f < 0 || f > 1)
                return cli_fail(cmd, "--think-share needs a number in [0, 1]");
            think = f;
        } else if (cli_is(a, NULL, "--table-reverse")) {
            if (!cli_float(cli_value(argc, argv, &i), &f) || f < 0 || f > 1)
                return cli_fail(cmd, "--table-reverse needs a number in [0, 1]");
            reverse = f > 0 ? f : -1; /* the options' 0 is the generator's own share */
        } else if (cli_is(a, NULL, "--table-rows")) {
            if (!cli_range(cli_value(argc, argv, &i), 1, DSV4_TABLE_ROWS_CAP, &rows_min, &rows_max))
                return cli_fail(cmd, "--table-rows needs MIN-MAX with 1 <= MIN <= MAX <= %d", DSV4_TABLE_ROWS_CAP);
        } else if (cli_is(a, NULL, "--table-restate")) {
            restate = true;
        } else if (cli_is(a, NULL, "--table-layout")) {
            if (!cli_table_layout(cli_value(argc, argv, &i), &key_right))
                return cli_fail(cmd, "--table-layout needs plain or key-right");
        } else if (cli_is(a, NULL, "--valid-share")) {
            if (!cli_float(cli_value(argc, argv, &i), &f) || f < 0 || f > 1)
                return cli_fail(cmd, "--valid-share needs a number in [0, 1]");
            valid = f;
        } else if (cli_is(a, "-q", "--quiet")) {
            o->quiet = true;
        } else if (cli_is(a, "-h", "--help")) {
            usage(stdout);
            return -1;
        } else {
            return cli_fail(cmd, "unknown option %s", a);
        }
    }
    if (!o->out) return usage(stderr);
    if (needle_max < needle_min) return cli_fail(cmd, "--needle-max is below --needle-min");
    dsv4_build_defaults(&o->build, scale);
    for (int k = 0; k < DSV4_N_FAMILIES; k++)
        if (counted[k]) o->build.count[k] = counts[k];
    o->build.seed = seed;
    o->build.out_dir = o->out;
    o->build.valid_share = valid;
    o->build.task.think_share = think;
    o->build.task.needle_min = needle_min;
    o->build.task.needle_max = needle_max;
    o->build.task.table_reverse = reverse;
    o->build.task.table_rows_min = rows_min;
    o->build.task.table_rows_max = rows_max;
    o->build.task.table_restate = restate;
    o->build.task.table_key_right = key_right;
    return 0;
}

static int load_corpus(const options *o, dsv4_corpus *c) {
    memset(c, 0, sizeof *c);
    if (dsv4_corpus_load_fortunes(c, o->corpus)) return cli_fail_lib(cmd, "the corpus");
    return 0;
}

static int write_file(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return cli_fail(cmd, "%s: cannot create: %s", path, strerror(errno));
    bool ok = fwrite(data, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    return ok ? 0 : cli_fail(cmd, "%s: write failed", path);
}

/* The tokenizer: read from --tokenizer, or trained on the corpus and generated text. */
static int get_tokenizer(const options *o, const dsv4_corpus *c, char **json, size_t *len, dsv4_tokenizer **tok) {
    if (o->tokenizer) {
        if (!(*json = cli_read_file(o->tokenizer, len))) return cli_fail(cmd, "%s: %s", o->tokenizer, strerror(errno));
        if (dsv4_tokenizer_load(o->tokenizer, tok)) return cli_fail_lib(cmd, NULL);
        return 0;
    }
    double t0 = dsv4_now();
    dsv4_strbuf text = DSV4_STRBUF_INIT;
    dsv4_bpe_trainer *t = NULL;
    json_t *doc = NULL;
    dsv4_bpe_train_stats stats;
    dsv4_bpe_train_opts topts = {.vocab_size = o->vocab};
    int rc = 0;
    if (dsv4_data_tokenizer_text(c, o->build.seed, &text) || dsv4_bpe_trainer_new(&t) ||
        dsv4_bpe_trainer_feed(t, text.data, text.len, 1) || dsv4_bpe_trainer_run(t, &topts, &doc, &stats))
        rc = cli_fail_lib(cmd, "training the tokenizer");
    dsv4_bpe_trainer_free(t);
    if (!rc && !(*json = dsv4_bpe_tokenizer_dumps(doc, len))) rc = cli_fail(cmd, "out of memory");
    if (!rc && dsv4_tokenizer_from_json(doc, tok)) rc = cli_fail_lib(cmd, "the trained tokenizer");
    json_decref(doc);
    if (!rc && !o->quiet)
        fprintf(stderr, "dsv4 data: tokenizer: %zu bytes of text, %d merges, vocab %d (%.1f s)\n", text.len,
                stats.merges, stats.vocab_size, dsv4_now() - t0);
    dsv4_strbuf_free(&text);
    return rc;
}

static void progress(void *user, const char *what, double fraction) {
    (void)user;
    fprintf(stderr, "\rdsv4 data: %s %3.0f%%", what, 100 * fraction);
    if (fraction >= 1) fputc('\n', stderr);
}

static void print_split(const char *name, const dsv4_split_report *r) {
    long seqs = 0;
    long long tokens = 0, targets = 0;
    printf("%s split:\n  %-8s %10s %12s %12s %10s\n", name, "family", "sequences", "tokens", "targets", "tok/seq");
    for (int f = 0; f < DSV4_N_FAMILIES; f++) {
        printf("  %-8s %10ld %12lld %12lld %10.0f\n", dsv4_family_name((dsv4_family)f), r->sequences[f], r->tokens[f],
               r->targets[f], r->sequences[f] ? (double)r->tokens[f] / (double)r->sequences[f] : 0.0);
        seqs += r->sequences[f];
        tokens += r->tokens[f];
        targets += r->targets[f];
    }
    printf("  %-8s %10ld %12lld %12lld   longest %d\n", "all", seqs, tokens, targets, r->longest);
}

static int build(int argc, char **argv) {
    options o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    double t0 = dsv4_now();
    if (mkdir(o.out, 0777) && errno != EEXIST) return cli_fail(cmd, "%s: cannot create: %s", o.out, strerror(errno));
    dsv4_corpus c;
    if ((rc = load_corpus(&o, &c))) return rc;
    char *json = NULL;
    size_t len = 0;
    dsv4_tokenizer *tok = NULL;
    rc = get_tokenizer(&o, &c, &json, &len, &tok);
    if (!rc) {
        o.build.progress = o.quiet ? NULL : progress;
        dsv4_build_report rep;
        if (dsv4_data_build(&o.build, &c, tok, json, len, &rep)) rc = cli_fail_lib(cmd, NULL);
        else if (!o.quiet) {
            printf("corpus: %zu passages, %zu bytes from %d files of %s\n", c.n, c.bytes, c.n_files, o.corpus);
            print_split("train", &rep.train);
            print_split("valid", &rep.valid);
            printf("wrote %s in %.1f s\n", o.out, dsv4_now() - t0);
        }
    }
    free(json);
    dsv4_tokenizer_free(tok);
    dsv4_corpus_free(&c);
    return rc;
}

static int text(int argc, char **argv) {
    options o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    dsv4_corpus c;
    if ((rc = load_corpus(&o, &c))) return rc;
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    if (dsv4_data_tokenizer_text(&c, o.build.seed, &b)) rc = cli_fail_lib(cmd, NULL);
    else rc = write_file(o.out, b.data, b.len);
    dsv4_strbuf_free(&b);
    dsv4_corpus_free(&c);
    return rc;
}

int cmd_data(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "build")) return build(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "text")) return text(argc - 1, argv + 1);
    if (argc >= 2 && cli_is(argv[1], "-h", "--help")) return usage(stdout);
    return usage(stderr);
}
