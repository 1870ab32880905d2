/* test_data.c: the training data pipeline (src/data): corpus cleaning, task generators, loss
 * masks, the on-disk data set, and the evaluation's answer checks.
 *
 * The corpus is tests/data/fortunes/sample (our own sentences in the fortune format), so the
 * test needs no Debian package. Expected values come from the documented rules (corpus.h,
 * answer.h) and from the chat encoder itself: every target span must decode to exactly the
 * text the encoder writes between the generation prompt and <｜end▁of▁sentence｜>. */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "data/answer.h"
#include "data/corpus.h"
#include "data/dataset.h"
#include "data/tasks.h"
#include "text/bpe_train.h"
#include "text/chat.h"
#include "text/tokenizer.h"

#define CORPUS_DIR DSV4_SOURCE_DIR "/tests/data/fortunes"

/* ---- corpus ---------------------------------------------------------------------------------- */

static void expect_clean(const char *raw, const char *want) {
    bool dropped;
    char *got = dsv4_corpus_clean(raw, strlen(raw), &dropped);
    if (!want) CHECK(!got && dropped, "dropped: \"%s\" (got \"%s\")", raw, got ? got : "");
    else CHECK(got && !strcmp(got, want), "clean \"%s\":\n got \"%s\"\nwant \"%s\"", raw, got ? got : "(dropped)", want);
    free(got);
}

static void test_corpus(void) {
    /* a wrapped line (>= 55 characters) joins the next; double spaces shrink */
    expect_clean("A young couple had their first child.  Their original pride and joy\nslowly turned to concern.\n",
                 "A young couple had their first child. Their original pride and joy slowly turned to concern.");
    /* short lines (verse) keep their breaks */
    expect_clean("Roses are red,\nViolets are blue.", "Roses are red,\nViolets are blue.");
    /* an attribution keeps its line */
    expect_clean("A line of prose that is long enough to have been wrapped by an editor.\n\t\t-- Someone Wise",
                 "A line of prose that is long enough to have been wrapped by an editor.\n-- Someone Wise");
    /* an indented line starts a paragraph; lines at the same indent join */
    expect_clean("\tFirst paragraph, a line that is long enough to be wrapped prose here.\n"
                 "continues here.\n\tSecond paragraph.",
                 "First paragraph, a line that is long enough to be wrapped prose here. continues here.\nSecond paragraph.");
    expect_clean("\tThe rule of the day: a line that is long enough to be wrapped prose.\n\tAnd this continues it.",
                 "The rule of the day: a line that is long enough to be wrapped prose. And this continues it.");
    /* blank lines collapse to one; tabs become spaces */
    expect_clean("\n\nPara\tone.\n\n\n\nPara two.\n\n", "Para one.\n\nPara two.");
    /* pictures and invalid UTF-8 are dropped */
    expect_clean("  /\\_/\\\n ( o.o )\n  > ^ <", NULL);
    expect_clean("caf\xe9 au lait", NULL);
    expect_clean("   \n\t\n", NULL);

    dsv4_corpus c = {0};
    CHECK(!dsv4_corpus_add_fortunes(&c, "one\n%\ntwo\n%\n\n%\nthree", 20, "inline"), "add");
    CHECK(c.n == 3 && !strcmp(c.passages[0], "one") && !strcmp(c.passages[2], "three"),
          "fortunes are split at %% lines; empty ones dropped (%zu)", c.n);
    dsv4_corpus_free(&c);

    CHECK(dsv4_corpus_load_fortunes(&c, "/nonexistent/fortunes") == DSV4_EIO && strstr(dsv4_errmsg(), "fortunes"),
          "a missing directory names the package: %s", dsv4_errmsg());
    CHECK(!dsv4_corpus_load_fortunes(&c, CORPUS_DIR), "load %s: %s", CORPUS_DIR, dsv4_errmsg());
    CHECK(c.n_files == 1 && c.n == 90, "one file, 90 passages (%d, %zu)", c.n_files, c.n);
    size_t held = 0;
    for (size_t i = 0; i < c.n; i++) held += dsv4_corpus_held_out(&c, i);
    CHECK(held > 0 && held < c.n / 5, "some passages are held out (%zu)", held);
    dsv4_corpus_free(&c);

    CHECK(dsv4_fnv1a("a", 1) == 0xaf63dc4c8601ec8cull, "FNV-1a of \"a\" is the published value");
}

/* ---- generators, prompts, masks ------------------------------------------------------------------ */

