/* cmd_greedy.c: `dsv4 greedy`, greedy decoding from token ids, plain or speculative.
 *
 *   dsv4 greedy [-m DIR] --ids LIST|@FILE.json [-n N] [--speculative] [--compare]
 *               [--engram-cold] [--eos ID] [model flags: --threads, --numerics,
 *               --intended-index-keys, --engram-ram, --engram-sync]
 *
 * Prints one JSON line: the generated ids and the timing (decode tokens per second, the
 * prompt excluded), plus for --speculative the DSpark statistics (steps, drafted and
 * accepted tokens). --compare runs plain greedy decoding first on a fresh session and checks
 * that speculation produced the same tokens (exit status 1 if not), reporting the speed-up.
 * --engram-cold drops the Engram tables from the page cache before decoding, so their rows
 * are read from the disk (benchmarks of SSD-resident tables). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "model/engram.h"
#include "model/model.h"

static const char *usage = "usage: dsv4 greedy [-m DIR] --ids LIST|@FILE.json [-n N] [--speculative] [--compare]\n"
                           "                   [--engram-cold] [--eos ID] [--threads N] [--numerics exact|default]\n"
                           "                   [--intended-index-keys] [--engram-ram] [--engram-sync]\n";

static int run(const char *cmd, dsv4_model *m, const int32_t *prompt, int n, int max_new, int eos, int spec, int32_t *out,
               int *n_out, dsv4_spec_stats *st) {
    dsv4_session *s;
    if (dsv4_session_new(m, n + max_new + 8, &s)) return cli_fail_lib(cmd, "session");
    int rc = dsv4_generate_greedy(s, prompt, n, max_new, eos, spec, out, n_out, st) ? cli_fail_lib(cmd, "generate") : 0;
    dsv4_session_free(s);
    return rc;
}

static void print_run(const char *label, const int32_t *out, int n, const dsv4_spec_stats *st, bool spec) {
    printf("{\"run\": \"%s\", \"ids\": [", label);
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", out[i]);
    printf("], \"tokens\": %d, \"steps\": %d, \"seconds\": %.4f, \"tokens_per_s\": %.2f", st->generated, st->steps,
           st->seconds, st->seconds > 0 ? st->generated / st->seconds : 0.0);
    printf(", \"ms_per_main_step\": %.3f", st->steps ? 1e3 * st->verify_seconds / st->steps : 0.0);
    if (spec)
        printf(", \"drafted\": %d, \"accepted\": %d, \"acceptance\": %.4f, \"tokens_per_step\": %.3f, \"ms_per_draft\": %.3f",
               st->drafted, st->accepted, st->drafted ? (double)st->accepted / st->drafted : 0.0,
               st->steps ? (double)st->generated / st->steps : 0.0, st->steps ? 1e3 * st->draft_seconds / st->steps : 0.0);
    printf("}\n");
}

int cmd_greedy(int argc, char **argv) {
    const char *cmd = "greedy", *dir = NULL, *spec_ids = NULL;
    long long max_new = 32, eos = -1;
    bool spec = false, compare = false, cold = false;
    dsv4_open_opts opts = {0};
    for (int i = 1; i < argc; i++) {
        int used = cli_model_flag(cmd, argc, argv, &i, &opts);
        if (used < 0) return 2;
        if (used) continue;
        const char *a = argv[i];
        if (cli_is(a, "-m", "--model")) {
            if (!(dir = cli_value(argc, argv, &i))) return cli_fail(cmd, "-m needs a directory"), 2;
        } else if (cli_is(a, NULL, "--ids")) {
            if (!(spec_ids = cli_value(argc, argv, &i))) return cli_fail(cmd, "--ids needs a list"), 2;
        } else if (cli_is(a, "-n", "--max-new")) {
            if (!cli_int(cli_value(argc, argv, &i), 1, 1 << 20, &max_new)) return cli_fail(cmd, "-n needs a positive integer"), 2;
        } else if (cli_is(a, NULL, "--eos")) {
            if (!cli_int(cli_value(argc, argv, &i), -1, 1 << 24, &eos)) return cli_fail(cmd, "--eos needs a token id"), 2;
        } else if (cli_is(a, NULL, "--speculative")) {
            spec = true;
        } else if (cli_is(a, NULL, "--compare")) {
            spec = compare = true;
        } else if (cli_is(a, NULL, "--engram-cold")) {
            cold = true;
        } else if (cli_is(a, "-h", "--help")) {
            fputs(usage, stdout);
            return 0;
        } else {
            fputs(usage, stderr);
            return cli_fail(cmd, "unknown option %s", a), 2;
        }
    }
    if (!spec_ids) return fputs(usage, stderr), 2;
    if (!dir) dir = cli_default_model();
    int *ids, n;
    if (!cli_parse_ids(cmd, spec_ids, &ids, &n)) return 2;
    dsv4_model *m;
    if (dsv4_model_open(dir, &opts, &m)) {
        free(ids);
        return cli_fail_lib(cmd, NULL);
    }
    int rc = 0;
    if (spec && !dsv4_model_dspark_block(m)) rc = cli_fail(cmd, "%s has no DSpark draft head", dir);
    int32_t *prompt = malloc(((size_t)n + 1) * sizeof(int32_t)), *a = malloc((size_t)max_new * sizeof(int32_t));
    int32_t *b = malloc((size_t)max_new * sizeof(int32_t));
    for (int i = 0; i < n; i++) prompt[i] = ids[i];
    if (!rc && cold && m->engram && dsv4_engram_evict(m)) rc = cli_fail_lib(cmd, "evicting the Engram tables");
    int na = 0, nb = 0;
    dsv4_spec_stats sa = {0}, sb = {0};
    if (!rc && (!spec || compare)) {
        rc = run(cmd, m, prompt, n, (int)max_new, (int)eos, 0, a, &na, &sa);
        if (!rc) print_run("greedy", a, na, &sa, false);
    }
    if (!rc && spec) {
        rc = run(cmd, m, prompt, n, (int)max_new, (int)eos, 1, b, &nb, &sb);
        if (!rc) print_run("speculative", b, nb, &sb, true);
    }
    if (!rc && compare) {
        bool same = na == nb && !memcmp(a, b, (size_t)na * sizeof(int32_t));
        printf("{\"same_tokens\": %s, \"speedup\": %.3f}\n", same ? "true" : "false",
               sb.seconds > 0 ? sa.seconds / sb.seconds : 0.0);
        if (!same) rc = cli_fail(cmd, "speculative decoding gave other tokens than greedy decoding");
    }
    if (!rc && m->engram)
        fprintf(stderr, "engram: %lld rows gathered, %.4f s waiting for rows\n", m->engram->rows_read, m->engram->wait_s);
    free(prompt);
    free(a);
    free(b);
    free(ids);
    dsv4_model_close(m);
    return rc;
}
