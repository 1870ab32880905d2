/* cmd_eval.c: `dsv4 eval`, what a model has learned of the task families, on held-out data.
 *
 *   dsv4 eval [-m DIR] [--tokenizer FILE] [--n N] [--needle-lengths 1024,4096,16384,32768] [--json]
 *
 * The examples come from the same generators as the training data (src/data/tasks.h), with
 * the evaluation's own seed (its side name "eval" is mixed in, so no seed given to `dsv4 data
 * build` reproduces them) and the held-out corpus passages. Each is cut before the answer,
 * rendered with the official chat encoding (chat mode, or thinking mode with --think),
 * tokenized, and answered by the model through the library: greedy decoding, stopping at
 * <｜end▁of▁sentence｜>, the completion parsed back into content and DSML tool calls. Then:
 *
 *   arith, table   the answer must hold the expected number or words (data/answer.h)
 *   tools          round trip: the model must call the right tool with the right arguments;
 *                  its own call is put in the conversation with the tool's result, and its
 *                  next answer must use the result. Call, answer and both are counted.
 *   needle         one line per context length: the fact's number must be the answer's last
 *                  number; lengths beyond the model's max_position_embeddings are skipped.
 *
 * The table goes to stdout; --json prints one JSON object instead. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "commands.h"
#include "data/answer.h"
#include "data/dataset.h"
#include "infer/generate.h"
#include "model/config.h"
#include "text/bpe.h"
#include "text/chat.h"
#include "text/dsml.h"
#include "text/tokenizer.h"

static const char *cmd = "eval";

#define MAX_LENGTHS 16

typedef struct options {
    const char *model_dir, *tokenizer, *corpus;
    int n, needle_n, max_tokens;
    int lengths[MAX_LENGTHS], n_lengths;
    uint64_t seed;
    bool json, think, verbose, reference;
    bool run[DSV4_N_FAMILIES]; /* --families: which to evaluate */
    int rows_min, rows_max;    /* --table-rows: a diagnosis, away from the standard set */
    bool reverse_only;         /* --table-reverse-only */
    bool key_right;            /* --table-layout */
    dsv4_open_opts open;
} options;

static int usage(FILE *f) {
    fprintf(f, "usage: dsv4 eval [-m DIR] [options]\n"
               "  -m, --model DIR        model directory (default: the embedded model)\n"
               "      --tokenizer FILE   tokenizer.json (default: DIR/tokenizer.json)\n"
               "      --n N              examples per question family and for tools (default 100)\n"
               "      --families LIST    which to evaluate (default arith,table,tools,needle)\n"
               "      --needle-n N       needle examples per length (default: --n / 5, at least 5)\n"
               "      --needle-lengths L comma-separated prompt lengths in tokens\n"
               "                         (default 1024,4096,16384,32768; 0 skips the needles)\n"
               "      --max-tokens N     answer length limit (default 96)\n"
               "      --seed S           the evaluation seed (default 1)\n"
               "      --think            thinking mode (the default is chat mode)\n"
               "      --corpus DIR       the fortune files (default " DSV4_FORTUNES_DIR ")\n"
               "      --json             one JSON object on stdout instead of the table\n"
               "  -v, --verbose          print every wrong answer\n"
               "      --table-rows MIN-MAX, --table-reverse-only   tables unlike the standard set's\n"
               "                         (3-7 rows, one question in three cell to key): a diagnosis\n"
               "      --table-layout plain|key-right   how tables are drawn (default %s)\n"
               "      --reference        answer with the data's own answers instead of the model: checks\n"
               "                         the checking (every score must be 100%%)\n"
               "  -t, --threads N, --numerics exact|default\n",
            cli_table_layout_name(DSV4_TABLE_KEY_RIGHT_DEFAULT));
    return f == stdout ? 0 : 2;
}

static int parse_lengths(const char *s, options *o) {
    o->n_lengths = 0;
    if (!s) return cli_fail(cmd, "--needle-lengths needs a list");
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 0 || v > (1 << 24) || (*end && *end != ','))
            return cli_fail(cmd, "--needle-lengths: \"%s\" is not a list of token counts", s);
        if (v > 0) {
            if (o->n_lengths == MAX_LENGTHS) return cli_fail(cmd, "--needle-lengths: at most %d", MAX_LENGTHS);
            o->lengths[o->n_lengths++] = (int)v;
        }
        s = *end ? end + 1 : end;
    }
    return 0;
}

