/* test_bpe_train.c: the BPE trainer (src/text/bpe_train.h).
 *
 * - The format: the normalizer, pre-tokenizer, post-processor and decoder are DeepSeek-V4's
 *   (compared with the shared deepseek-v4-tokenizer.json), and each chat token carries
 *   DeepSeek's flags for the same text.
 * - The algorithm, on a corpus small enough to count by hand: "hello hello hello help" cuts
 *   into the pieces "hello", " hello" x2, " help" (Ġ is the space). Byte b has id 3 + b, and
 *   ties go to the pair with the smaller ids. Counts, merge by merge:
 *     (e,l) 4, (h,e) 4, (l,l) 3, (l,o) 3, (Ġ,h) 3, (l,p) 1  -> "e l" (ids 104,111 < 107,104)
 *     (h,el) 4, (el,l) 3, (l,o) 3, (Ġ,h) 3, (el,p) 1         -> "h el"
 *     (hel,l) 3, (l,o) 3, (Ġ,hel) 3, (hel,p) 1               -> "Ġ hel" (Ġ is id 35)
 *     (l,o) 3, (Ġhel,l) 2, (hel,l) 1, (Ġhel,p) 1             -> "l o"
 *     (Ġhel,lo) 2, (hel,lo) 1, (Ġhel,p) 1                    -> "Ġhel lo", then nothing is seen
 *   twice: 5 merges at most.
 * - Determinism (two runs, same bytes), digits kept apart, round trips through the loaded
 *   tokenizer, the vocab size, and errors. HF compatibility is the nosan test bpe_oracle. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/sampler.h"
#include "text/bpe_train.h"
#include "text/chat.h"
#include "text/tokenizer.h"

static json_t *train(const char *text, int vocab, bool merge_digits, dsv4_bpe_train_stats *stats) {
    dsv4_bpe_trainer *t;
    json_t *doc = NULL;
    dsv4_bpe_train_opts o = {.vocab_size = vocab, .merge_digits = merge_digits};
    if (dsv4_bpe_trainer_new(&t) || dsv4_bpe_trainer_feed(t, text, strlen(text), 1) ||
        dsv4_bpe_trainer_run(t, &o, &doc, stats))
        fprintf(stderr, "training failed: %s\n", dsv4_errmsg());
    dsv4_bpe_trainer_free(t);
    return doc;
}

static void test_format(void) {
    json_t *ds = json_load_file(DSV4_SHARED "/tokenizer/deepseek-v4-tokenizer.json", 0, NULL);
    json_t *ours = dsv4_bpe_skeleton();
    CHECK(ds && ours, "loaded DeepSeek's tokenizer.json and built the skeleton");
    if (!ds || !ours) return;
    static const char *const sections[] = {"version", "truncation", "padding", "normalizer", "pre_tokenizer",
                                           "post_processor", "decoder"};
    for (size_t i = 0; i < sizeof sections / sizeof *sections; i++)
        CHECK(json_equal(json_object_get(ds, sections[i]), json_object_get(ours, sections[i])),
              "section %s equals DeepSeek-V4's", sections[i]);
    /* model settings other than vocab and merges */
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(ds, "model"), key, v) {
        if (!strcmp(key, "vocab") || !strcmp(key, "merges")) continue;
        CHECK(json_equal(v, json_object_get(json_object_get(ours, "model"), key)), "model.%s equals DeepSeek-V4's", key);
    }
    /* every added token exists in DeepSeek's table with the same flags */
    size_t i, j;
    json_t *a, *b;
    int matched = 0;
    json_array_foreach(json_object_get(ours, "added_tokens"), i, a) {
        json_array_foreach(json_object_get(ds, "added_tokens"), j, b) {
            if (!json_equal(json_object_get(a, "content"), json_object_get(b, "content"))) continue;
            matched++;
            static const char *const flags[] = {"special", "normalized", "lstrip", "rstrip", "single_word"};
            for (size_t k = 0; k < sizeof flags / sizeof *flags; k++)
                CHECK(json_equal(json_object_get(a, flags[k]), json_object_get(b, flags[k])), "%s: flag %s",
                      json_string_value(json_object_get(a, "content")), flags[k]);
            if (j < 3) CHECK(json_integer_value(json_object_get(a, "id")) == (json_int_t)j, "sentence token ids");
        }
    }
    CHECK(matched == 3 + DSV4_BPE_N_CHAT_TOKENS, "all %d added tokens are DeepSeek's (matched %d)",
          3 + DSV4_BPE_N_CHAT_TOKENS, matched);
    json_decref(ds);
    json_decref(ours);
}