static dsv4_tokenizer *make_tokenizer(const dsv4_corpus *c, char **json, size_t *len) {
    dsv4_strbuf text = DSV4_STRBUF_INIT;
    dsv4_bpe_trainer *t = NULL;
    json_t *doc = NULL;
    dsv4_tokenizer *tok = NULL;
    dsv4_bpe_train_opts o = {.vocab_size = 600};
    if (dsv4_data_tokenizer_text(c, 1, &text) || dsv4_bpe_trainer_new(&t) ||
        dsv4_bpe_trainer_feed(t, text.data, text.len, 1) || dsv4_bpe_trainer_run(t, &o, &doc, NULL) ||
        dsv4_tokenizer_from_json(doc, &tok))
        fprintf(stderr, "tokenizer: %s\n", dsv4_errmsg());
    if (json) *json = dsv4_bpe_tokenizer_dumps(doc, len);
    json_decref(doc);
    dsv4_bpe_trainer_free(t);
    dsv4_strbuf_free(&text);
    return tok;
}

static char *example_text(const dsv4_example *ex) {
    char *s = NULL;
    size_t n;
    if (dsv4_example_text(ex, &s, &n)) fprintf(stderr, "render: %s\n", dsv4_errmsg());
    return s;
}

static void test_generators(const dsv4_corpus *c) {
    dsv4_taskgen g1, g2, g3;
    CHECK(!dsv4_taskgen_init(&g1, c, NULL, false, 11) && !dsv4_taskgen_init(&g2, c, NULL, false, 11) &&
              !dsv4_taskgen_init(&g3, c, NULL, false, 12),
          "taskgen: %s", dsv4_errmsg());
    for (int f = 0; f < DSV4_N_FAMILIES; f++) {
        if (f == DSV4_FAMILY_TEXT) continue;
        dsv4_example a, b, d;
        dsv4_task_opts o = {.think_share = 0.5};
        CHECK(!dsv4_task_generate(&g1, (dsv4_family)f, 5, &o, &a), "generate");
        /* g2 makes examples 0..4 first: example 5 must not depend on them */
        for (int i = 0; i < 5; i++) {
            dsv4_example x;
            dsv4_task_generate(&g2, (dsv4_family)f, (uint64_t)i, &o, &x);
            dsv4_example_free(&x);
        }
        CHECK(!dsv4_task_generate(&g2, (dsv4_family)f, 5, &o, &b), "generate");
        CHECK(!dsv4_task_generate(&g3, (dsv4_family)f, 5, &o, &d), "generate");
        char *ta = example_text(&a), *tb = example_text(&b), *td = example_text(&d);
        CHECK(ta && tb && !strcmp(ta, tb), "%s: example 5 is the same whatever came before", dsv4_family_name(f));
        CHECK(ta && td && strcmp(ta, td), "%s: another seed, another example", dsv4_family_name(f));
        CHECK(a.ask >= 1 && a.ask < (int)json_array_size(a.messages), "%s: ask points into the conversation",
              dsv4_family_name(f));
        free(ta);
        free(tb);
        free(td);
        dsv4_example_free(&a);
        dsv4_example_free(&b);
        dsv4_example_free(&d);
    }
    dsv4_taskgen_free(&g1);
    dsv4_taskgen_free(&g2);
    dsv4_taskgen_free(&g3);
}

/* The text the encoder writes for assistant message k, EOS included. */
static char *reference_span(const dsv4_example *ex, size_t k) {
    char *a, *b;
    size_t la, lb;
    if (dsv4_example_prompt(ex, NULL, k, &a, &la) || dsv4_example_prompt(ex, NULL, k + 1, &b, &lb)) return NULL;
    char *span = lb >= la && !memcmp(a, b, la) ? strndup(b + la, lb - la) : NULL;
    free(a);
    free(b);
    return span;
}