static bool evaluated(int f) {
    return f == DSV4_FAMILY_ARITH || f == DSV4_FAMILY_TABLE || f == DSV4_FAMILY_TOOLS || f == DSV4_FAMILY_NEEDLE;
}

static int parse_families(const char *s, options *o) {
    memset(o->run, 0, sizeof o->run);
    if (!s || !*s) return cli_fail(cmd, "--families needs a list");
    for (const char *p = s; *p;) {
        size_t n = strcspn(p, ",");
        char name[16];
        int f = -1;
        if (n < sizeof name) {
            memcpy(name, p, n);
            name[n] = 0;
            f = dsv4_family_of(name);
        }
        if (f < 0 || !evaluated(f))
            return cli_fail(cmd, "--families: \"%.*s\" is not one of arith, table, tools, needle", (int)n, p);
        o->run[f] = true;
        p += n + (p[n] == ',');
    }
    return 0;
}

static int parse(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    for (int f = 0; f < DSV4_N_FAMILIES; f++) o->run[f] = evaluated(f);
    o->n = 100;
    o->needle_n = -1;
    o->max_tokens = 96;
    o->seed = 1;
    o->key_right = DSV4_TABLE_KEY_RIGHT_DEFAULT;
    o->corpus = DSV4_FORTUNES_DIR;
    static const int default_lengths[] = {1024, 4096, 16384, 32768};
    for (size_t i = 0; i < DSV4_ARRAY_LEN(default_lengths); i++) o->lengths[o->n_lengths++] = default_lengths[i];
    long long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int used = cli_model_flag(cmd, argc, argv, &i, &o->open);
        if (used < 0) return 1;
        if (used) continue;
        if (cli_is(a, "-m", "--model")) {
            if (!(o->model_dir = cli_value(argc, argv, &i))) return cli_fail(cmd, "-m needs a directory");
        } else if (cli_is(a, NULL, "--tokenizer")) {
            if (!(o->tokenizer = cli_value(argc, argv, &i))) return cli_fail(cmd, "--tokenizer needs a file");
        } else if (cli_is(a, NULL, "--corpus")) {
            if (!(o->corpus = cli_value(argc, argv, &i))) return cli_fail(cmd, "--corpus needs a directory");
        } else if (cli_is(a, NULL, "--n")) {
            if (!cli_int(cli_value(argc, argv, &i), 0, 1 << 20, &v)) return cli_fail(cmd, "--n needs a count");
            o->n = (int)v;
        } else if (cli_is(a, NULL, "--needle-n")) {
            if (!cli_int(cli_value(argc, argv, &i), 0, 1 << 20, &v)) return cli_fail(cmd, "--needle-n needs a count");
            o->needle_n = (int)v;
        } else if (cli_is(a, NULL, "--families")) {
            if (parse_families(cli_value(argc, argv, &i), o)) return 1;
        } else if (cli_is(a, NULL, "--needle-lengths")) {
            if (parse_lengths(cli_value(argc, argv, &i), o)) return 1;
        } else if (cli_is(a, NULL, "--max-tokens")) {
            if (!cli_int(cli_value(argc, argv, &i), 1, 1 << 20, &v)) return cli_fail(cmd, "--max-tokens needs a count");
            o->max_tokens = (int)v;
        } else if (cli_is(a, NULL, "--seed")) {
            if (!cli_int(cli_value(argc, argv, &i), 0, INT64_MAX, &v)) return cli_fail(cmd, "--seed needs an integer");
            o->seed = (uint64_t)v;
        } else if (cli_is(a, NULL, "--table-rows")) {
            if (!cli_range(cli_value(argc, argv, &i), 1, DSV4_TABLE_ROWS_CAP, &o->rows_min, &o->rows_max))
                return cli_fail(cmd, "--table-rows needs MIN-MAX with 1 <= MIN <= MAX <= %d", DSV4_TABLE_ROWS_CAP);
        } else if (cli_is(a, NULL, "--table-reverse-only")) {
            o->reverse_only = true;
        } else if (cli_is(a, NULL, "--table-layout")) {
            if (!cli_table_layout(cli_value(argc, argv, &i), &o->key_right))
                return cli_fail(cmd, "--table-layout needs plain or key-right");
        } else if (cli_is(a, NULL, "--think")) {
            o->think = true;
        } else if (cli_is(a, NULL, "--json")) {
            o->json = true;
        } else if (cli_is(a, NULL, "--reference")) {
            o->reference = true;
        } else if (cli_is(a, "-v", "--verbose")) {
            o->verbose = true;
        } else if (cli_is(a, "-h", "--help")) {
            usage(stdout);
            return -1;
        } else {
            return cli_fail(cmd, "unknown option %s", a);
        }
    }
    if (o->needle_n < 0) o->needle_n = DSV4_MAX(o->n / 5, 5);
    if (!o->model_dir) o->model_dir = cli_default_model();
    return 0;
}

