/* normalize.h: the Unicode normaliser of Engram's compressed vocabulary.
 *
 * DeepSeek-V4.1 builds its Engram vocabulary by normalising the text of every token with the
 * Hugging Face normaliser sequence NFKC, NFD, StripAccents, Lowercase, Replace([ \t\r\n]+ ->
 * " "), Replace(^ $ -> U+E000), Strip, Replace(U+E000 -> " "): tokens that differ only in case,
 * accents, compatibility forms or surrounding whitespace then share one compressed id. The
 * normalisation forms come from ICU (libicu); the rest follows the Hugging Face definitions:
 * StripAccents drops every code point of general category Mark, Lowercase maps each code
 * point on its own (Rust's char::to_lowercase, so no final-sigma context), Strip trims
 * Unicode White_Space on both sides. */
#ifndef DSV4_TEXT_NORMALIZE_H
#define DSV4_TEXT_NORMALIZE_H

#include <stddef.h>

#include "dsv4.h"

/* Normalise s[0..len) (well-formed UTF-8); *out is malloc'd and NUL-terminated. */
dsv4_status dsv4_engram_normalize(const char *s, size_t len, char **out, size_t *out_len);

#endif
