/* pretok.c: regex Split steps on PCRE2 (see pretok.h).
 *
 * The split is a recursion over the steps: step k finds its matches in a piece and passes the
 * matches and the gaps between them, in order, to step k+1; past the last step a piece goes to
 * the caller. Nothing is copied, pieces are (pointer, length) views into the caller's text.
 * Each match runs on the piece alone, as HF runs it on a sub-string, so that lookahead like
 * (?!\S) sees the piece's end and not the text beyond it. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>

#include "text/pretok.h"

struct dsv4_pretok_step {
    pcre2_code *re;
};

struct dsv4_pretok_work {
    pcre2_match_data *md;
    pcre2_match_context *mctx; /* with a large JIT stack; made on first need */
    pcre2_jit_stack *jit_stack;
};

/* Refuse what Oniguruma and PCRE2 spell alike but read differently. */
static dsv4_status check_oniguruma_only(const char *pat, size_t len, const char *where) {
    for (size_t i = 0; i < len; i++) {
        if (pat[i] == '\\' && i + 1 < len) {
            char c = pat[++i];
            if (c == 'h' || c == 'H')
                return dsv4_error(DSV4_EUNSUPPORTED,
                                  "%s: \\%c at offset %zu is a hex digit class in Oniguruma but "
                                  "horizontal space in PCRE2", where, c, i - 1);
        } else if (pat[i] == '(' && i + 2 < len && pat[i + 1] == '?') {
            for (size_t j = i + 2; j < len && pat[j] != ':' && pat[j] != ')'; j++)
                if (pat[j] == 'm')
                    return dsv4_error(DSV4_EUNSUPPORTED,
                                      "%s: flag (?m) at offset %zu means dot-all in Oniguruma but "
                                      "multi-line in PCRE2", where, i);
        }
    }
    return DSV4_OK;
}

dsv4_status dsv4_pretok_add_split(dsv4_pretok *p, const char *pattern, size_t len, bool literal,
                                  const char *where) {
    if (!literal) {
        dsv4_status st = check_oniguruma_only(pattern, len, where);
        if (st) return st;
    }
    int err;
    PCRE2_SIZE err_off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &err, &err_off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return dsv4_error(DSV4_EFORMAT, "%s: regex does not compile at offset %zu: %s", where,
                          (size_t)err_off, (const char *)msg);
    }
    /* JIT makes matching several times faster; where it is unavailable the interpreter runs. */
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    dsv4_pretok_step *steps = realloc(p->steps, (size_t)(p->n_steps + 1) * sizeof *steps);
    if (!steps) {
        pcre2_code_free(re);
        return dsv4_error(DSV4_ENOMEM, "out of memory for pre-tokenizer steps");
    }
    p->steps = steps;
    p->steps[p->n_steps++].re = re;
    return DSV4_OK;
}

void dsv4_pretok_free(dsv4_pretok *p) {
    for (int i = 0; i < p->n_steps; i++) pcre2_code_free(p->steps[i].re);
    free(p->steps);
    *p = (dsv4_pretok){0};
}

dsv4_pretok_work *dsv4_pretok_work_new(void) {
    dsv4_pretok_work *w = dsv4_calloc(1, sizeof *w, "pre-tokenizer scratch");
    if (!w) return NULL;
    w->md = pcre2_match_data_create(1, NULL);
    if (!w->md) {
        free(w);
        dsv4_error(DSV4_ENOMEM, "out of memory for regex match data");
        return NULL;
    }
    return w;
}

void dsv4_pretok_work_free(dsv4_pretok_work *w) {
    if (!w) return;
    pcre2_match_data_free(w->md);
    pcre2_match_context_free(w->mctx);
    pcre2_jit_stack_free(w->jit_stack);
    free(w);
}

/* One match of step `re` in s[0..n) at or after `from`. The default JIT stack (32 KiB on the
 * machine stack) overflows on very long runs, say a megabyte of spaces under \s+(?!\S); then
 * the match is retried with a JIT stack of up to 64 MiB. */
static int find_match(dsv4_pretok_work *w, const pcre2_code *re, const uint8_t *s, size_t n,
                      size_t from) {
    int rc = pcre2_match(re, s, n, from, PCRE2_NO_UTF_CHECK, w->md, w->mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !w->jit_stack) {
        w->mctx = pcre2_match_context_create(NULL);
        w->jit_stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
        if (!w->mctx || !w->jit_stack) return PCRE2_ERROR_NOMEMORY;
        pcre2_jit_stack_assign(w->mctx, NULL, w->jit_stack);
        rc = pcre2_match(re, s, n, from, PCRE2_NO_UTF_CHECK, w->md, w->mctx);
    }
    return rc;
}

static dsv4_status split_from(const dsv4_pretok *p, dsv4_pretok_work *w, int step,
                              const uint8_t *s, size_t n, dsv4_piece_fn fn, void *user);

/* Hand a non-empty piece to the next step, or to the caller after the last. */
static dsv4_status emit(const dsv4_pretok *p, dsv4_pretok_work *w, int step, const uint8_t *s,
                        size_t n, dsv4_piece_fn fn, void *user) {
    if (!n) return DSV4_OK;
    if (step + 1 < p->n_steps) return split_from(p, w, step + 1, s, n, fn, user);
    return fn(user, s, n);
}

static dsv4_status split_from(const dsv4_pretok *p, dsv4_pretok_work *w, int step,
                              const uint8_t *s, size_t n, dsv4_piece_fn fn, void *user) {
    const pcre2_code *re = p->steps[step].re;
    size_t done = 0, from = 0; /* text before `done` has been emitted; search from `from` */
    dsv4_status st = DSV4_OK;
    while (from < n && !st) {
        int rc = find_match(w, re, s, n, from);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return dsv4_error(rc == PCRE2_ERROR_NOMEMORY ? DSV4_ENOMEM : DSV4_EUNSUPPORTED,
                              "pre-tokenizer step %d failed on a piece of %zu bytes: %s", step, n,
                              (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t start = ov[0], end = ov[1]; /* copied out: the next step reuses the match data */
        if (end == start) { /* an empty match splits nothing; step over one character */
            from = start + 1;
            while (from < n && (s[from] & 0xC0) == 0x80) from++;
            continue;
        }
        st = emit(p, w, step, s + done, start - done, fn, user);
        if (!st) st = emit(p, w, step, s + start, end - start, fn, user);
        done = from = end;
    }
    if (!st) st = emit(p, w, step, s + done, n - done, fn, user);
    return st;
}

dsv4_status dsv4_pretok_split(const dsv4_pretok *p, dsv4_pretok_work *w, const uint8_t *text,
                              size_t len, dsv4_piece_fn fn, void *user) {
    if (!len) return DSV4_OK;
    if (!p->n_steps) return fn(user, text, len);
    return split_from(p, w, 0, text, len, fn, user);
}