/* ---- answering ------------------------------------------------------------------------------ */

typedef struct evaluator {
    const options *o;
    dsv4_model *model;
    dsv4_tokenizer *tok;
    dsv4_session *session;
    int vocab;
    float *logits;
    int32_t *history; /* the tokens the session holds */
    int n_history, cap_history;
    double seconds;
    long long prompt_tokens, generated_tokens;
} evaluator;

static int remember(evaluator *e, const int32_t *ids, int n) {
    if (e->n_history + n > e->cap_history) {
        int cap = DSV4_MAX(2 * e->cap_history, e->n_history + n + 1024);
        int32_t *h = realloc(e->history, (size_t)cap * sizeof *h);
        if (!h) return cli_fail(cmd, "out of memory");
        e->history = h;
        e->cap_history = cap;
    }
    memcpy(e->history + e->n_history, ids, (size_t)n * sizeof *ids);
    e->n_history += n;
    return 0;
}

/* Feed the prompt, reusing what the session already holds when the prompt extends it (the
 * second turn of a tool round trip), and leave the logits of its last token in e->logits. */
static int prefill(evaluator *e, const int32_t *ids, int n) {
    int common = 0;
    while (common < e->n_history && common < n && e->history[common] == ids[common]) common++;
    if (common < e->n_history || common == n) { /* diverged (or nothing new): start over */
        dsv4_session_reset(e->session);
        e->n_history = common = 0;
    }
    const int chunk = 512;
    for (int i = common; i < n; i += chunk) {
        int k = DSV4_MIN(chunk, n - i);
        bool last = i + k == n;
        if (dsv4_forward(e->session, ids + i, k, last ? DSV4_LOGITS_LAST : DSV4_LOGITS_NONE, e->logits))
            return cli_fail_lib(cmd, "forward");
        if (remember(e, ids + i, k)) return 1;
    }
    return 0;
}

/* Answer a prompt greedily: *message is the parsed assistant message, *completion its text.
 * With --reference, `reference` (the data's own completion) stands in for the model's.
 * Returns 0, 1 on failure, or 2 when the prompt does not fit in the context. */
