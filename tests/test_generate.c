/* test_generate.c: the output path of a generation, driven by forced logits.
 *
 * Each step gets logits that are -inf everywhere but one token (greedy then must pick it), so
 * the text that comes out is known exactly: the DeepSeek tokenizer encodes a script, the
 * generation replays it, and the events must reassemble the expected reasoning, content and
 * tool calls, with the right finish reason, for stop strings split across tokens, the end of
 * sentence, max_tokens and cancellation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/generate.h"

#define TOK DSV4_SHARED "/tokenizer/deepseek-v4-tokenizer.json"

typedef struct {
    char reasoning[4096], content[4096], args[4096], name[64];
    int calls;
    dsv4_finish finish;
    int tokens, fed;
} result;

static void drain(dsv4_gen *g, result *r) {
    dsv4_dsml_event ev;
    while (dsv4_gen_next_event(g, &ev)) {
        if (ev.kind == DSV4_DSML_REASONING) strncat(r->reasoning, ev.text, sizeof r->reasoning - strlen(r->reasoning) - 1);
        if (ev.kind == DSV4_DSML_CONTENT) strncat(r->content, ev.text, sizeof r->content - strlen(r->content) - 1);
        if (ev.kind == DSV4_DSML_CALL_END) {
            r->calls++;
            snprintf(r->name, sizeof r->name, "%s", ev.name);
            snprintf(r->args, sizeof r->args, "%.*s", (int)ev.len, ev.text);
        }
    }
}

/* Replay `text` (+ EOS if eos) through a generation with the given params. */
static result replay(const dsv4_tokenizer *tok, const char *text, bool eos, dsv4_gen_params p, int cancel_after) {
    result r;
    memset(&r, 0, sizeof r);
    int32_t *ids;
    size_t n;
    CHECK(!dsv4_tokenize(tok, text, strlen(text), &ids, &n), "tokenize");
    int V = dsv4_tokenizer_vocab_size(tok);
    float *logits = malloc((size_t)V * sizeof(float));
    p.sampling.temperature = 0;
    dsv4_gen *g;
    CHECK(!dsv4_gen_new(tok, &p, &g), "gen_new: %s", dsv4_errmsg());
    size_t total = n + (eos ? 1 : 0);
    for (size_t i = 0; i < total; i++) {
        int32_t want = i < n ? ids[i] : p.eos_id;
        for (int v = 0; v < V; v++) logits[v] = -INFINITY;
        logits[want] = 0.0f;
        int32_t next;
        CHECK(!dsv4_gen_step(g, logits, V, &next), "step: %s", dsv4_errmsg());
        drain(g, &r);
        if (next < 0) break;
        CHECK(next == want, "fed back %d, sampled %d", next, want);
        r.fed++;
        if (cancel_after && r.fed == cancel_after) {
            dsv4_gen_stop(g, DSV4_FINISH_CANCELLED);
            break;
        }
    }
    drain(g, &r);
    r.finish = dsv4_gen_finish_reason(g);
    r.tokens = dsv4_gen_n_tokens(g);
    dsv4_gen_free(g);
    free(ids);
    free(logits);
    return r;
}

int main(void) {
    dsv4_tokenizer *tok;
    if (dsv4_tokenizer_load(TOK, &tok)) {
        CHECK(0, "load %s: %s", TOK, dsv4_errmsg());
        return check_done("test_generate");
    }
    dsv4_gen_params p = dsv4_gen_defaults();

    /* plain content ending with EOS */
    result r = replay(tok, "Hello, world! 你好", true, p, 0);
    CHECK(!strcmp(r.content, "Hello, world! 你好"), "content: %s", r.content);
    CHECK(r.finish == DSV4_FINISH_STOP, "finish %s", dsv4_finish_name(r.finish));

    /* thinking: reasoning, then content */
    p.in_reasoning = true;
    r = replay(tok, "Let me add 2 and 2.</think>The answer is 4.", true, p, 0);
    CHECK(!strcmp(r.reasoning, "Let me add 2 and 2."), "reasoning: %s", r.reasoning);
    CHECK(!strcmp(r.content, "The answer is 4."), "content: %s", r.content);
    p.in_reasoning = false;

    /* a tool call, finish reason tool_calls */
    r = replay(tok,
               "I will look it up.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
               "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
               "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n"
               "</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
               true, p, 0);
    CHECK(!strcmp(r.content, "I will look it up."), "content: [%s]", r.content);
    CHECK(r.calls == 1 && !strcmp(r.name, "get_weather"), "calls %d name %s", r.calls, r.name);
    CHECK(!strcmp(r.args, "{\"city\": \"Paris\", \"days\": 3}"), "args: %s", r.args);
    CHECK(r.finish == DSV4_FINISH_TOOL_CALLS, "finish %s", dsv4_finish_name(r.finish));

    /* a stop string split over several tokens: output ends before it */
    p.n_stop = 2;
    p.stop[0] = "END OF";
    p.stop[1] = "zzz";
    r = replay(tok, "one two three END OF STORY and more", true, p, 0);
    CHECK(!strcmp(r.content, "one two three "), "content before stop: [%s]", r.content);
    CHECK(r.finish == DSV4_FINISH_STOP, "finish %s", dsv4_finish_name(r.finish));
    /* a stop prefix that does not complete is released in the end */
    r = replay(tok, "the END is near", true, p, 0);
    CHECK(!strcmp(r.content, "the END is near"), "content: [%s]", r.content);
    r = replay(tok, "ends with END O", true, p, 0);
    CHECK(!strcmp(r.content, "ends with END O"), "held tail released at EOS: [%s]", r.content);
    p.n_stop = 0;

    /* max_tokens */
    p.max_tokens = 3;
    r = replay(tok, "a b c d e f g h", true, p, 0);
    CHECK(r.finish == DSV4_FINISH_LENGTH && r.tokens == 3, "length: %s after %d", dsv4_finish_name(r.finish), r.tokens);
    CHECK(!strcmp(r.content, "a b c"), "content: [%s]", r.content);
    p.max_tokens = 100;

    /* cancellation flushes what was generated */
    r = replay(tok, "alpha beta gamma delta", false, p, 2);
    CHECK(r.finish == DSV4_FINISH_CANCELLED, "finish %s", dsv4_finish_name(r.finish));
    CHECK(!strcmp(r.content, "alpha beta"), "content: [%s]", r.content);

    /* logprobs: the forced token has probability 1 */
    p.top_logprobs = 3;
    {
        dsv4_gen *g;
        CHECK(!dsv4_gen_new(tok, &p, &g), "gen");
        int V = dsv4_tokenizer_vocab_size(tok);
        float *l = calloc((size_t)V, sizeof(float));
        l[42] = 5.0f;
        l[7] = 5.0f;
        int32_t next;
        p.sampling.temperature = 0;
        CHECK(!dsv4_gen_step(g, l, V, &next), "step");
        const dsv4_gen_token *t = dsv4_gen_last(g);
        double lse = log(2.0 * exp(5.0) + (V - 2));
        CHECK(t->n_top == 3 && t->top_ids[0] == 7 && t->top_ids[1] == 42, "top ids %d %d", t->top_ids[0], t->top_ids[1]);
        CHECK_NEAR(t->top_logprobs[0], 5.0 - lse, 1e-4, "top logprob");
        free(l);
        dsv4_gen_free(g);
    }
    /* bad parameters */
    dsv4_gen *g;
    p.max_tokens = 0;
    CHECK(dsv4_gen_new(tok, &p, &g) == DSV4_EINVAL, "max_tokens 0 accepted");
    dsv4_tokenizer_free(tok);
    return check_done("test_generate");
}