static void check_masks(const dsv4_tokenizer *tok, const dsv4_example *ex, const char *what) {
    dsv4_sequence s = {0};
    CHECK(!dsv4_example_tokenize(tok, ex, &s), "%s: tokenize: %s", what, dsv4_errmsg());
    char *whole = example_text(ex);
    int32_t *ids;
    size_t n;
    CHECK(whole && !dsv4_tokenize(tok, whole, strlen(whole), &ids, &n), "%s: whole", what);
    CHECK(n == s.n && !memcmp(ids, s.ids, n * sizeof *ids), "%s: span-wise ids equal the whole text's ids", what);
    free(ids);
    CHECK(s.n > 2 && s.ids[0] == 0 && s.mask[0] == 0 && s.ids[s.n - 1] == 1, "%s: BOS ... EOS, BOS not a target",
          what);
    if (!ex->messages) {
        size_t targets = 0;
        for (size_t i = 0; i < s.n; i++) targets += s.mask[i];
        CHECK(targets == s.n - 1, "%s: every token but BOS is a target", what);
    } else {
        /* the target spans, in order, are the assistant messages */
        size_t k = 0, i = 0;
        while (i < s.n) {
            if (!s.mask[i]) {
                i++;
                continue;
            }
            size_t j = i;
            while (j < s.n && s.mask[j]) j++;
            while (k < json_array_size(ex->messages) &&
                   strcmp(json_string_value(json_object_get(json_array_get(ex->messages, k), "role")), "assistant"))
                k++;
            char *want = reference_span(ex, k), *got;
            size_t glen;
            CHECK(want && !dsv4_detokenize(tok, s.ids + i, j - i, &got, &glen) && !strcmp(got, want),
                  "%s: span %zu decodes to assistant message %zu", what, i, k);
            if (want) free(got);
            CHECK(s.ids[j - 1] == 1, "%s: a target span ends with EOS", what);
            free(want);
            k++;
            i = j;
        }
        size_t assistants = 0;
        for (size_t m = 0; m < json_array_size(ex->messages); m++)
            assistants += !strcmp(json_string_value(json_object_get(json_array_get(ex->messages, m), "role")), "assistant");
        CHECK(k <= json_array_size(ex->messages) && assistants > 0, "%s: spans for the assistant turns", what);
    }
    free(whole);
    dsv4_sequence_free(&s);
}

static void test_masks(const dsv4_corpus *c, const dsv4_tokenizer *tok) {
    dsv4_taskgen g;
    CHECK(!dsv4_taskgen_init(&g, c, tok, false, 3), "taskgen");
    for (int f = 0; f < DSV4_N_FAMILIES; f++)
        for (int think = -1; think <= 1; think += 2)
            for (uint64_t i = 0; i < 12; i++) {
                dsv4_example ex;
                dsv4_task_opts o = {.thinking = think, .needle_min = 200, .needle_max = 500, .text_tokens = 100};
                if (dsv4_task_generate(&g, (dsv4_family)f, i, &o, &ex)) {
                    CHECK(0, "generate: %s", dsv4_errmsg());
                    continue;
                }
                char what[64];
                snprintf(what, sizeof what, "%s %s #%d", dsv4_family_name(f), think > 0 ? "thinking" : "chat", (int)i);
                check_masks(tok, &ex, what);
                if (ex.messages) {
                    char *p;
                    size_t n;
                    CHECK(!dsv4_example_prompt(&ex, NULL, (size_t)ex.ask, &p, &n), "prompt");
                    const char *end = think > 0 && f != DSV4_FAMILY_TEXT ? DSV4_TOK_THINK : DSV4_TOK_THINK_END;
                    CHECK(n >= strlen(end) && !strcmp(p + n - strlen(end), end), "%s: the prompt ends with %s", what, end);
                    CHECK(ex.thinking == (think > 0), "%s: mode", what);
                    free(p);
                }
                dsv4_example_free(&ex);
            }
    dsv4_taskgen_free(&g);
}

static void test_needle(const dsv4_corpus *c, const dsv4_tokenizer *tok) {
    dsv4_taskgen g;
    CHECK(!dsv4_taskgen_init(&g, c, tok, true, 5), "held-out taskgen: %s", dsv4_errmsg());
    for (uint64_t i = 0; i < 6; i++) {
        dsv4_example ex;
        dsv4_task_opts o = {.thinking = -1, .needle_tokens = 700};
        CHECK(!dsv4_task_generate(&g, DSV4_FAMILY_NEEDLE, i, &o, &ex), "generate");
        const char *user = json_string_value(json_object_get(json_array_get(ex.messages, (size_t)ex.ask - 1), "content"));
        const char *answer = json_string_value(json_object_get(json_array_get(ex.messages, (size_t)ex.ask), "content"));
        /* the answer sentence (the needle) is in the text exactly once, before the question */
        const char *at = strstr(user, answer), *q = strrchr(user, '\n');
        CHECK(at && !strstr(at + 1, answer) && q && at < q, "needle #%d: the fact is in the text once", (int)i);
        CHECK(dsv4_answer_check(&ex.expect, answer), "needle #%d: the reference answer passes", (int)i);
        char *p;
        size_t n, k;
        int32_t *ids;
        CHECK(!dsv4_example_prompt(&ex, NULL, (size_t)ex.ask, &p, &n) && !dsv4_tokenize(tok, p, n, &ids, &k), "prompt");
        CHECK(k >= 700 * 8 / 10 && k <= 700 * 11 / 10, "needle #%d: %zu prompt tokens for 700", (int)i, k);
        CHECK(ex.target_tokens == 700 && ex.depth_percent >= 0 && ex.depth_percent <= 100, "needle metadata");
        free(ids);
        free(p);
        dsv4_example_free(&ex);
    }
    dsv4_taskgen_free(&g);
}

