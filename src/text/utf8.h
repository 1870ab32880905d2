/* utf8.h: the few UTF-8 facts the tokenizer needs.
 *
 * Two jobs. Encoding must refuse malformed input, so dsv4_utf8_check finds the first byte that
 * breaks the well-formed byte sequences of Unicode (Table 3-7: no overlongs, no surrogates,
 * nothing above U+10FFFF). Decoding must accept anything, because a model can emit byte tokens
 * in any order; dsv4_utf8_lossy replaces each "maximal subpart" of an ill-formed sequence by one
 * U+FFFD, the substitution practice that Unicode recommends and that Rust's
 * String::from_utf8_lossy (and so the Hugging Face decoder) follows. */
#ifndef DSV4_TEXT_UTF8_H
#define DSV4_TEXT_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest the lossy output of n input bytes can be: each byte may become a 3-byte U+FFFD. */
#define DSV4_UTF8_LOSSY_MAX(n) (3 * (n))

/* Byte offset of the first ill-formed byte of s[0..n), or n if all of it is well formed. A
 * sequence cut short by the end of the input counts as ill formed at its lead byte. */
size_t dsv4_utf8_check(const uint8_t *s, size_t n);

/* Decode s[0..n) into out (room for DSV4_UTF8_LOSSY_MAX(n) bytes), replacing each maximal
 * ill-formed subpart by U+FFFD; returns the bytes written. When `final` is false, a trailing
 * sequence that is incomplete but could still become well formed is left unread: *consumed
 * tells how far the input was read (always n when final). */
size_t dsv4_utf8_lossy(const uint8_t *s, size_t n, bool final, uint8_t *out, size_t *consumed);

/* Write code point cp (< 0x110000) as UTF-8 into out (4 bytes of room); returns its length. */
int dsv4_utf8_put(uint32_t cp, uint8_t *out);

/* Decode the well-formed sequence at s (n bytes available) into *cp; returns its length, or 0
 * if it is not well formed. */
int dsv4_utf8_get(const uint8_t *s, size_t n, uint32_t *cp);

#endif
