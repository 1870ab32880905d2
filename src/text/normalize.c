/* normalize.c: the Engram normaliser (see normalize.h), on ICU.
 *
 * ICU works in UTF-16: the text goes UTF-8 -> UTF-16 -> NFKC -> NFD, then code point by code
 * point through the mark filter and the lowercase map into a UTF-32 buffer where the
 * whitespace rules are applied, and back to UTF-8. */
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#include "base/base.h"
#include "text/normalize.h"

#define SENTINEL 0xE000 /* a private-use character that survives Strip in place of " " */

/* s -> normalised UTF-16 with ICU's normaliser `n` (into a malloc'd buffer). */
static dsv4_status icu_normalize(const UNormalizer2 *n, const UChar *s, int32_t len, UChar **out, int32_t *out_len) {
    UErrorCode err = U_ZERO_ERROR;
    int32_t need = unorm2_normalize(n, s, len, NULL, 0, &err);
    if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err))
        return dsv4_error(DSV4_EINVAL, "engram normaliser: ICU normalisation failed: %s", u_errorName(err));
    UChar *buf = dsv4_malloc(((size_t)need + 1) * sizeof(UChar), "normalised text");
    if (!buf) return DSV4_ENOMEM;
    err = U_ZERO_ERROR;
    unorm2_normalize(n, s, len, buf, need + 1, &err);
    if (U_FAILURE(err)) {
        free(buf);
        return dsv4_error(DSV4_EINVAL, "engram normaliser: ICU normalisation failed: %s", u_errorName(err));
    }
    *out = buf;
    *out_len = need;
    return DSV4_OK;
}

static bool hf_whitespace(UChar32 c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Append code point c as UTF-8. */
static size_t put_utf8(char *o, UChar32 c) {
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

dsv4_status dsv4_engram_normalize(const char *s, size_t len, char **out, size_t *out_len) {
    *out = NULL;
    if (len > (1u << 24)) return dsv4_error(DSV4_EINVAL, "engram normaliser: text of %zu bytes is too long", len);
    UErrorCode err = U_ZERO_ERROR;
    const UNormalizer2 *nfkc = unorm2_getNFKCInstance(&err);
    const UNormalizer2 *nfd = unorm2_getNFDInstance(&err);
    if (U_FAILURE(err)) return dsv4_error(DSV4_EUNSUPPORTED, "engram normaliser: ICU has no NFKC/NFD data: %s", u_errorName(err));

    int32_t n16 = 0;
    u_strFromUTF8(NULL, 0, &n16, s, (int32_t)len, &err);
    if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err))
        return dsv4_error(DSV4_EINVAL, "engram normaliser: text is not UTF-8 (%s)", u_errorName(err));
    UChar *u16 = dsv4_malloc(((size_t)n16 + 1) * sizeof(UChar), "UTF-16 text");
    if (!u16) return DSV4_ENOMEM;
    err = U_ZERO_ERROR;
    u_strFromUTF8(u16, n16 + 1, NULL, s, (int32_t)len, &err);
    UChar *a = NULL, *b = NULL;
    int32_t na = 0, nb = 0;
    dsv4_status rc = U_FAILURE(err) ? dsv4_error(DSV4_EINVAL, "engram normaliser: text is not UTF-8 (%s)", u_errorName(err))
                                    : DSV4_OK;
    if (!rc) rc = icu_normalize(nfkc, u16, n16, &a, &na);
    if (!rc) rc = icu_normalize(nfd, a, na, &b, &nb);
    free(u16);
    free(a);
    if (rc) return rc;

    /* marks out, lowercase per code point, whitespace runs collapsed (UTF-32) */
    UChar32 *cp = dsv4_malloc(((size_t)nb + 1) * sizeof(UChar32), "normalised text");
    if (!cp) {
        free(b);
        return DSV4_ENOMEM;
    }
    int32_t n = 0;
    for (int32_t i = 0; i < nb;) {
        UChar32 c;
        U16_NEXT(b, i, nb, c);
        if (U_GET_GC_MASK(c) & U_GC_M_MASK) continue; /* StripAccents */
        /* Simple per-code-point lowercase. Rust's full mapping differs only for U+0130, which
         * NFD has already split into I and a (stripped) combining dot. */
        c = u_tolower(c);
        if (hf_whitespace(c)) { /* [ \t\r\n]+ -> " ": every run member becomes one space */
            if (n > 0 && cp[n - 1] == ' ') continue;
            c = ' ';
        }
        cp[n++] = c;
    }
    free(b);
    if (n == 1 && cp[0] == ' ') cp[0] = SENTINEL;
    int32_t lo = 0, hi = n;
    while (lo < hi && u_isUWhiteSpace(cp[lo])) lo++;
    while (hi > lo && u_isUWhiteSpace(cp[hi - 1])) hi--;
    char *o = dsv4_malloc((size_t)(hi - lo) * 4 + 1, "normalised text");
    if (!o) {
        free(cp);
        return DSV4_ENOMEM;
    }
    size_t k = 0;
    for (int32_t i = lo; i < hi; i++) k += put_utf8(o + k, cp[i] == SENTINEL ? ' ' : cp[i]);
    o[k] = 0;
    free(cp);
    *out = o;
    *out_len = k;
    return DSV4_OK;
}
