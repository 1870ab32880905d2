/* corpus.c: reading and cleaning the fortunes (see corpus.h). */
#include "data/corpus.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "base/base.h"
#include "text/strbuf.h"
#include "text/utf8.h"

/* A wrapped line of prose is at least this long; verse and dialogue lines are mostly shorter. */
#define WRAPPED_LINE 55
/* Keep a text only if at least this share of its non-space characters are letters. */
#define MIN_LETTER_SHARE 0.6

/* Collections that are not English prose: pictures made of characters, and Latin. */
static const char *const skipped_files[] = {"ascii-art", "translate-me"};

uint64_t dsv4_fnv1a(const void *bytes, size_t len) {
    const uint8_t *p = bytes;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* One line of a fortune: its indentation (tabs count 8) and its text, with inner runs of
 * blanks shrunk to one space and no blanks at either end. */
typedef struct line {
    int indent;
    dsv4_strbuf text;
} line;

static void read_line(const char *s, size_t n, line *l) {
    size_t i = 0;
    l->indent = 0;
    for (; i < n && (s[i] == ' ' || s[i] == '\t'); i++) l->indent += s[i] == '\t' ? 8 - l->indent % 8 : 1;
    dsv4_strbuf_clear(&l->text);
    bool blank = false;
    for (; i < n; i++) {
        char c = s[i] == '\t' || s[i] == '\r' ? ' ' : s[i];
        if (c == ' ') {
            blank = true;
            continue;
        }
        if (blank && l->text.len) dsv4_strbuf_putc(&l->text, ' ');
        blank = false;
        dsv4_strbuf_putc(&l->text, c);
    }
}

static bool is_attribution(const line *l) {
    return l->indent > 0 && l->text.len >= 2 && l->text.data[0] == '-' && l->text.data[1] == '-';
}

/* Whether the text is mostly letters (ASCII letters, or any non-ASCII character). */
static bool mostly_letters(const char *s, size_t n) {
    size_t letters = 0, visible = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n') continue;
        if (c >= 0x80 && (c & 0xC0) == 0x80) continue; /* UTF-8 continuation byte */
        visible++;
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') letters++;
        else if (c >= 0x80) letters++;
    }
    return visible && (double)letters >= MIN_LETTER_SHARE * (double)visible;
}

char *dsv4_corpus_clean(const char *raw, size_t len, bool *dropped) {
    *dropped = true;
    if (dsv4_utf8_check((const uint8_t *)raw, len) != len) return NULL;
    dsv4_strbuf out = DSV4_STRBUF_INIT;
    line prev = {0, DSV4_STRBUF_INIT}, cur = {0, DSV4_STRBUF_INIT};
    bool have_prev = false, pending_blank = false;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(raw + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - raw) : len;
        read_line(raw + i, end - i, &cur);
        i = end + 1;
        if (!cur.text.len) { /* blank lines separate paragraphs (once text has begun) */
            pending_blank = pending_blank || have_prev;
            have_prev = false;
            continue;
        }
        if (pending_blank) dsv4_strbuf_puts(&out, "\n\n");
        else if (have_prev) {
            bool join = prev.text.len >= WRAPPED_LINE && cur.indent <= prev.indent && !is_attribution(&cur);
            dsv4_strbuf_putc(&out, join ? ' ' : '\n');
        }
        dsv4_strbuf_append(&out, cur.text.data, cur.text.len);
        pending_blank = false;
        have_prev = true;
        line t = prev;
        prev = cur;
        cur = t;
    }
    dsv4_strbuf_free(&prev.text);
    dsv4_strbuf_free(&cur.text);
    if (out.failed) {
        *dropped = false;
        dsv4_strbuf_free(&out);
        return NULL;
    }
    if (!out.len || !mostly_letters(out.data, out.len)) {
        dsv4_strbuf_free(&out);
        return NULL;
    }
    *dropped = false;
    return dsv4_strbuf_release(&out, NULL);
}

