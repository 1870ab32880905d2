/* strbuf.h: a growable byte string for building prompts and JSON text.
 *
 * Text assembly appends many small pieces; checking every append for a failed allocation
 * would bury the logic, so the buffer is "sticky": the first failed allocation sets `failed`
 * (and the library error, DSV4_ENOMEM), later appends do nothing, and the builder checks
 * once at the end with dsv4_strbuf_status(). The contents are always NUL-terminated (when
 * anything was allocated) but may also contain NUL bytes: `len` is authoritative. */
#ifndef DSV4_TEXT_STRBUF_H
#define DSV4_TEXT_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "dsv4.h"

typedef struct dsv4_strbuf {
    char *data;  /* NULL until the first append */
    size_t len;  /* bytes in use, not counting the terminating NUL */
    size_t cap;  /* bytes allocated */
    bool failed; /* an allocation failed; the contents are incomplete */
} dsv4_strbuf;

#define DSV4_STRBUF_INIT {NULL, 0, 0, false}

void dsv4_strbuf_append(dsv4_strbuf *b, const void *bytes, size_t n);
void dsv4_strbuf_puts(dsv4_strbuf *b, const char *s);
void dsv4_strbuf_putc(dsv4_strbuf *b, char c);
/* Make room for `extra` more bytes; false (and `failed`) if that cannot be done. */
bool dsv4_strbuf_reserve(dsv4_strbuf *b, size_t extra);
/* Forget the contents but keep the allocation. */
void dsv4_strbuf_clear(dsv4_strbuf *b);
/* Drop bytes from the end (n larger than len empties the buffer). */
void dsv4_strbuf_truncate(dsv4_strbuf *b, size_t len);
/* Remove the first n bytes, moving the rest to the front. */
void dsv4_strbuf_consume(dsv4_strbuf *b, size_t n);
/* DSV4_OK, or DSV4_ENOMEM if any append failed. */
dsv4_status dsv4_strbuf_status(const dsv4_strbuf *b);
/* Hand the NUL-terminated contents to the caller (never NULL on success; an empty buffer
 * yields ""), leaving the buffer empty. NULL if the buffer failed (the memory is freed). */
char *dsv4_strbuf_release(dsv4_strbuf *b, size_t *len);
void dsv4_strbuf_free(dsv4_strbuf *b);

#endif
