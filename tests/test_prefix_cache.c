/* test_prefix_cache.c: the prefix cache restores exactly what was saved, picks the right entry,
 * evicts least recently used first, and keeps entries on disk across a reopening.
 *
 * On the reference tiny model: a state restored from the cache must continue bit for bit like
 * the session that was saved (the same check as test_snapshot, through the cache), in RAM and
 * after a trip through the disk. Lookup must take the longest saved prefix that leaves work,
 * never an entry that is not a prefix, and a whole-prompt hit only with logits. Files that are
 * not cache files, or were made by another model, must be ignored. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/prefix_cache.h"
#include "check.h"
#include "dsv4.h"
#include "infer/snapshot.h"

#define MODEL DSV4_SHARED "/refvectors/models/tiny_v4flash_fp8"

enum { T = 48, CTX = 64 };
static int32_t ids[T];
static int V;

/* Logits of ids[from..T) fed one chunk at a time into s. */
static float *continue_from(dsv4_session *s, int from) {
    float *lg = malloc((size_t)(T - from) * V * sizeof(float));
    CHECK(!dsv4_forward(s, ids + from, T - from, DSV4_LOGITS_ALL, lg), "forward: %s", dsv4_errmsg());
    return lg;
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    if (d) closedir(d);
    rmdir(dir);
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) n += strstr(e->d_name, ".kv") != NULL;
    if (d) closedir(d);
    return n;
}