/* recall: in chat mode two or more questions, each answered in its own turn; a fact's answer
 * sentence is in the text exactly once, a table's answers name what the table holds; the
 * expectation is the last answer's. In thinking mode one question with its reasoning. */
static void test_recall(const dsv4_corpus *c, const dsv4_tokenizer *tok) {
    dsv4_taskgen g;
    CHECK(!dsv4_taskgen_init(&g, c, tok, true, 11), "held-out taskgen: %s", dsv4_errmsg());
    int kinds[2] = {0, 0};
    for (uint64_t i = 0; i < 24; i++)
        for (int think = -1; think <= 1; think += 2) {
            dsv4_example ex;
            dsv4_task_opts o = {.thinking = think, .needle_min = 300, .needle_max = 900};
            CHECK(!dsv4_task_generate(&g, DSV4_FAMILY_RECALL, i, &o, &ex), "generate recall #%d", (int)i);
            size_t n = json_array_size(ex.messages), answers = 0, first_user = SIZE_MAX;
            const char *text = NULL, *last = NULL;
            bool table = false;
            for (size_t k = 0; k < n; k++) {
                json_t *m = json_array_get(ex.messages, k);
                const char *role = json_string_value(json_object_get(m, "role"));
                const char *content = json_string_value(json_object_get(m, "content"));
                if (!strcmp(role, "user") && first_user == SIZE_MAX) {
                    first_user = k;
                    text = content;
                    table = strstr(content, "| --- |") != NULL;
                }
                if (strcmp(role, "assistant")) continue;
                answers++;
                last = content;
                CHECK(k > 0 && !strcmp(json_string_value(json_object_get(json_array_get(ex.messages, k - 1), "role")), "user"),
                      "recall #%d: each answer follows a question", (int)i);
                CHECK((think > 0) == (json_object_get(m, "reasoning_content") != NULL), "recall #%d: reasoning", (int)i);
                if (!table && text) { /* the fact sentence, once, in the text */
                    const char *at = strstr(text, content);
                    CHECK(at && !strstr(at + 1, content), "recall #%d: the answer '%s' is in the text once", (int)i, content);
                }
            }
            kinds[table]++;
            CHECK(think > 0 ? answers == 1 : answers >= 2, "recall #%d: %zu answers (%s mode)", (int)i, answers,
                  think > 0 ? "thinking" : "chat");
            CHECK(ex.ask == (int)n - 1 && last && dsv4_answer_check(&ex.expect, last),
                  "recall #%d: the expectation is the last answer's", (int)i);
            dsv4_example_free(&ex);
        }
    CHECK(kinds[0] >= 8 && kinds[1] >= 8, "recall: both kinds drawn (%d texts, %d tables)", kinds[0], kinds[1]);
    dsv4_taskgen_free(&g);
}

static void test_tools_shape(const dsv4_corpus *c) {
    dsv4_taskgen g;
    CHECK(!dsv4_taskgen_init(&g, c, NULL, false, 9), "taskgen");
    for (uint64_t i = 0; i < 20; i++) {
        dsv4_example ex;
        dsv4_task_opts o = {.thinking = -1, .single_call = true};
        CHECK(!dsv4_task_generate(&g, DSV4_FAMILY_TOOLS, i, &o, &ex), "generate");
        json_t *call = json_array_get(ex.messages, (size_t)ex.ask), *result = json_array_get(ex.messages, (size_t)ex.ask + 1);
        CHECK(dsv4_answer_check_call(call, ex.expect.call, NULL, 0), "tools #%d: the data's call is the expected one",
              (int)i);
        CHECK(!strcmp(json_string_value(json_object_get(result, "role")), "tool"), "tools #%d: a result follows", (int)i);
        const char *final = json_string_value(json_object_get(json_array_get(ex.messages, (size_t)ex.ask + 2), "content"));
        CHECK(dsv4_answer_check(&ex.expect, final), "tools #%d: the final answer passes its check", (int)i);
        dsv4_example_free(&ex);
    }
    dsv4_taskgen_free(&g);
}