static int answer(evaluator *e, const char *prompt, size_t plen, const char *reference, json_t **message,
                  char **completion, int *n_prompt) {
    *message = NULL;
    *completion = NULL;
    int32_t *ids;
    size_t n;
    if (dsv4_tokenize(e->tok, prompt, plen, &ids, &n)) return cli_fail_lib(cmd, "tokenizing a prompt");
    *n_prompt = (int)n;
    int room = dsv4_session_max_ctx(e->session) - (int)n;
    if (room < 2) {
        free(ids);
        return 2;
    }
    if (e->o->reference) {
        bool in_reasoning = n && ids[n - 1] == dsv4_token_id(e->tok, DSV4_TOK_THINK);
        free(ids);
        e->prompt_tokens += *n_prompt;
        if (!(*completion = strdup(reference))) return cli_fail(cmd, "out of memory");
        if (dsv4_dsml_parse_message(*completion, strlen(*completion), in_reasoning, message, NULL))
            return cli_fail_lib(cmd, "parsing an answer");
        return 0;
    }
    double t0 = dsv4_now();
    int rc = prefill(e, ids, (int)n);
    dsv4_gen_params p = dsv4_gen_defaults();
    p.sampling.temperature = 0;
    p.max_tokens = DSV4_MIN(e->o->max_tokens, room);
    p.eos_id = dsv4_token_id(e->tok, DSV4_TOK_EOS);
    p.in_reasoning = n && ids[n - 1] == dsv4_token_id(e->tok, DSV4_TOK_THINK);
    free(ids);
    dsv4_gen *g = NULL;
    dsv4_idvec out = {0};
    if (!rc && dsv4_gen_new(e->tok, &p, &g)) rc = cli_fail_lib(cmd, NULL);
    while (!rc) {
        /* the sampled token is output unless it is EOS, even when the generation ends with it
         * (max_tokens): then it is only not fed back (next is -1) */
        int32_t next, sampled = dsv4_gen_n_tokens(g);
        if (dsv4_gen_step(g, e->logits, e->vocab, &next)) {
            rc = cli_fail_lib(cmd, "sampling");
            break;
        }
        int32_t id = dsv4_gen_last(g)->id;
        if (dsv4_gen_n_tokens(g) > sampled && id != p.eos_id && dsv4_idvec_push(&out, id))
            rc = cli_fail(cmd, "out of memory");
        else if (next < 0) break;
        else if (dsv4_forward(e->session, &next, 1, DSV4_LOGITS_LAST, e->logits)) rc = cli_fail_lib(cmd, "forward");
        else rc = remember(e, &next, 1);
    }
    dsv4_gen_free(g);
    e->seconds += dsv4_now() - t0;
    e->prompt_tokens += *n_prompt;
    e->generated_tokens += (long long)out.n;
    size_t len = 0;
    if (!rc && dsv4_detokenize(e->tok, out.v, out.n, completion, &len)) rc = cli_fail_lib(cmd, "decoding");
    free(out.v);
    if (!rc && dsv4_dsml_parse_message(*completion, len, p.in_reasoning, message, NULL))
        rc = cli_fail_lib(cmd, "parsing an answer");
    return rc;
}

static const char *content_of(const json_t *message) {
    const char *c = json_string_value(json_object_get(message, "content"));
    return c ? c : "";
}

/* With -v, a wrong answer, why it is wrong (may be NULL) and the data's own answer (may be NULL). */
static void show_miss(const evaluator *e, const char *what, const char *completion, const char *why, const char *expected) {
    if (!e->o->verbose) return;
    fprintf(stderr, "[%s] wrong%s%s: %s\n", what, why ? ": " : "", why ? why : "", completion ? completion : "");
    if (expected) fprintf(stderr, "    expected: %s\n", expected);
}

/* ---- the families -------------------------------------------------------------------------------- */

typedef struct tally {
    int n, correct, skipped;
    long long prompt_tokens;
} tally;

typedef struct tool_tally {
    int n, call, answer, round_trip;
} tool_tally;

/* What the data's assistant message k reads as a completion: its rendering between the
 * generation prompt and <｜end▁of▁sentence｜>. */
static int reference_of(const dsv4_example *ex, size_t k, char **out) {
    char *before, *with;
    size_t lb, lw;
    *out = NULL;
    if (dsv4_example_prompt(ex, NULL, k, &before, &lb)) return cli_fail_lib(cmd, "rendering");
    if (dsv4_example_prompt(ex, NULL, k + 1, &with, &lw)) {
        free(before);
        return cli_fail_lib(cmd, "rendering");
    }
    size_t eos = strlen(DSV4_TOK_EOS);
    if (lw >= lb + eos && !memcmp(with, before, lb) && !memcmp(with + lw - eos, DSV4_TOK_EOS, eos))
        *out = strndup(with + lb, lw - lb - eos);
    free(before);
    free(with);
    return *out ? 0 : cli_fail(cmd, "the %s example's answer does not render after its prompt", dsv4_family_name(ex->family));
}

static int ask(evaluator *e, const dsv4_example *ex, json_t **message, char **completion, int *n_prompt) {
    char *prompt, *reference = NULL;
    size_t plen;
    if (e->o->reference && reference_of(ex, (size_t)ex->ask, &reference)) return 1;
    if (dsv4_example_prompt(ex, NULL, (size_t)ex->ask, &prompt, &plen)) {
        free(reference);
        return cli_fail_lib(cmd, "rendering");
    }
    int rc = answer(e, prompt, plen, reference, message, completion, n_prompt);
    free(prompt);
    free(reference);
    return rc;
}

