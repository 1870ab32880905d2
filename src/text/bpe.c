/* bpe.c: the byte-level alphabet and the BPE merge loop (see bpe.h). */
#include "text/bpe.h"

dsv4_status dsv4_idvec_reserve(dsv4_idvec *a, size_t more) {
    if (a->cap - a->n >= more) return DSV4_OK;
    size_t cap = a->cap ? a->cap : 64;
    while (cap - a->n < more) {
        if (cap > SIZE_MAX / 2 / sizeof *a->v) return dsv4_error(DSV4_ENOMEM, "token list too long");
        cap *= 2;
    }
    int32_t *v = realloc(a->v, cap * sizeof *v);
    if (!v) return dsv4_error(DSV4_ENOMEM, "out of memory growing a token list to %zu ids", cap);
    a->v = v;
    a->cap = cap;
    return DSV4_OK;
}

/* GPT-2's bytes_to_unicode(): bytes that are printable and not space keep their code point;
 * the others (0-32, 127-160, 173) take U+0100, U+0101, ... in byte order. */
static bool byte_is_printable(unsigned b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

/* The non-printable bytes are 0-32 (33 of them), 127-160 (34) and 173 (1), in that order. */
uint32_t dsv4_byte_level_char(uint8_t byte) {
    if (byte_is_printable(byte)) return byte;
    if (byte <= 32) return 256 + byte;
    if (byte <= 160) return 256 + 33 + (byte - 127);
    return 256 + 67; /* 173, the soft hyphen */
}

int dsv4_byte_level_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    uint32_t k = cp - 256; /* the k-th non-printable byte */
    if (k < 33) return (int)k;
    if (k < 67) return (int)(127 + k - 33);
    if (k == 67) return 173;
    return -1;
}

/* ---- the candidate heap: a binary min-heap of (rank << 32 | position) ------------------- */

static dsv4_status heap_push(dsv4_bpe_work *w, uint32_t rank, uint32_t pos) {
    if (w->n_heap == w->cap_heap) {
        size_t cap = w->cap_heap ? 2 * w->cap_heap : 256;
        uint64_t *h = realloc(w->heap, cap * sizeof *h);
        if (!h) return dsv4_error(DSV4_ENOMEM, "out of memory for the BPE merge queue");
        w->heap = h;
        w->cap_heap = cap;
    }
    uint64_t v = (uint64_t)rank << 32 | pos;
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (w->heap[parent] <= v) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = v;
    return DSV4_OK;
}

static uint64_t heap_pop(dsv4_bpe_work *w) {
    uint64_t top = w->heap[0], last = w->heap[--w->n_heap];
    size_t n = w->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && w->heap[c + 1] < w->heap[c]) c++;
        if (last <= w->heap[c]) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

/* Queue the merge of symbol `pos` with its right neighbour, if that pair has one. */
static dsv4_status queue_pair(const dsv4_bpe *b, dsv4_bpe_work *w, int32_t pos) {
    int32_t next = w->sym[pos].next;
    if (next < 0) return DSV4_OK;
    const dsv4_merge *m = dsv4_pairmap_get(&b->merges, w->sym[pos].id, w->sym[next].id);
    return m ? heap_push(w, m->rank, (uint32_t)pos) : DSV4_OK;
}

dsv4_status dsv4_bpe_encode(const dsv4_bpe *b, const uint8_t *piece, size_t len, dsv4_bpe_work *w,
                            dsv4_idvec *out) {
    if (len == 0) return DSV4_OK;
    if (len == 1) return dsv4_idvec_push(out, b->byte_token[piece[0]]);
    if (len > INT32_MAX) return dsv4_error(DSV4_EINVAL, "a pre-tokenized piece of %zu bytes is too long", len);
    if (w->cap_sym < len) {
        dsv4_bpe_symbol *s = realloc(w->sym, len * sizeof *s);
        if (!s) return dsv4_error(DSV4_ENOMEM, "out of memory for BPE over %zu bytes", len);
        w->sym = s;
        w->cap_sym = len;
    }
    int32_t n = (int32_t)len;
    for (int32_t i = 0; i < n; i++)
        w->sym[i] = (dsv4_bpe_symbol){b->byte_token[piece[i]], i - 1, i + 1 < n ? i + 1 : -1};
    w->n_heap = 0;
    dsv4_status st = DSV4_OK;
    for (int32_t i = 0; i + 1 < n && !st; i++) st = queue_pair(b, w, i);

    while (w->n_heap && !st) {
        uint64_t top = heap_pop(w);
        uint32_t rank = (uint32_t)(top >> 32);
        int32_t pos = (int32_t)(uint32_t)top;
        dsv4_bpe_symbol *left = &w->sym[pos];
        if (left->id < 0 || left->next < 0) continue; /* merged away, or now the last symbol */
        dsv4_bpe_symbol *right = &w->sym[left->next];
        /* Stale if the pair here changed since it was queued: ranks are unique per pair. */
        const dsv4_merge *m = dsv4_pairmap_get(&b->merges, left->id, right->id);
        if (!m || m->rank != rank) continue;
        left->id = m->result;
        left->next = right->next;
        if (right->next >= 0) w->sym[right->next].prev = pos;
        right->id = -1;
        if (left->prev >= 0) st = queue_pair(b, w, left->prev);
        if (!st) st = queue_pair(b, w, pos);
    }
    if (st) return st;
    for (int32_t i = 0; i >= 0; i = w->sym[i].next)
        if ((st = dsv4_idvec_push(out, w->sym[i].id))) return st;
    return DSV4_OK;
}

void dsv4_bpe_work_free(dsv4_bpe_work *w) {
    free(w->sym);
    free(w->heap);
    *w = (dsv4_bpe_work){0};
}

void dsv4_bpe_free(dsv4_bpe *b) { dsv4_pairmap_free(&b->merges); }
