/* strbuf.c: the growable byte string (see strbuf.h for the sticky-failure design). */
#include "text/strbuf.h"

#include "base/base.h"

bool dsv4_strbuf_reserve(dsv4_strbuf *b, size_t extra) {
    if (b->failed) return false;
    if (extra > SIZE_MAX - 1 - b->len) {
        b->failed = true;
        dsv4_error(DSV4_ENOMEM, "text buffer: %zu + %zu bytes overflows", b->len, extra);
        return false;
    }
    size_t need = b->len + extra + 1; /* + the terminating NUL */
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        dsv4_error(DSV4_ENOMEM, "out of memory growing a text buffer to %zu bytes", cap);
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void dsv4_strbuf_append(dsv4_strbuf *b, const void *bytes, size_t n) {
    if (!dsv4_strbuf_reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = 0;
}

void dsv4_strbuf_puts(dsv4_strbuf *b, const char *s) { dsv4_strbuf_append(b, s, strlen(s)); }

void dsv4_strbuf_putc(dsv4_strbuf *b, char c) { dsv4_strbuf_append(b, &c, 1); }

void dsv4_strbuf_clear(dsv4_strbuf *b) { dsv4_strbuf_truncate(b, 0); }

void dsv4_strbuf_truncate(dsv4_strbuf *b, size_t len) {
    if (len < b->len) {
        b->len = len;
        b->data[len] = 0;
    }
}

void dsv4_strbuf_consume(dsv4_strbuf *b, size_t n) {
    if (n >= b->len) {
        dsv4_strbuf_truncate(b, 0);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = 0;
}

dsv4_status dsv4_strbuf_status(const dsv4_strbuf *b) { return b->failed ? DSV4_ENOMEM : DSV4_OK; }

char *dsv4_strbuf_release(dsv4_strbuf *b, size_t *len) {
    if (b->failed) {
        dsv4_strbuf_free(b);
        return NULL;
    }
    if (!b->data) dsv4_strbuf_reserve(b, 0);
    if (b->failed) return NULL;
    b->data[b->len] = 0;
    char *out = b->data;
    if (len) *len = b->len;
    *b = (dsv4_strbuf)DSV4_STRBUF_INIT;
    return out;
}

void dsv4_strbuf_free(dsv4_strbuf *b) {
    free(b->data);
    *b = (dsv4_strbuf)DSV4_STRBUF_INIT;
}
