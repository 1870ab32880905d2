/* batch.c: the data set on disk, and the rows of a training step.
 *
 * `dsv4 data build` writes each split as three files (docs/training-data.md): the token ids
 * (int32 little-endian, all sequences back to back), one loss-mask byte per token, and an index
 * of records (first token, length, family, flags). The token and mask files are mapped; the
 * index is read and checked record by record, so a damaged file is an error naming the
 * record, never a read out of bounds.
 *
 * A row is what one training forward sees. Its examples all come from one family: a needle
 * alone in its row (it needs its own long context, and the retrieval at its end must not be
 * helped by a neighbour), the other families packed back to back until the next example would
 * pass `seq` tokens; an example longer than `seq` gets a row of its own, one longer than
 * `max_len` is skipped. Every example starts with its own <｜begin▁of▁sentence｜>, and the
 * target before it (predicting that BOS) is masked out by the data itself. Rows of a step
 * draw their family from the phase's mix with a random stream seeded by (seed, step, row), so
 * the choice depends on nothing else, and each family is read in file order (already shuffled
 * by the builder) from a cursor that the checkpoint saves; a family read to its end starts
 * over. */
#include <stdio.h>
#include <sys/mman.h>

#include "base/base.h"
#include "infer/sampler.h"
#include "io/file.h"
#include "train/trainer.h"