static void count(tally *t, bool right, int n_prompt) {
    t->n++;
    t->correct += right;
    t->prompt_tokens += n_prompt;
}

/* by_kind (tables: key to cell, cell to key) may be NULL. */
static int question(evaluator *e, const dsv4_example *ex, tally *t, tally *by_kind) {
    json_t *message;
    char *completion;
    int n_prompt, rc = ask(e, ex, &message, &completion, &n_prompt);
    if (rc == 2) {
        t->skipped++;
        return 0;
    }
    if (!rc) {
        bool right = dsv4_answer_check(&ex->expect, content_of(message));
        count(t, right, n_prompt);
        if (by_kind) count(&by_kind[ex->reverse], right, n_prompt);
        char *expected = NULL;
        if (!right && e->o->verbose && !(rc = reference_of(ex, (size_t)ex->ask, &expected)))
            show_miss(e, dsv4_family_name(ex->family), completion, NULL, expected);
        free(expected);
    }
    json_decref(message);
    free(completion);
    return rc == 1;
}

/* The call, then the tool's result in the conversation after the model's own call. */
static int round_trip(evaluator *e, const dsv4_example *ex, tool_tally *t) {
    json_t *message, *final = NULL;
    char *completion, *final_text = NULL;
    int n_prompt, rc = ask(e, ex, &message, &completion, &n_prompt);
    if (rc == 2) return 0;
    if (rc) goto out;
    t->n++;
    char why[256];
    if (!dsv4_answer_check_call(message, ex->expect.call, why, sizeof why)) {
        show_miss(e, "tools call", completion, why, NULL);
        goto out;
    }
    t->call++;
    /* the conversation so far with the model's call in place of the example's */
    json_t *messages = json_array();
    for (int i = 0; i < ex->ask; i++) json_array_append(messages, json_array_get(ex->messages, (size_t)i));
    json_t *tcs = json_deep_copy(json_object_get(message, "tool_calls"));
    json_object_set_new(json_array_get(tcs, 0), "id", json_string("call_1"));
    json_array_append_new(messages, json_pack("{s:s, s:s, s:o}", "role", "assistant", "content",
                                              content_of(message), "tool_calls", tcs));
    json_array_append(messages, json_array_get(ex->messages, (size_t)ex->ask + 1)); /* the result */
    char *prompt;
    size_t plen;
    if (dsv4_example_prompt(ex, messages, json_array_size(messages), &prompt, &plen)) rc = cli_fail_lib(cmd, "rendering");
    json_decref(messages);
    if (rc) goto out;
    char *reference = NULL;
    if (e->o->reference && (rc = reference_of(ex, json_array_size(ex->messages) - 1, &reference))) {
        free(prompt);
        goto out;
    }
    rc = answer(e, prompt, plen, reference, &final, &final_text, &n_prompt);
    free(prompt);
    free(reference);
    if (rc == 2) rc = 0;
    else if (!rc && dsv4_answer_check(&ex->expect, content_of(final))) {
        t->answer++;
        t->round_trip++;
    } else if (!rc) {
        show_miss(e, "tools answer", final_text, NULL, NULL);
    }
out:
    json_decref(message);
    json_decref(final);
    free(completion);
    free(final_text);
    return rc;
}

/* ---- output --------------------------------------------------------------------------------------- */

static double pct(int a, int n) { return n ? 100.0 * a / n : 0.0; }

static json_t *tally_json(const tally *t) {
    return json_pack("{s:i, s:i, s:f, s:i}", "n", t->n, "correct", t->correct, "accuracy", t->n ? (double)t->correct / t->n : 0.0,
                     "skipped", t->skipped);
}