/* ---- the data set on disk ---------------------------------------------------------------------------- */

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    b[*len] = 0;
    fclose(f);
    return b;
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static void test_build(const dsv4_corpus *c, const dsv4_tokenizer *tok, const char *json, size_t json_len) {
    char d1[] = "/tmp/dsv4-data-XXXXXX", d2[] = "/tmp/dsv4-data-XXXXXX";
    CHECK(mkdtemp(d1) && mkdtemp(d2), "temporary directories");
    dsv4_build_opts o;
    dsv4_build_defaults(&o, 0.0002); /* a dozen arith examples, one or two of the others */
    o.count[DSV4_FAMILY_TEXT] = 3;
    o.task.needle_max = 500;
    o.valid_share = 0.5;
    dsv4_build_report r1, r2;
    o.out_dir = d1;
    CHECK(!dsv4_data_build(&o, c, tok, json, json_len, &r1), "build 1: %s", dsv4_errmsg());
    o.out_dir = d2;
    CHECK(!dsv4_data_build(&o, c, tok, json, json_len, &r2), "build 2: %s", dsv4_errmsg());
    static const char *const files[] = {"train.tokens", "train.mask", "train.index", "valid.tokens", "valid.mask",
                                        "valid.index", "manifest.json", "README.md", "tokenizer.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char p1[4096], p2[4096];
        snprintf(p1, sizeof p1, "%s/%s", d1, files[i]);
        snprintf(p2, sizeof p2, "%s/%s", d2, files[i]);
        size_t n1 = 0, n2 = 0;
        char *a = read_all(p1, &n1), *b = read_all(p2, &n2);
        CHECK(a && b && n1 == n2 && !memcmp(a, b, n1), "%s: the same bytes both times", files[i]);
        free(a);
        free(b);
    }
    /* the index agrees with the token and mask files, and with the report */
    char p[4096];
    size_t ni, nt, nm;
    snprintf(p, sizeof p, "%s/train.index", d1);
    unsigned char *idx = (unsigned char *)read_all(p, &ni);
    snprintf(p, sizeof p, "%s/train.tokens", d1);
    unsigned char *tokens = (unsigned char *)read_all(p, &nt);
    snprintf(p, sizeof p, "%s/train.mask", d1);
    unsigned char *mask = (unsigned char *)read_all(p, &nm);
    CHECK(idx && ni >= 32 && !memcmp(idx, "DSV4SEQ1", 8), "index magic");
    if (idx && tokens && mask && ni >= 32) {
        uint64_t n_seq = le64(idx + 16), n_tok = le64(idx + 24), at = 0;
        long seqs = 0;
        for (int f = 0; f < DSV4_N_FAMILIES; f++) seqs += r1.train.sequences[f];
        CHECK(n_seq == (uint64_t)seqs && ni == 32 + 16 * n_seq, "index: %llu sequences", (unsigned long long)n_seq);
        CHECK(nt == 4 * n_tok && nm == n_tok, "token and mask files hold %llu tokens", (unsigned long long)n_tok);
        bool contiguous = true, bos = true, families = true;
        for (uint64_t i = 0; i < n_seq; i++) {
            const unsigned char *rec = idx + 32 + 16 * i;
            uint64_t start = le64(rec);
            uint32_t len = (uint32_t)rec[8] | (uint32_t)rec[9] << 8 | (uint32_t)rec[10] << 16 | (uint32_t)rec[11] << 24;
            contiguous &= start == at;
            bos &= start < n_tok && tokens[4 * start] == 0 && mask[start] == 0;
            families &= rec[12] < DSV4_N_FAMILIES && rec[13] == 0 && rec[15] == 0;
            at += len;
        }
        CHECK(contiguous && at == n_tok, "sequences are back to back");
        CHECK(bos, "every sequence starts with BOS, not a target");
        CHECK(families, "family and flag fields in range");
    }
    free(idx);
    free(tokens);
    free(mask);
    CHECK(r1.valid.sequences[DSV4_FAMILY_ARITH] > 0 && r1.train.sequences[DSV4_FAMILY_TEXT] == 3, "split sizes");
    remove_dir(d1);
    remove_dir(d2);
}

/* ---- answer checks ----------------------------------------------------------------------------------- */