static void test_hand_counted(void) {
    dsv4_bpe_train_stats st;
    json_t *doc = train("hello hello hello help", DSV4_BPE_MIN_VOCAB + 4, false, &st);
    json_t *merges = json_object_get(json_object_get(doc, "model"), "merges");
    static const char *const want[] = {"e l", "h el", "Ġ hel", "l o"};
    CHECK(json_array_size(merges) == 4, "4 merges (got %zu)", json_array_size(merges));
    for (size_t i = 0; i < 4 && i < json_array_size(merges); i++)
        CHECK(!strcmp(json_string_value(json_array_get(merges, i)), want[i]), "merge %zu: %s, want %s", i,
              json_string_value(json_array_get(merges, i)), want[i]);
    json_t *vocab = json_object_get(json_object_get(doc, "model"), "vocab");
    CHECK(json_integer_value(json_object_get(vocab, "el")) == 259 && json_integer_value(json_object_get(vocab, "lo")) == 262,
          "learned tokens take ids from 259 in merge order");
    CHECK(st.pieces == 4 && st.distinct_pieces == 3 && st.merges == 4 && st.vocab_size == DSV4_BPE_MIN_VOCAB + 4,
          "stats: %zu pieces, %zu distinct, %d merges, vocab %d", st.pieces, st.distinct_pieces, st.merges, st.vocab_size);
    /* the chat tokens follow the vocab */
    json_t *added = json_object_get(doc, "added_tokens");
    CHECK(json_integer_value(json_object_get(json_array_get(added, 3), "id")) == 263, "<｜User｜> right after the vocab");

    /* pairs run out: a vocab larger than the corpus allows stops early (min frequency 2) */
    json_decref(doc);
    doc = train("hello hello hello help", 2000, false, &st);
    CHECK(st.vocab_size < 2000 && st.merges == 5, "stops when no pair is seen twice: %d merges, vocab %d", st.merges,
          st.vocab_size);
    json_decref(doc);
}

/* A corpus with some variety: sentences, numbers, a chat rendering. */
static char *corpus(void) {
    static const char *const sentences[] = {
        "The pass code of the blue door is 4821. ", "What is 37 + 58? 37 + 58 = 95.\n",
        "Alice lives in Paris and Bob lives in Rome. ", "A kettle that is watched still boils.\n",
        "It is 18 degrees and cloudy in Oslo. ", "| Name | City | Age |\n| --- | --- | --- |\n",
        "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜></think>Hello! How can I help you today?<｜end▁of▁sentence｜>\n",
    };
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    for (int rep = 0; rep < 40; rep++)
        for (size_t i = 0; i < sizeof sentences / sizeof *sentences; i++) {
            size_t k = strlen(sentences[(i * 7 + (size_t)rep) % 7]);
            memcpy(s + n, sentences[(i * 7 + (size_t)rep) % 7], k);
            n += k;
        }
    s[n] = 0;
    return s;
}

static dsv4_tokenizer *load(const json_t *doc) {
    dsv4_tokenizer *t = NULL;
    if (dsv4_tokenizer_from_json(doc, &t)) fprintf(stderr, "load: %s\n", dsv4_errmsg());
    return t;
}