static void report(const evaluator *e, const tally *qa, const tally *table_kind, const tool_tally *tools, const tally *needles,
                   double total) {
    const options *o = e->o;
    static const dsv4_family qa_family[2] = {DSV4_FAMILY_ARITH, DSV4_FAMILY_TABLE};
    if (o->json) {
        json_t *root = json_pack("{s:s, s:I, s:s, s:s}", "model", o->model_dir, "seed", (json_int_t)o->seed, "mode",
                                 o->think ? "thinking" : "chat", "table_layout", cli_table_layout_name(o->key_right));
        json_t *fam = json_object();
        for (int f = 0; f < 2; f++)
            if (o->run[qa_family[f]]) json_object_set_new(fam, dsv4_family_name(qa_family[f]), tally_json(&qa[f]));
        json_t *table = json_object_get(fam, "table");
        if (table) {
            json_object_set_new(table, "key_to_cell", tally_json(&table_kind[0]));
            json_object_set_new(table, "cell_to_key", tally_json(&table_kind[1]));
        }
        json_object_set_new(root, "families", fam);
        if (o->run[DSV4_FAMILY_TOOLS])
            json_object_set_new(root, "tools",
                                json_pack("{s:i, s:i, s:i, s:i, s:f}", "n", tools->n, "call", tools->call, "answer",
                                          tools->answer, "round_trip", tools->round_trip, "accuracy",
                                          tools->n ? (double)tools->round_trip / tools->n : 0.0));
        json_t *needle = json_array();
        for (int i = 0; i < o->n_lengths; i++) {
            json_t *nj = tally_json(&needles[i]);
            json_object_set_new(nj, "tokens", json_integer(o->lengths[i]));
            json_object_set_new(nj, "mean_prompt_tokens",
                                json_real(needles[i].n ? (double)needles[i].prompt_tokens / needles[i].n : 0.0));
            json_array_append_new(needle, nj);
        }
        json_object_set_new(root, "needle", needle);
        json_object_set_new(root, "time",
                            json_pack("{s:f, s:I, s:I}", "seconds", total, "prompt_tokens", (json_int_t)e->prompt_tokens,
                                      "generated_tokens", (json_int_t)e->generated_tokens));
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        if (s) puts(s);
        free(s);
        json_decref(root);
        return;
    }
    printf("dsv4 eval: %s (%s mode, seed %llu, %s tables)\n\n", o->model_dir, o->think ? "thinking" : "chat",
           (unsigned long long)o->seed, cli_table_layout_name(o->key_right));
    printf("%-22s %6s %8s %9s\n", "task", "n", "correct", "accuracy");
    for (int f = 0; f < 2; f++)
        if (o->run[qa_family[f]])
            printf("%-22s %6d %8d %8.1f%%\n", dsv4_family_name(qa_family[f]), qa[f].n, qa[f].correct,
                   pct(qa[f].correct, qa[f].n));
    static const char *const kinds[2] = {"  key to cell", "  cell to key"}; /* "How old is Eva?", "Who is 31?" */
    for (int k = 0; k < 2 && o->run[DSV4_FAMILY_TABLE]; k++)
        printf("%-22s %6d %8d %8.1f%%\n", kinds[k], table_kind[k].n, table_kind[k].correct,
               pct(table_kind[k].correct, table_kind[k].n));
    if (o->run[DSV4_FAMILY_TOOLS]) {
        printf("%-22s %6d %8d %8.1f%%\n", "tools: call", tools->n, tools->call, pct(tools->call, tools->n));
        printf("%-22s %6d %8d %8.1f%%\n", "tools: answer", tools->n, tools->answer, pct(tools->answer, tools->n));
        printf("%-22s %6d %8d %8.1f%%\n", "tools: round trip", tools->n, tools->round_trip,
               pct(tools->round_trip, tools->n));
    }
    for (int i = 0; i < o->n_lengths; i++) {
        char name[48];
        if (o->lengths[i] % 1024 == 0) snprintf(name, sizeof name, "needle %dK", o->lengths[i] / 1024);
        else snprintf(name, sizeof name, "needle %d", o->lengths[i]);
        if (needles[i].skipped && !needles[i].n)
            printf("%-22s %6s %8s %9s  (beyond the model's context)\n", name, "-", "-", "-");
        else
            printf("%-22s %6d %8d %8.1f%%  (prompts of %.0f tokens)\n", name, needles[i].n, needles[i].correct,
                   pct(needles[i].correct, needles[i].n),
                   needles[i].n ? (double)needles[i].prompt_tokens / needles[i].n : 0.0);
    }
    printf("\n%lld prompt tokens, %lld generated, %.1f s\n", e->prompt_tokens, e->generated_tokens, total);
}

/* ---- the command ----------------------------------------------------------------------------------- */