static void test_answers(void) {
    long long v;
    CHECK(dsv4_answer_last_number("37 + 58 = 95.", &v) && v == 95, "last number 95");
    CHECK(dsv4_answer_last_number("It is -5 degrees", &v) && v == -5, "negative");
    CHECK(dsv4_answer_last_number("64-13", &v) && v == 13, "minus between digits is not a sign");
    CHECK(!dsv4_answer_last_number("no digits here", &v), "none");

    dsv4_expect num = {.kind = DSV4_EXPECT_NUMBER, .number = 95};
    CHECK(dsv4_answer_check(&num, "37 + 58 = 95."), "right");
    CHECK(!dsv4_answer_check(&num, "95, or maybe 96"), "the last number counts");
    CHECK(!dsv4_answer_check(&num, "37 + 58 = 195."), "195 is not 95");
    CHECK(!dsv4_answer_check(&num, ""), "empty");

    CHECK(dsv4_answer_has_word("Bob lives in Rome.", "Rome"), "word");
    CHECK(dsv4_answer_has_word("bob LIVES in rome", "Rome"), "any case");
    CHECK(!dsv4_answer_has_word("Romeo lives here", "Rome"), "not inside a word");
    CHECK(!dsv4_answer_has_word("It is 15 degrees", "5"), "5 is not in 15");
    CHECK(!dsv4_answer_has_word("It is -5 degrees", "5"), "5 is not -5");
    CHECK(!dsv4_answer_has_word("It is 5.5 degrees", "5"), "5 is not 5.5");
    CHECK(dsv4_answer_has_word("It is -5 degrees", "-5"), "-5");
    CHECK(dsv4_answer_has_word("It is 14:05 in Oslo.", "14:05"), "a time");
    CHECK(dsv4_answer_has_word("Call 555-0142.", "555-0142"), "a phone number before a full stop");

    dsv4_expect words = {.kind = DSV4_EXPECT_WORDS, .words = json_pack("[s, s]", "18", "cloudy")};
    CHECK(dsv4_answer_check(&words, "It is 18 degrees and cloudy in Paris."), "both words");
    CHECK(!dsv4_answer_check(&words, "It is 18 degrees and sunny in Paris."), "one word missing");
    words.not_words = json_pack("[s]", "Rome");
    CHECK(dsv4_answer_check(&words, "It is 18 degrees and cloudy in Paris."), "no excluded word");
    CHECK(!dsv4_answer_check(&words, "It is 18 degrees and cloudy in Paris and Rome."), "an excluded word");
    CHECK(dsv4_answer_check(&words, "It is 18 degrees and cloudy in Romeo."), "excluded as a whole word only");
    json_decref(words.words);
    json_decref(words.not_words);
    dsv4_expect none = {0};
    CHECK(!dsv4_answer_check(&none, "anything"), "nothing to check is never right");

    json_t *want = json_pack("{s:s, s:{s:i, s:s}}", "name", "set_timer", "arguments", "minutes", 10, "label", "tea");
    json_t *good = json_loads("{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"type\": \"function\", "
                              "\"function\": {\"name\": \"set_timer\", \"arguments\": \"{\\\"label\\\": \\\"tea\\\", "
                              "\\\"minutes\\\": 10}\"}}]}",
                              0, NULL);
    char why[128];
    CHECK(dsv4_answer_check_call(good, want, why, sizeof why), "the right call, keys in another order");
    json_t *s = json_object_get(json_object_get(json_array_get(json_object_get(good, "tool_calls"), 0), "function"),
                                "arguments");
    json_string_set(s, "{\"minutes\": \"10\", \"label\": \"tea\"}");
    CHECK(!dsv4_answer_check_call(good, want, why, sizeof why) && strstr(why, "arguments"), "\"10\" is not 10: %s", why);
    json_string_set(json_object_get(json_object_get(json_array_get(json_object_get(good, "tool_calls"), 0), "function"),
                                    "name"),
                    "get_time");
    CHECK(!dsv4_answer_check_call(good, want, why, sizeof why) && strstr(why, "get_time"), "wrong tool: %s", why);
    json_t *plain = json_pack("{s:s, s:s}", "role", "assistant", "content", "It is 10.");
    CHECK(!dsv4_answer_check_call(plain, want, why, sizeof why) && strstr(why, "no tool call"), "no call: %s", why);
    json_decref(plain);
    json_decref(good);
    json_decref(want);
}

/* --table-reverse: the share of table questions asked from a cell to the row's key, in the table
 * family and in recall's tables alike; 0 keeps the generator's one in three. */
static bool reverse_question(const char *q) {
    return strstr(q, "Who ") || strstr(q, "Which person") || strstr(q, "Which item") || strstr(q, "What costs");
}