static void test_corpus(void) {
    char *text = corpus();
    dsv4_bpe_train_stats st;
    json_t *a = train(text, 380, false, &st), *b = train(text, 380, false, &st);
    char *sa = dsv4_bpe_tokenizer_dumps(a, NULL), *sb = dsv4_bpe_tokenizer_dumps(b, NULL);
    CHECK(sa && sb && !strcmp(sa, sb), "two runs give the same file");
    CHECK(st.vocab_size == 380, "vocab %d", st.vocab_size);
    dsv4_tokenizer *t = load(a);
    CHECK(t && dsv4_tokenizer_vocab_size(t) == 380, "the file loads, 380 ids");
    if (!t) goto out;

    /* no merge touches a digit: every digit is a token */
    size_t i;
    json_t *m;
    bool digit_merge = false;
    json_array_foreach(json_object_get(json_object_get(a, "model"), "merges"), i, m) {
        for (const char *p = json_string_value(m); *p; p++) digit_merge |= *p >= '0' && *p <= '9';
    }
    CHECK(!digit_merge, "no merge with a digit");
    int32_t *ids;
    size_t n;
    CHECK(!dsv4_tokenize(t, "4821", 4, &ids, &n) && n == 4, "4821 is 4 tokens (%zu)", n);
    free(ids);

    /* frequent text compresses; text round-trips; chat tokens are single ids */
    const char *s = "The pass code of the blue door is 4821.";
    CHECK(!dsv4_tokenize(t, s, strlen(s), &ids, &n) && n < strlen(s) / 2, "%zu tokens for %zu bytes", n, strlen(s));
    free(ids);
    dsv4_rng r;
    dsv4_rng_seed(&r, 7);
    for (int k = 0; k < 200; k++) { /* random strings of ASCII, Latin-1 and CJK */
        char buf[256];
        size_t len = 0;
        int chars = 1 + (int)(dsv4_rng_uniform(&r) * 40);
        for (int c = 0; c < chars; c++) {
            double u = dsv4_rng_uniform(&r);
            if (u < 0.7) buf[len++] = (char)(32 + (int)(dsv4_rng_uniform(&r) * 95));
            else if (u < 0.85) len += (size_t)snprintf(buf + len, 4, "%s", "é");
            else len += (size_t)snprintf(buf + len, 4, "%s", "語");
        }
        buf[len] = 0;
        char *back;
        size_t blen;
        bool ok = !dsv4_tokenize(t, buf, len, &ids, &n) && !dsv4_detokenize(t, ids, n, &back, &blen);
        CHECK(ok && blen == len && !memcmp(back, buf, len), "round trip of \"%s\"", buf);
        if (ok) free(back);
        free(ids);
    }
    const char *chat = DSV4_TOK_BOS DSV4_TOK_USER "Hi" DSV4_TOK_ASSISTANT DSV4_TOK_THINK_END "Hello" DSV4_TOK_EOS;
    CHECK(!dsv4_tokenize(t, chat, strlen(chat), &ids, &n), "chat text encodes");
    CHECK(n >= 6 && ids[0] == 0 && ids[1] == dsv4_token_id(t, DSV4_TOK_USER) && ids[n - 1] == 1 &&
              dsv4_token_id(t, DSV4_TOK_USER) == 380 - DSV4_BPE_N_CHAT_TOKENS &&
              dsv4_token_id(t, "<｜read_url｜>") == 379 && dsv4_token_is_special(t, 0) &&
              !dsv4_token_is_special(t, dsv4_token_id(t, DSV4_TOK_DSML)),
          "chat tokens: single ids at the end, DeepSeek's special flags");
    free(ids);

    /* merge_digits lets numbers merge */
    json_t *d = train(text, 380, true, &st);
    dsv4_tokenizer *td = load(d);
    CHECK(td && !dsv4_tokenize(td, "4821", 4, &ids, &n) && n < 4, "with merge_digits 4821 is %zu tokens", n);
    free(ids);
    dsv4_tokenizer_free(td);
    json_decref(d);
    dsv4_tokenizer_free(t);
out:
    free(sa);
    free(sb);
    json_decref(a);
    json_decref(b);
    free(text);
}

static void test_errors(void) {
    dsv4_bpe_trainer *t;
    CHECK(!dsv4_bpe_trainer_new(&t), "new");
    CHECK(dsv4_bpe_trainer_feed(t, "ab\xff", 3, 1) == DSV4_EINVAL && strstr(dsv4_errmsg(), "offset 2"),
          "invalid UTF-8 refused with its offset: %s", dsv4_errmsg());
    CHECK(dsv4_bpe_trainer_feed(t, "ab", 2, 0) == DSV4_EINVAL, "weight 0 refused");
    json_t *doc;
    dsv4_bpe_train_opts o = {.vocab_size = 100};
    CHECK(dsv4_bpe_trainer_run(t, &o, &doc, NULL) == DSV4_EINVAL && strstr(dsv4_errmsg(), "vocab size 100"),
          "a vocab below the byte and chat tokens is refused: %s", dsv4_errmsg());
    o.vocab_size = DSV4_BPE_MIN_VOCAB;
    CHECK(!dsv4_bpe_trainer_run(t, &o, &doc, NULL), "an empty corpus gives the bytes-only tokenizer");
    dsv4_tokenizer *tok = load(doc);
    CHECK(tok && dsv4_tokenizer_vocab_size(tok) == DSV4_BPE_MIN_VOCAB, "and it loads");
    dsv4_tokenizer_free(tok);
    json_decref(doc);
    dsv4_bpe_trainer_free(t);
}

int main(void) {
    test_format();
    test_hand_counted();
    test_corpus();
    test_errors();
    return check_done("test_bpe_train");
}