int cmd_eval(int argc, char **argv) {
    options o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    double t0 = dsv4_now();
    evaluator e = {.o = &o};
    dsv4_corpus corpus = {0};
    dsv4_taskgen g = {0};
    char path[4096];
    if (!o.tokenizer) {
        snprintf(path, sizeof path, "%s/tokenizer.json", o.model_dir);
        o.tokenizer = path;
    }
    if (dsv4_model_open(o.model_dir, &o.open, &e.model)) return cli_fail_lib(cmd, o.model_dir);
    if (dsv4_tokenizer_load(o.tokenizer, &e.tok)) {
        rc = cli_fail_lib(cmd, NULL);
        goto out;
    }
    e.vocab = dsv4_model_vocab(e.model);
    if (dsv4_tokenizer_vocab_size(e.tok) > e.vocab) {
        rc = cli_fail(cmd, "%s has %d tokens but the model only %d", o.tokenizer, dsv4_tokenizer_vocab_size(e.tok), e.vocab);
        goto out;
    }
    int ctx = 4096;
    for (int i = 0; i < o.n_lengths; i++) ctx = DSV4_MAX(ctx, o.lengths[i] + o.max_tokens + 256);
    ctx = DSV4_MIN(ctx, dsv4_model_config(e.model)->max_position_embeddings);
    if (dsv4_session_new(e.model, ctx, &e.session)) {
        rc = cli_fail_lib(cmd, NULL);
        goto out;
    }
    if (!(e.logits = malloc((size_t)e.vocab * sizeof *e.logits))) {
        rc = cli_fail(cmd, "out of memory");
        goto out;
    }
    if (dsv4_corpus_load_fortunes(&corpus, o.corpus) || dsv4_taskgen_init(&g, &corpus, e.tok, true, dsv4_side_seed(o.seed, "eval"))) {
        rc = cli_fail_lib(cmd, "the corpus");
        goto out;
    }

    dsv4_task_opts topts = {.thinking = o.think ? 1 : -1, .multi_turn = -1, .single_call = true,
                            .table_rows_min = o.rows_min, .table_rows_max = o.rows_max,
                            .table_reverse = o.reverse_only ? 1 : 0, .table_key_right = o.key_right};
    tally qa[2] = {0}, table_kind[2] = {0}, needles[MAX_LENGTHS] = {0};
    tool_tally tools = {0};
    static const dsv4_family qa_families[2] = {DSV4_FAMILY_ARITH, DSV4_FAMILY_TABLE};
    for (int f = 0; f < 2 && !rc; f++)
        for (int i = 0; i < o.n && o.run[qa_families[f]] && !rc; i++) {
            dsv4_example ex;
            if (dsv4_task_generate(&g, qa_families[f], (uint64_t)i, &topts, &ex)) rc = cli_fail_lib(cmd, NULL);
            else rc = question(&e, &ex, &qa[f], qa_families[f] == DSV4_FAMILY_TABLE ? table_kind : NULL);
            dsv4_example_free(&ex);
        }
    for (int i = 0; i < o.n && o.run[DSV4_FAMILY_TOOLS] && !rc; i++) {
        dsv4_example ex;
        if (dsv4_task_generate(&g, DSV4_FAMILY_TOOLS, (uint64_t)i, &topts, &ex)) rc = cli_fail_lib(cmd, NULL);
        else rc = round_trip(&e, &ex, &tools);
        dsv4_example_free(&ex);
    }
    if (!o.run[DSV4_FAMILY_NEEDLE]) o.n_lengths = 0;
    for (int l = 0; l < o.n_lengths && !rc; l++) {
        topts.needle_tokens = o.lengths[l];
        for (int i = 0; i < o.needle_n && !rc; i++) {
            dsv4_example ex;
            uint64_t index = (uint64_t)o.lengths[l] << 24 | (uint64_t)i;
            if (dsv4_task_generate(&g, DSV4_FAMILY_NEEDLE, index, &topts, &ex)) rc = cli_fail_lib(cmd, NULL);
            else rc = question(&e, &ex, &needles[l], NULL);
            dsv4_example_free(&ex);
        }
    }
    if (!rc) report(&e, qa, table_kind, &tools, needles, dsv4_now() - t0);
out:
    dsv4_taskgen_free(&g);
    dsv4_corpus_free(&corpus);
    free(e.logits);
    free(e.history);
    dsv4_session_free(e.session);
    dsv4_tokenizer_free(e.tok);
    dsv4_model_close(e.model);
    return rc;
}