/* The line of a user message that asks (the table may come before or after it). */
static void question_line(const char *content, char *out, size_t cap) {
    *out = 0;
    for (const char *p = content; *p;) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n && p[n - 1] == '?' && n < cap) {
            memcpy(out, p, n);
            out[n] = 0;
        }
        p += n + (end != NULL);
    }
}

/* The rows of the Markdown table in a user message (its lines starting with '|', less the
 * header and its rule). */
static int table_rows(const char *content) {
    int lines = 0;
    for (const char *p = content; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) lines += *p == '|';
    return lines - 2;
}

static void test_table_reverse(const dsv4_corpus *c) {
    dsv4_taskgen g;
    CHECK(!dsv4_taskgen_init(&g, c, NULL, false, 5), "taskgen: %s", dsv4_errmsg());
    static const struct {
        double share, lo, hi;
    } cases[] = {{0, 0.25, 0.42}, {1, 1, 1}, {-1, 0, 0}, {0.75, 0.65, 0.85}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int n = 0, reverse = 0;
        for (uint64_t i = 0; i < 300; i++) {
            dsv4_task_opts o = {.thinking = -1, .table_reverse = cases[k].share};
            dsv4_example ex;
            CHECK(!dsv4_task_generate(&g, DSV4_FAMILY_TABLE, i, &o, &ex), "table #%d", (int)i);
            const char *q = json_string_value(json_object_get(json_array_get(ex.messages, (size_t)ex.ask - 1), "content"));
            n++;
            reverse += q && reverse_question(q);
            if (q && ex.expect.kind == DSV4_EXPECT_WORDS) { /* the other rows' cells are excluded */
                const char *answer = json_string_value(json_object_get(json_array_get(ex.messages, (size_t)ex.ask), "content"));
                size_t rows = (size_t)table_rows(q);
                CHECK(json_array_size(ex.expect.not_words) >= 1 && json_array_size(ex.expect.not_words) <= rows - 1 &&
                          dsv4_answer_check(&ex.expect, answer),
                      "table #%d: %zu excluded words for %zu rows, the data's answer passes", (int)i,
                      json_array_size(ex.expect.not_words), rows);
                char all[1024] = "";
                for (size_t w = 0; w < json_array_size(ex.expect.not_words); w++) {
                    strncat(all, json_string_value(json_array_get(ex.expect.not_words, w)), sizeof all - strlen(all) - 2);
                    strncat(all, " ", sizeof all - strlen(all) - 1);
                }
                strncat(all, answer, sizeof all - strlen(all) - 1);
                CHECK(!dsv4_answer_check(&ex.expect, all), "table #%d: an answer naming every row is wrong", (int)i);
            }
            if (k == 1 && q) { /* every answer names the key the question did not */
                const char *answer = json_string_value(json_object_get(json_array_get(ex.messages, (size_t)ex.ask), "content"));
                char key[32] = "";
                sscanf(answer, "%31s", key);
                if (!strcmp(key, "The")) sscanf(answer, "The %31s", key);
                char line[256];
                question_line(q, line, sizeof line);
                CHECK(*key && *line && !dsv4_answer_has_word(line, key), "reverse #%d: '%s' not in the question '%s'", (int)i, key, line);
            }
            dsv4_example_free(&ex);
        }
        double share = (double)reverse / n;
        CHECK(share >= cases[k].lo && share <= cases[k].hi, "table_reverse %g: %d of %d questions reverse",
              cases[k].share, reverse, n);
    }
    int reverse = 0, asked = 0;
    for (uint64_t i = 0; i < 60; i++) { /* recall's tables follow the option too */
        dsv4_task_opts o = {.thinking = -1, .table_reverse = 1, .needle_min = 300, .needle_max = 600};
        dsv4_example ex;
        CHECK(!dsv4_task_generate(&g, DSV4_FAMILY_RECALL, i, &o, &ex), "recall #%d", (int)i);
        size_t m = json_array_size(ex.messages);
        bool table = false;
        for (size_t j = 0; j < m; j++) {
            json_t *msg = json_array_get(ex.messages, j);
            const char *content = json_string_value(json_object_get(msg, "content"));
            if (strcmp(json_string_value(json_object_get(msg, "role")), "user") || !content) continue;
            if (strstr(content, "| --- |")) table = true;
            if (!table) continue;
            char line[256];
            question_line(content, line, sizeof line);
            asked++;
            reverse += reverse_question(line);
        }
        dsv4_example_free(&ex);
    }
    CHECK(asked > 20 && reverse == asked, "recall tables: %d of %d questions reverse", reverse, asked);
    for (uint64_t i = 0; i < 60; i++) { /* --table-restate: the cell, then the key */
        dsv4_task_opts o = {.thinking = -1, .table_reverse = 1, .table_restate = true};
        dsv4_example ex;
        CHECK(!dsv4_task_generate(&g, DSV4_FAMILY_TABLE, i, &o, &ex), "table #%d", (int)i);
        const char *answer = json_string_value(json_object_get(json_array_get(ex.messages, (size_t)ex.ask), "content"));
        const char *is = answer ? strstr(answer, " is ") : NULL;
        CHECK(is && !strncmp(answer, "The ", 4) && dsv4_answer_check(&ex.expect, is) && ex.reverse,
              "restated answer #%d: %s", (int)i, answer ? answer : "(none)");
        dsv4_example_free(&ex);
    }
    reverse = 0;
    for (uint64_t i = 0; i < 90; i++) { /* table_key_right: each row ends with its key, after the reverse cell */
        dsv4_task_opts o = {.thinking = -1, .table_key_right = true};
        dsv4_example ex;
        CHECK(!dsv4_task_generate(&g, DSV4_FAMILY_TABLE, i, &o, &ex), "table #%d", (int)i);
        const char *q = json_string_value(json_object_get(json_array_get(ex.messages, (size_t)ex.ask - 1), "content"));
        const char *answer = json_string_value(json_object_get(json_array_get(ex.messages, (size_t)ex.ask), "content"));
        char line[256];
        question_line(q, line, sizeof line);
        int rows = 0, matched = 0;
        for (const char *p = q; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
            char cell[4][48];
            if (sscanf(p, "| %47[^ |] | %47[^|]| %47[^ |] | %47[^ |] |", cell[0], cell[1], cell[2], cell[3]) != 4 ||
                !strcmp(cell[0], "---"))
                continue;
            if (!strcmp(cell[0], "Name") || !strcmp(cell[0], "Item")) continue; /* the header */
            rows++;
            CHECK(!strcmp(cell[0], cell[3]), "table #%d: a row starts with %s and ends with %s", (int)i, cell[0], cell[3]);
            if (ex.reverse && dsv4_answer_has_word(line, cell[2])) { /* the row asked about: its key is the answer */
                matched++;
                CHECK(dsv4_answer_has_word(answer, cell[3]) && dsv4_answer_check(&ex.expect, answer), "table #%d: %s asked, %s answered",
                      (int)i, cell[2], answer);
            }
        }
        CHECK(rows == table_rows(q) && matched == ex.reverse && dsv4_answer_check(&ex.expect, answer),
              "table #%d: %d rows of %d parsed, %d asked about, answer %s", (int)i, rows, table_rows(q), matched, answer);
        reverse += ex.reverse;
        dsv4_example_free(&ex);
    }
    CHECK(reverse > 20, "key-right tables: %d reverse questions", reverse);
    int seen[9] = {0};
    for (uint64_t i = 0; i < 200; i++) { /* --table-rows */
        dsv4_task_opts o = {.thinking = -1, .table_rows_min = 2, .table_rows_max = 4};
        dsv4_example ex;
        CHECK(!dsv4_task_generate(&g, DSV4_FAMILY_TABLE, i, &o, &ex), "table #%d", (int)i);
        const char *q = json_string_value(json_object_get(json_array_get(ex.messages, (size_t)ex.ask - 1), "content"));
        int rows = table_rows(q);
        seen[rows >= 0 && rows <= 8 ? rows : 0]++;
        dsv4_example_free(&ex);
    }
    CHECK(seen[2] && seen[3] && seen[4] && seen[2] + seen[3] + seen[4] == 200, "table rows 2-4: %d, %d, %d of 200",
          seen[2], seen[3], seen[4]);
    dsv4_taskgen_free(&g);
}

int main(void) {
    test_corpus();
    test_answers();
    dsv4_corpus c = {0};
    if (dsv4_corpus_load_fortunes(&c, CORPUS_DIR)) return check_done("test_data");
    char *json = NULL;
    size_t json_len = 0;
    dsv4_tokenizer *tok = make_tokenizer(&c, &json, &json_len);
    CHECK(tok != NULL, "a tokenizer for the test corpus");
    if (tok) {
        test_generators(&c);
        test_masks(&c, tok);
        test_needle(&c, tok);
        test_recall(&c, tok);
        test_table_reverse(&c);
        test_tools_shape(&c);
        test_build(&c, tok, json, json_len);
    }
    free(json);
    dsv4_tokenizer_free(tok);
    dsv4_corpus_free(&c);
    return check_done("test_data");
}
