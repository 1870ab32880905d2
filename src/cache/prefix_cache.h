/* prefix_cache.h: saved session states keyed by the tokens that produced them.
 *
 * Context caching in one sentence: when a prompt begins with tokens the server has already
 * run, restore the state it had after them instead of running them again. An entry is a
 * token sequence t[0..n) with the session snapshot taken right after feeding it (any position
 * is a valid snapshot point, see infer/snapshot.h) and, when the caller had them, the logits of
 * its last position, which let a prompt that is entirely cached start sampling at once.
 *
 * Lookup is the longest entry that is a prefix of the prompt and leaves something to compute:
 * shorter than the prompt, or exactly the prompt and holding logits. Prefix hashes of the
 * prompt are computed once, so each entry is checked by one hash comparison (and a memcmp on
 * a hash match).
 *
 * Two tiers. RAM holds snapshots under a byte budget, least recently used evicted first. With
 * a disk directory, every entry is also written there (by a background thread, so the engine
 * never waits on the disk) as one file per entry under its own byte budget, LRU as well; at
 * start the files are indexed (their tokens only) so the cache survives a restart. A file is
 * used only if it was made by the same model (dsv4_model_fingerprint: config, numerics, row
 * formats, weights): anything else in the directory is ignored. A disk hit is read back
 * synchronously by the restoring thread and kept in RAM again.
 *
 * Thread safety: every function may be called from any thread. */
#ifndef DSV4_PREFIX_CACHE_H
#define DSV4_PREFIX_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "dsv4.h"

typedef struct dsv4_prefix_cache dsv4_prefix_cache;

typedef struct dsv4_prefix_cache_opts {
    size_t ram_bytes;     /* RAM budget for snapshots */
    const char *disk_dir; /* NULL: no disk tier */
    size_t disk_bytes;    /* disk budget */
    int min_tokens;       /* entries shorter than this are not kept */
} dsv4_prefix_cache_opts;

typedef struct dsv4_prefix_cache_stats {
    long long lookups, hits, hit_tokens;
    long long ram_entries, disk_entries;
    size_t ram_bytes, disk_bytes;
    long long disk_writes, disk_reads, disk_errors;
} dsv4_prefix_cache_stats;

/* Opens the cache for model m (whose fingerprint validates disk entries); with a disk
 * directory, creates it if needed and indexes the files already there. */
dsv4_status dsv4_prefix_cache_open(dsv4_model *m, const dsv4_prefix_cache_opts *o, dsv4_prefix_cache **out);
/* Waits for pending disk writes, then frees everything. */
void dsv4_prefix_cache_close(dsv4_prefix_cache *pc);

/* Save the state of session s, which has consumed exactly tokens[0..n) (n == its position),
 * with the logits of position n-1 (vocab floats) or NULL. An entry for the same tokens is
 * refreshed instead (and gains the logits if it lacked them). */
dsv4_status dsv4_prefix_cache_put(dsv4_prefix_cache *pc, const int32_t *tokens, int n, const dsv4_session *s,
                                  const float *logits);

/* Restore into s the longest usable saved prefix of tokens[0..n) and return its length (0:
 * nothing usable; s is then reset). When the whole prompt was cached (the return value is n)
 * its logits are copied to logits_out. A snapshot that fails to load is dropped and the next
 * best is tried. */
int dsv4_prefix_cache_restore(dsv4_prefix_cache *pc, const int32_t *tokens, int n, dsv4_session *s, float *logits_out);

void dsv4_prefix_cache_stats_get(dsv4_prefix_cache *pc, dsv4_prefix_cache_stats *out);

/* Block until the disk writer has written everything queued so far (tests, shutdown). */
void dsv4_prefix_cache_flush(dsv4_prefix_cache *pc);

#endif