static dsv4_status add_passage(dsv4_corpus *c, char *p) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 1024;
        char **np = realloc(c->passages, cap * sizeof *np);
        if (!np) {
            free(p);
            return dsv4_error(DSV4_ENOMEM, "out of memory for %zu passages", cap);
        }
        c->passages = np;
        c->cap = cap;
    }
    c->passages[c->n++] = p;
    c->bytes += strlen(p);
    return DSV4_OK;
}

/* The next fortune of text[*at..len): up to a line holding only "%", or the end. */
static bool next_fortune(const char *text, size_t len, size_t *at, size_t *start, size_t *n) {
    size_t i = *at;
    if (i >= len) return false;
    *start = i;
    for (;;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (end - i == 1 && text[i] == '%') {
            *n = i - *start;
            *at = end + 1;
            return true;
        }
        if (!nl) {
            *n = len - *start;
            *at = len;
            return true;
        }
        i = end + 1;
    }
}

dsv4_status dsv4_corpus_add_fortunes(dsv4_corpus *c, const char *text, size_t len, const char *name) {
    size_t at = 0, start, n;
    while (next_fortune(text, len, &at, &start, &n)) {
        bool dropped;
        char *p = dsv4_corpus_clean(text + start, n, &dropped);
        if (!p && !dropped) return dsv4_error(DSV4_ENOMEM, "%s: out of memory cleaning a fortune", name);
        if (!p) continue;
        dsv4_status st = add_passage(c, p);
        if (st) return st;
    }
    return DSV4_OK;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool skipped(const char *name) {
    if (name[0] == '.' || strchr(name, '.')) return true; /* .dat indexes, .u8 links */
    for (size_t i = 0; i < DSV4_ARRAY_LEN(skipped_files); i++)
        if (!strcmp(name, skipped_files[i])) return true;
    return false;
}

static dsv4_status read_whole(const char *path, char **text, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return dsv4_error(DSV4_EIO, "%s: %s", path, strerror(errno));
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) dsv4_strbuf_append(&b, chunk, k);
    bool err = ferror(f);
    fclose(f);
    if (err) {
        dsv4_strbuf_free(&b);
        return dsv4_error(DSV4_EIO, "%s: read error", path);
    }
    if (b.failed) return DSV4_ENOMEM;
    *text = dsv4_strbuf_release(&b, len);
    return *text ? DSV4_OK : DSV4_ENOMEM;
}

dsv4_status dsv4_corpus_load_fortunes(dsv4_corpus *c, const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return dsv4_error(DSV4_EIO, "%s: %s (install the Debian package `fortunes`, or pass the directory)", dir,
                          strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    dsv4_status st = DSV4_OK;
    struct dirent *e;
    while ((e = readdir(d)) && !st) {
        if (skipped(e->d_name)) continue;
        char path[4096];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &sb) || !S_ISREG(sb.st_mode)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                st = dsv4_error(DSV4_ENOMEM, "out of memory listing %s", dir);
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) st = dsv4_error(DSV4_ENOMEM, "out of memory listing %s", dir);
        else n++;
    }
    closedir(d);
    if (!st && !n) st = dsv4_error(DSV4_ENOTFOUND, "%s: no fortune files", dir);
    if (!st) qsort(names, n, sizeof *names, compare_names);
    for (size_t i = 0; i < n && !st; i++) {
        char path[4096], *text = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if ((st = read_whole(path, &text, &len))) break;
        st = dsv4_corpus_add_fortunes(c, text, len, path);
        free(text);
    }
    if (st) {
        for (size_t i = 0; i < n; i++) free(names[i]);
        free(names);
        return st;
    }
    c->files = names;
    c->n_files = (int)n;
    return DSV4_OK;
}

bool dsv4_corpus_held_out(const dsv4_corpus *c, size_t i) {
    return dsv4_fnv1a(c->passages[i], strlen(c->passages[i])) % 20 == 0;
}

void dsv4_corpus_free(dsv4_corpus *c) {
    for (size_t i = 0; i < c->n; i++) free(c->passages[i]);
    free(c->passages);
    for (int i = 0; i < c->n_files; i++) free(c->files[i]);
    free(c->files);
    memset(c, 0, sizeof *c);
}