static uint32_t get_u32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get_u64(const uint8_t *p) { return get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

void dsv4_dataset_close(dsv4_dataset *d) {
    if (!d) return;
    for (int i = 0; i < 2; i++)
        if (d->map_sizes[i]) munmap((void *)d->maps[i], d->map_sizes[i]);
    for (int f = 0; f < DSV4_N_FAMILIES; f++) free(d->by_family[f]);
    free(d->seq);
    free(d);
}

dsv4_status dsv4_dataset_open(const char *dir, const char *split, int vocab, dsv4_dataset **out) {
    *out = NULL;
    char path[4096];
    dsv4_dataset *d = calloc(1, sizeof *d);
    if (!d) return dsv4_error(DSV4_ENOMEM, "out of memory for a data set");
    dsv4_status rc;
    const char *ext[2] = {"tokens", "mask"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s.%s", dir, split, ext[i]);
        if ((rc = dsv4_file_map(path, &d->maps[i], &d->map_sizes[i]))) goto fail;
    }
    d->tokens = (const int32_t *)d->maps[0];
    d->mask = d->maps[1];
    d->n_tokens = d->map_sizes[0] / 4;
    snprintf(path, sizeof path, "%s/%s.tokens", dir, split);
    if (d->map_sizes[0] % 4 || d->map_sizes[1] != d->n_tokens) {
        rc = dsv4_error(DSV4_EFORMAT, "%s: %zu bytes of tokens and %zu mask bytes do not match", path, d->map_sizes[0],
                        d->map_sizes[1]);
        goto fail;
    }

    snprintf(path, sizeof path, "%s/%s.index", dir, split);
    char *index;
    size_t len;
    if ((rc = dsv4_file_read(path, (size_t)1 << 32, &index, &len))) goto fail;
    const uint8_t *p = (const uint8_t *)index;
    if (len < 32 || memcmp(p, "DSV4SEQ1", 8) || get_u32(p + 8) != 1 || get_u32(p + 12) != 16) {
        free(index);
        rc = dsv4_error(DSV4_EFORMAT, "%s: not a version 1 sequence index (DSV4SEQ1, records of 16 bytes)", path);
        goto fail;
    }
    uint64_t n = get_u64(p + 16), total = get_u64(p + 24);
    if (n > (len - 32) / 16 || (len - 32) != n * 16 || total != d->n_tokens) {
        free(index);
        rc = dsv4_error(DSV4_EFORMAT, "%s: header says %llu sequences of %llu tokens; the file has %zu bytes and the "
                                      "tokens file %zu tokens", path, (unsigned long long)n, (unsigned long long)total, len,
                        d->n_tokens);
        goto fail;
    }
    d->n_seq = (size_t)n;
    d->seq = malloc((d->n_seq + 1) * sizeof *d->seq);
    if (!d->seq) {
        free(index);
        rc = dsv4_error(DSV4_ENOMEM, "out of memory for %zu sequence records", d->n_seq);
        goto fail;
    }
    for (size_t i = 0; i < d->n_seq; i++) {
        const uint8_t *r = p + 32 + 16 * i;
        dsv4_seq_rec *s = &d->seq[i];
        s->first = get_u64(r);
        s->len = get_u32(r + 8);
        s->family = (uint16_t)(r[12] | r[13] << 8);
        s->flags = (uint16_t)(r[14] | r[15] << 8);
        if (s->family >= DSV4_N_FAMILIES || s->len == 0 || s->first > d->n_tokens || s->len > d->n_tokens - s->first) {
            free(index);
            rc = dsv4_error(DSV4_EFORMAT, "%s: record %zu (first %llu, length %u, family %u) is outside the %zu tokens",
                            path, i, (unsigned long long)s->first, s->len, s->family, d->n_tokens);
            goto fail;
        }
        d->n_family[s->family]++;
    }
    free(index);
    for (int f = 0; f < DSV4_N_FAMILIES; f++)
        if (!(d->by_family[f] = malloc((d->n_family[f] + 1) * sizeof(uint32_t)))) {
            rc = dsv4_error(DSV4_ENOMEM, "out of memory for the family lists");
            goto fail;
        }
    size_t fill[DSV4_N_FAMILIES] = {0};
    for (size_t i = 0; i < d->n_seq; i++) d->by_family[d->seq[i].family][fill[d->seq[i].family]++] = (uint32_t)i;
    if (vocab > 0)
        for (size_t i = 0; i < d->n_tokens; i++)
            if (d->tokens[i] < 0 || d->tokens[i] >= vocab) {
                snprintf(path, sizeof path, "%s/%s.tokens", dir, split);
                rc = dsv4_error(DSV4_EFORMAT, "%s: token %zu is id %d, outside the model's vocabulary of %d", path, i,
                                d->tokens[i], vocab);
                goto fail;
            }
    *out = d;
    return DSV4_OK;
fail:
    dsv4_dataset_close(d);
    return rc;
}

void dsv4_row_free(dsv4_row *row) {
    free(row->ids);
    free(row->mask);
    memset(row, 0, sizeof *row);
}

static dsv4_status row_reserve(dsv4_row *row, int n) {
    if (n <= row->cap) return DSV4_OK;
    int32_t *ids = realloc(row->ids, (size_t)n * sizeof(int32_t));
    if (ids) row->ids = ids;
    uint8_t *mask = realloc(row->mask, (size_t)n);
    if (mask) row->mask = mask;
    if (!ids || !mask) return dsv4_error(DSV4_ENOMEM, "out of memory for a row of %d tokens", n);
    row->cap = n;
    return DSV4_OK;
}

dsv4_status dsv4_row_fill(const dsv4_dataset *d, int f, int seq, int max_len, dsv4_cursors *cur, dsv4_row *row) {
    row->T = row->examples = row->targets = 0;
    row->family = f;
    size_t n = d->n_family[f];
    if (n == 0) return dsv4_error(DSV4_EINVAL, "the data set has no %s examples", dsv4_family_name((dsv4_family)f));
    bool alone = f == DSV4_FAMILY_NEEDLE;
    for (size_t skipped = 0; skipped <= n;) {
        const dsv4_seq_rec *s = &d->seq[d->by_family[f][cur->next[f] % n]];
        if ((int64_t)s->len > max_len) { /* too long for any row */
            cur->next[f]++;
            skipped++;
            continue;
        }
        bool own_row = alone || (int64_t)s->len > seq;
        if (row->T > 0 && (own_row || row->T + (int64_t)s->len > seq)) break;
        dsv4_status rc = row_reserve(row, row->T + (int)s->len);
        if (rc) return rc;
        memcpy(row->ids + row->T, d->tokens + s->first, (size_t)s->len * sizeof(int32_t));
        memcpy(row->mask + row->T, d->mask + s->first, s->len);
        row->T += (int)s->len;
        row->examples++;
        cur->next[f]++;
        if (own_row) break;
    }
    if (row->T == 0)
        return dsv4_error(DSV4_EINVAL, "no %s example fits in %d tokens", dsv4_family_name((dsv4_family)f), max_len);
    for (int i = 1; i < row->T; i++) row->targets += row->mask[i] != 0;
    return DSV4_OK;
}

bool dsv4_family_fits(const dsv4_dataset *d, int f, int max_len) {
    for (size_t i = 0; i < d->n_family[f]; i++)
        if ((int64_t)d->seq[d->by_family[f][i]].len <= max_len) return true;
    return false;
}

int dsv4_row_family(const dsv4_phase *ph, uint64_t seed, long step, int r) {
    double total = 0.0;
    for (int f = 0; f < DSV4_N_FAMILIES; f++) total += ph->mix[f];
    dsv4_rng rng;
    dsv4_rng_seed(&rng, (seed * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)step << 20) ^ (uint64_t)r);
    double x = dsv4_rng_uniform(&rng) * total;
    int last = 0;
    for (int f = 0; f < DSV4_N_FAMILIES; f++) {
        if (ph->mix[f] <= 0) continue;
        last = f;
        if (x < ph->mix[f]) return f;
        x -= ph->mix[f];
    }
    return last;
}
