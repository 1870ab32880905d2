/* pretok.h: the pre-tokenizer, a chain of regex splits.
 *
 * Before BPE, the text is cut into pieces so that merges never cross, say, a letter and a
 * digit. The DeepSeek file chains three `Split` steps with behaviour "Isolated": each step
 * runs its regex over every piece the previous step made; every match becomes a piece of its
 * own and so does every stretch of text between matches. The regexes were written for
 * Oniguruma (the engine inside Hugging Face tokenizers); here they run on PCRE2 in UTF mode
 * with Unicode properties (UCP), whose syntax and semantics agree on everything these
 * patterns use: \p{L} \p{N} \p{P} \p{S} \p{M}, classes, ranges, lookahead, counted
 * repetition, and \s, which is Unicode's White_Space in both (for PCRE2: the Z categories,
 * tab to carriage return, and U+0085; the oracle test covers every such character). The few
 * Oniguruma escapes that PCRE2 reads differently are refused when the pattern is compiled.
 *
 * The general categories come from the Unicode tables built into the PCRE2 library; PCRE2
 * 10.42 (Debian 12) has Unicode 14, Oniguruma in tokenizers 0.23 has Unicode 16, so the
 * categories of code points assigned in Unicode 15 and 16 can differ.
 *
 * Compiled patterns are read-only and shared; each thread brings its own dsv4_pretok_work
 * (match data, and a JIT stack made only if a long match needs one). */
#ifndef DSV4_TEXT_PRETOK_H
#define DSV4_TEXT_PRETOK_H

#include "base/base.h"

typedef struct dsv4_pretok_step dsv4_pretok_step;

typedef struct dsv4_pretok {
    dsv4_pretok_step *steps;
    int n_steps;
} dsv4_pretok;

/* Append a Split step. `literal`: the pattern is a plain string (HF's {"String": ...}), not a
 * regex. `where` names the step in error messages ("pre_tokenizer.pretokenizers[2]"). */
dsv4_status dsv4_pretok_add_split(dsv4_pretok *p, const char *pattern, size_t len, bool literal,
                                  const char *where);
void dsv4_pretok_free(dsv4_pretok *p);

typedef struct dsv4_pretok_work dsv4_pretok_work;
dsv4_pretok_work *dsv4_pretok_work_new(void);
void dsv4_pretok_work_free(dsv4_pretok_work *w);

/* Called with each final piece, in text order; a nonzero status stops the split. */
typedef dsv4_status (*dsv4_piece_fn)(void *user, const uint8_t *piece, size_t len);

/* Split text[0..len) (well-formed UTF-8) through every step and hand each piece to fn. */
dsv4_status dsv4_pretok_split(const dsv4_pretok *p, dsv4_pretok_work *w, const uint8_t *text,
                              size_t len, dsv4_piece_fn fn, void *user);

#endif