int main(void) {
    dsv4_model *m, *exact;
    dsv4_open_opts o = {0}, oe = {.numerics = DSV4_NUMERICS_EXACT};
    if (dsv4_model_open(MODEL, &o, &m) || dsv4_model_open(MODEL, &oe, &exact)) {
        CHECK(0, "open: %s", dsv4_errmsg());
        return check_done("test_prefix_cache");
    }
    V = dsv4_model_vocab(m);
    for (int i = 0; i < T; i++) ids[i] = (int32_t)((i * 37 + 11) % V);
    dsv4_session *a, *b;
    CHECK(!dsv4_session_new(m, CTX, &a) && !dsv4_session_new(m, CTX, &b), "sessions");
    float *lg = malloc((size_t)V * sizeof(float)), *got = malloc((size_t)V * sizeof(float));

    /* ---- RAM: save at 20 (no logits) and 30 (with logits) ---- */
    dsv4_prefix_cache *pc;
    dsv4_prefix_cache_opts co = {.ram_bytes = 64u << 20, .min_tokens = 4};
    CHECK(!dsv4_prefix_cache_open(m, &co, &pc), "open cache: %s", dsv4_errmsg());
    CHECK(!dsv4_forward(a, ids, 20, DSV4_LOGITS_NONE, NULL), "prefix 20");
    CHECK(!dsv4_prefix_cache_put(pc, ids, 20, a, NULL), "put 20");
    CHECK(!dsv4_forward(a, ids + 20, 10, DSV4_LOGITS_LAST, lg), "prefix 30");
    CHECK(!dsv4_prefix_cache_put(pc, ids, 30, a, lg), "put 30");
    float *want = continue_from(a, 30);

    CHECK(dsv4_prefix_cache_restore(pc, ids, T, b, got) == 30, "longest prefix");
    float *cont = continue_from(b, 30);
    CHECK(!memcmp(want, cont, (size_t)(T - 30) * V * sizeof(float)), "a restored state continues bit for bit");
    free(cont);

    CHECK(dsv4_prefix_cache_restore(pc, ids, 30, b, got) == 30, "whole prompt with logits");
    CHECK(!memcmp(got, lg, (size_t)V * sizeof(float)), "the saved logits come back");
    CHECK(dsv4_prefix_cache_restore(pc, ids, 20, b, got) == 0, "an entry without logits cannot cover a whole prompt");
    int32_t other[T];
    memcpy(other, ids, sizeof other);
    other[25] = (other[25] + 1) % V;
    CHECK(dsv4_prefix_cache_restore(pc, other, T, b, got) == 20, "a prompt that diverges at 25 gets the entry at 20");
    CHECK(dsv4_session_pos(b) == 20, "restored position");
    other[3] = (other[3] + 1) % V;
    CHECK(dsv4_prefix_cache_restore(pc, other, T, b, got) == 0, "no entry is a prefix");
    CHECK(dsv4_session_pos(b) == 0, "a miss leaves the session reset");
    dsv4_prefix_cache_stats st;
    dsv4_prefix_cache_stats_get(pc, &st);
    CHECK(st.lookups == 5 && st.hits == 3 && st.hit_tokens == 80 && st.ram_entries == 2, "stats %lld %lld %lld %lld",
          st.lookups, st.hits, st.hit_tokens, st.ram_entries);
    dsv4_prefix_cache_close(pc);

    /* ---- LRU: a budget of two entries ---- */
    dsv4_session_reset(a);
    CHECK(!dsv4_forward(a, ids, 10, DSV4_LOGITS_NONE, NULL), "prefix 10");
    size_t one = dsv4_session_snapshot_size(a);
    co.ram_bytes = 2 * one + one / 2;
    CHECK(!dsv4_prefix_cache_open(m, &co, &pc), "open cache");
    dsv4_prefix_cache_put(pc, ids, 10, a, NULL);
    dsv4_forward(a, ids + 10, 1, DSV4_LOGITS_NONE, NULL);
    dsv4_prefix_cache_put(pc, ids, 11, a, NULL);
    CHECK(dsv4_prefix_cache_restore(pc, ids, 10 + 2, b, got) == 11, "entry 11");
    CHECK(dsv4_prefix_cache_restore(pc, ids, 10 + 1, b, got) == 10, "entry 10, now the most recent");
    dsv4_forward(a, ids + 11, 1, DSV4_LOGITS_NONE, NULL);
    dsv4_prefix_cache_put(pc, ids, 12, a, NULL); /* evicts 11, the least recently used */
    dsv4_prefix_cache_stats_get(pc, &st);
    CHECK(st.ram_entries == 2 && st.ram_bytes <= co.ram_bytes, "two entries in budget (%lld, %zu)", st.ram_entries,
          st.ram_bytes);
    CHECK(dsv4_prefix_cache_restore(pc, ids, 12, b, got) == 10, "11 was evicted, 10 kept");
    dsv4_prefix_cache_close(pc);

    /* ---- disk: survives closing, files validated ---- */
    char dir[] = "/tmp/dsv4_pc_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    co = (dsv4_prefix_cache_opts){.ram_bytes = 64u << 20, .disk_dir = dir, .disk_bytes = 64u << 20, .min_tokens = 4};
    CHECK(!dsv4_prefix_cache_open(m, &co, &pc), "open disk cache: %s", dsv4_errmsg());
    dsv4_session_reset(a);
    CHECK(!dsv4_forward(a, ids, 30, DSV4_LOGITS_LAST, lg), "prefix 30");
    dsv4_prefix_cache_put(pc, ids, 30, a, lg);
    dsv4_prefix_cache_flush(pc);
    dsv4_prefix_cache_close(pc);
    CHECK(count_files(dir) == 1, "one file written");
    char junk[600];
    snprintf(junk, sizeof junk, "%s/0123456789abcdef-30.kv", dir);
    FILE *f = fopen(junk, "wb");
    if (f) {
        fputs("DSV4PFX1 but nothing after", f);
        fclose(f);
    }
    CHECK(!dsv4_prefix_cache_open(m, &co, &pc), "reopen: %s", dsv4_errmsg());
    dsv4_prefix_cache_stats_get(pc, &st);
    CHECK(st.disk_entries == 1 && st.ram_entries == 0, "indexed from disk: %lld on disk, %lld in RAM", st.disk_entries,
          st.ram_entries);
    CHECK(dsv4_prefix_cache_restore(pc, ids, T, b, got) == 30, "hit from disk");
    cont = continue_from(b, 30);
    CHECK(!memcmp(want, cont, (size_t)(T - 30) * V * sizeof(float)), "a state from disk continues bit for bit");
    free(cont);
    dsv4_prefix_cache_stats_get(pc, &st);
    CHECK(st.disk_reads == 1 && st.ram_entries == 1, "read once, kept in RAM");
    dsv4_prefix_cache_close(pc);

    /* another model (other numerics) ignores the file */
    dsv4_session *e;
    CHECK(!dsv4_session_new(exact, CTX, &e), "session");
    CHECK(!dsv4_prefix_cache_open(exact, &co, &pc), "open for the other model");
    CHECK(dsv4_prefix_cache_restore(pc, ids, T, e, got) == 0, "another model's file is not used");
    dsv4_prefix_cache_close(pc);
    dsv4_session_free(e);

    /* a disk budget of one file keeps the newest */
    co.disk_bytes = (size_t)(dsv4_session_snapshot_size(a) * 3 / 2);
    CHECK(!dsv4_prefix_cache_open(m, &co, &pc), "reopen");
    dsv4_forward(a, ids + 30, 2, DSV4_LOGITS_NONE, NULL);
    dsv4_prefix_cache_put(pc, ids, 32, a, NULL);
    dsv4_prefix_cache_flush(pc);
    dsv4_prefix_cache_stats_get(pc, &st);
    CHECK(st.disk_entries == 1 && st.disk_bytes <= co.disk_bytes, "disk budget: %lld entries, %zu bytes",
          st.disk_entries, st.disk_bytes);
    dsv4_prefix_cache_close(pc);
    CHECK(count_files(dir) == 2, "the newest file and the junk remain (%d)", count_files(dir));

    remove_dir(dir);
    free(want);
    free(lg);
    free(got);
    dsv4_session_free(a);
    dsv4_session_free(b);
    dsv4_model_close(m);
    dsv4_model_close(exact);
    return check_done("test_prefix_cache");
}
