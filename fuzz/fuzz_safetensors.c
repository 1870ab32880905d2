/* fuzz_safetensors.c: libFuzzer target for the safetensors header parser.
 *
 * The input is a whole file image handed to dsv4_st_open_memory. Beyond "no crash, no leak,
 * no undefined behaviour" (the sanitizers' job), the target checks the promises the reader
 * makes to the rest of the engine, and aborts when one is broken:
 *   - on success, every tensor lies inside the image, its size is what dtype and shape imply,
 *     its element count fits in int64, a lookup by name finds it, and no two tensors with
 *     data share a byte;
 *   - on failure, the message names the file (so a user knows which shard is bad).
 * The same file is built without libFuzzer into a replay tool (fuzz/replay.c) that CTest runs
 * over the seed corpus, so the checks also guard CI builds made with gcc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

static int by_offset(const void *a, const void *b) {
    const dsv4_tensor *x = *(const dsv4_tensor *const *)a, *y = *(const dsv4_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

#define LABEL "fuzz.safetensors"

#define REQUIRE(cond)                                                                  \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "fuzz_safetensors: broken promise: %s (%s)\n", #cond,      \
                    dsv4_errmsg());                                                    \
            abort();                                                                   \
        }                                                                              \
    } while (0)

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    dsv4_st *st;
    dsv4_status rc = dsv4_st_open_memory(data, size, LABEL, &st);
    if (rc != DSV4_OK) {
        REQUIRE(st == NULL);
        REQUIRE(strstr(dsv4_errmsg(), LABEL) != NULL);
        return 0;
    }
    volatile unsigned char sink = 0;
    for (int i = 0; i < dsv4_st_count(st); i++) {
        const dsv4_tensor *t = dsv4_st_at(st, i);
        const unsigned char *p = t->data;
        REQUIRE(p >= data && t->nbytes <= size && p - data <= (ptrdiff_t)(size - t->nbytes));
        REQUIRE(t->offset == (size_t)(p - data));
        REQUIRE(t->ndim >= 0 && t->ndim <= DSV4_MAX_DIMS);
        int64_t numel = dsv4_tensor_numel(t);
        REQUIRE(numel >= 0 && (size_t)numel * dsv4_dtype_size(t->dtype) == t->nbytes);
        REQUIRE(dsv4_st_find(st, t->name) == t);
        if (t->nbytes) sink ^= p[0] ^ p[t->nbytes - 1];
    }
    (void)sink;
    /* no overlap: sorted by start, each non-empty tensor begins at or after every earlier end */
    int n = dsv4_st_count(st);
    const dsv4_tensor **order = malloc(((size_t)n + 1) * sizeof *order);
    REQUIRE(order != NULL);
    for (int i = 0; i < n; i++) order[i] = dsv4_st_at(st, i);
    qsort(order, (size_t)n, sizeof *order, by_offset);
    size_t end = 0;
    for (int i = 0; i < n; i++) {
        if (!order[i]->nbytes) continue;
        REQUIRE(order[i]->offset >= end);
        end = order[i]->offset + order[i]->nbytes;
    }
    free(order);
    dsv4_st_close(st);
    return 0;
}
