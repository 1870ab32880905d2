/* utf8.c: validating and lossy UTF-8 decoding (see utf8.h).
 *
 * Both walks share one primitive, scan_sequence(), which looks at the sequence that starts at a
 * lead byte and says how many of its bytes are a well-formed prefix. The second byte carries
 * the special ranges of Unicode Table 3-7 (E0 needs A0..BF to forbid overlongs, ED needs 80..9F
 * to forbid surrogates, F0 and F4 bound the planes); the later ones are plain 80..BF. */
#include "text/utf8.h"

#include <string.h>

/* Length of the sequence a lead byte announces, 0 if b cannot start one. */
static int sequence_length(uint8_t b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

/* Allowed range of the byte after lead byte b. */
static void second_byte_range(uint8_t b, uint8_t *lo, uint8_t *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (b == 0xE0) *lo = 0xA0;
    else if (b == 0xED) *hi = 0x9F;
    else if (b == 0xF0) *lo = 0x90;
    else if (b == 0xF4) *hi = 0x8F;
}

/* How the sequence at s[0..n) begins: returns the announced length `want` (0 for a byte that
 * cannot lead) and sets *good to the number of bytes that form a well-formed prefix of it. The
 * sequence is complete and valid when *good == want; it is cut off by the end of the input when
 * *good == n < want. */
static int scan_sequence(const uint8_t *s, size_t n, int *good) {
    int want = sequence_length(s[0]);
    *good = want ? 1 : 0;
    for (int k = 1; k < want; k++) {
        if ((size_t)k >= n) return want;
        uint8_t lo = 0x80, hi = 0xBF;
        if (k == 1) second_byte_range(s[0], &lo, &hi);
        if (s[k] < lo || s[k] > hi) return want;
        *good = k + 1;
    }
    return want;
}

size_t dsv4_utf8_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { /* the common case, without the call */
            i++;
            continue;
        }
        int good, want = scan_sequence(s + i, n - i, &good);
        if (!want || good < want) return i;
        i += (size_t)want;
    }
    return n;
}

static const uint8_t replacement[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */

size_t dsv4_utf8_lossy(const uint8_t *s, size_t n, bool final, uint8_t *out, size_t *consumed) {
    size_t i = 0, o = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            out[o++] = s[i++];
            continue;
        }
        int good, want = scan_sequence(s + i, n - i, &good);
        if (want && good == want) { /* well formed: copy */
            for (int k = 0; k < want; k++) out[o++] = s[i + (size_t)k];
            i += (size_t)want;
            continue;
        }
        if (want && (size_t)good == n - i && !final) break; /* may still be completed */
        /* a maximal subpart: the well-formed prefix, or the lone bad byte */
        memcpy(out + o, replacement, 3);
        o += 3;
        i += good ? (size_t)good : 1;
    }
    if (consumed) *consumed = i;
    return o;
}

int dsv4_utf8_put(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

int dsv4_utf8_get(const uint8_t *s, size_t n, uint32_t *cp) {
    if (!n) return 0;
    int good, want = scan_sequence(s, n, &good);
    if (!want || good < want) return 0;
    static const uint8_t lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    uint32_t v = s[0] & lead_mask[want];
    for (int k = 1; k < want; k++) v = (v << 6) | (s[k] & 0x3F);
    *cp = v;
    return want;
}
