/* prefix_cache.c: the two-tier (RAM, disk) store of session snapshots; see prefix_cache.h.
 *
 * Data. An entry owns a copy of its tokens and their hash, and a RAM blob, a disk file, or
 * both. A blob is refcounted, so the disk writer and a restore in progress can hold it while
 * the entry is evicted. Blob layout: [logits, vocab floats, if any][session snapshot]. A file
 * is a fixed header, the tokens, then the blob:
 *
 *   "DSV4PFX1" u64 model fingerprint  u32 n_tokens u32 flags (1: logits) u32 vocab u32 0
 *   u64 snapshot bytes  i32 tokens[n_tokens]  [f32 logits[vocab]]  snapshot
 *
 * named "<16 hex digits of the token hash>-<n_tokens>.kv" and written to a temporary name
 * first, so a crash never leaves a half file under a real name.
 *
 * Recency is one counter ("tick") bumped on every put and hit; each tier evicts its smallest
 * tick first. Evicting the RAM copy of an entry that is on disk keeps the entry (a later hit
 * reads the file); evicting the file of an entry with no RAM copy removes it.
 *
 * Locking: one mutex guards the index and the counters. Snapshots are taken and restored,
 * and files read and written, outside it. Because the index can change while the lock is not
 * held, an entry is always looked up again by its tokens after such a step. */
#include "cache/prefix_cache.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "infer/snapshot.h"

#define FILE_MAGIC "DSV4PFX1"
#define FLAG_LOGITS 1u

typedef struct file_header {
    char magic[8];
    uint64_t fingerprint;
    uint32_t n_tokens, flags, vocab, reserved;
    uint64_t snapshot_len;
} file_header;

typedef struct blob {
    int refs; /* guarded by the cache mutex */
    size_t len, logits_len;
    uint8_t *data;
} blob;

typedef struct entry {
    int32_t *tokens;
    int n;
    uint64_t hash;
    bool has_logits;
    blob *ram; /* NULL when only on disk */
    bool on_disk;
    size_t disk_len; /* file bytes */
    uint64_t tick;   /* last use */
} entry;

typedef struct write_job {
    int32_t *tokens;
    int n;
    uint64_t hash;
    blob *b;
    struct write_job *next;
} write_job;

struct dsv4_prefix_cache {
    dsv4_prefix_cache_opts o;
    char *dir;
    uint64_t fingerprint;
    int vocab;
    pthread_mutex_t mu;
    entry **e;
    int n, cap;
    uint64_t tick;
    size_t ram_used, disk_used;
    dsv4_prefix_cache_stats st;
    /* the disk writer */
    pthread_t writer;
    bool has_writer, stop, busy;
    pthread_cond_t wake, idle;
    write_job *head, *tail;
};

/* ---- hashing ------------------------------------------------------------------------------ */

static uint64_t hash_step(uint64_t h, int32_t tok) {
    uint32_t u = (uint32_t)tok;
    for (int i = 0; i < 4; i++) {
        h ^= (u >> (8 * i)) & 0xff;
        h *= 1099511628211ull;
    }
    return h;
}

#define HASH_SEED 1469598103934665603ull

static uint64_t hash_tokens(const int32_t *t, int n) {
    uint64_t h = HASH_SEED;
    for (int i = 0; i < n; i++) h = hash_step(h, t[i]);
    return h;
}

/* ---- blobs and entries (callers hold the mutex) ------------------------------------------- */

static void blob_unref(blob *b) {
    if (b && --b->refs == 0) {
        free(b->data);
        free(b);
    }
}

static blob *blob_new(size_t logits_len, size_t snap_len) {
    blob *b = dsv4_calloc(1, sizeof *b, "cache blob");
    if (!b) return NULL;
    b->data = dsv4_malloc(logits_len + snap_len, "cache snapshot");
    if (!b->data) {
        free(b);
        return NULL;
    }
    b->refs = 1;
    b->len = logits_len + snap_len;
    b->logits_len = logits_len;
    return b;
}

static entry *find_exact(dsv4_prefix_cache *pc, const int32_t *t, int n, uint64_t h, int *index) {
    for (int i = 0; i < pc->n; i++) {
        entry *e = pc->e[i];
        if (e->n == n && e->hash == h && !memcmp(e->tokens, t, (size_t)n * sizeof *t)) {
            if (index) *index = i;
            return e;
        }
    }
    return NULL;
}

static entry *entry_add(dsv4_prefix_cache *pc, const int32_t *t, int n, uint64_t h) {
    if (pc->n == pc->cap) {
        int cap = pc->cap ? 2 * pc->cap : 64;
        entry **ne = realloc(pc->e, (size_t)cap * sizeof *ne);
        if (!ne) return NULL;
        pc->e = ne;
        pc->cap = cap;
    }
    entry *e = dsv4_calloc(1, sizeof *e, "cache entry");
    if (!e) return NULL;
    e->tokens = dsv4_malloc((size_t)n * sizeof *t + 1, "cache entry tokens");
    if (!e->tokens) {
        free(e);
        return NULL;
    }
    memcpy(e->tokens, t, (size_t)n * sizeof *t);
    e->n = n;
    e->hash = h;
    e->tick = ++pc->tick;
    pc->e[pc->n++] = e;
    return e;
}

static void file_name(const dsv4_prefix_cache *pc, uint64_t hash, int n, char *buf, size_t len) {
    snprintf(buf, len, "%s/%016" PRIx64 "-%d.kv", pc->dir, hash, n);
}

static void entry_remove(dsv4_prefix_cache *pc, int i) {
    entry *e = pc->e[i];
    if (e->ram) pc->ram_used -= e->ram->len;
    blob_unref(e->ram);
    if (e->on_disk) {
        char path[4096];
        file_name(pc, e->hash, e->n, path, sizeof path);
        unlink(path);
        pc->disk_used -= e->disk_len;
    }
    free(e->tokens);
    free(e);
    pc->e[i] = pc->e[--pc->n];
}

static void evict_ram(dsv4_prefix_cache *pc) {
    while (pc->ram_used > pc->o.ram_bytes) {
        int victim = -1;
        for (int i = 0; i < pc->n; i++)
            if (pc->e[i]->ram && (victim < 0 || pc->e[i]->tick < pc->e[victim]->tick)) victim = i;
        if (victim < 0) return;
        entry *e = pc->e[victim];
        if (!e->on_disk) {
            entry_remove(pc, victim);
            continue;
        }
        pc->ram_used -= e->ram->len;
        blob_unref(e->ram);
        e->ram = NULL;
    }
}

static void evict_disk(dsv4_prefix_cache *pc) {
    while (pc->disk_used > pc->o.disk_bytes) {
        int victim = -1;
        for (int i = 0; i < pc->n; i++)
            if (pc->e[i]->on_disk && (victim < 0 || pc->e[i]->tick < pc->e[victim]->tick)) victim = i;
        if (victim < 0) return;
        entry *e = pc->e[victim];
        if (!e->ram) {
            entry_remove(pc, victim);
            continue;
        }
        char path[4096];
        file_name(pc, e->hash, e->n, path, sizeof path);
        unlink(path);
        pc->disk_used -= e->disk_len;
        e->on_disk = false;
        e->disk_len = 0;
    }
}

/* ---- the disk tier -------------------------------------------------------------------------- */

static dsv4_status write_file(dsv4_prefix_cache *pc, const write_job *j, size_t *bytes) {
    char path[4096], tmp[4200];
    file_name(pc, j->hash, j->n, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    file_header h = {.fingerprint = pc->fingerprint,
                     .n_tokens = (uint32_t)j->n,
                     .flags = j->b->logits_len ? FLAG_LOGITS : 0,
                     .vocab = (uint32_t)pc->vocab,
                     .snapshot_len = j->b->len - j->b->logits_len};
    memcpy(h.magic, FILE_MAGIC, 8);
    FILE *f = fopen(tmp, "wb");
    if (!f) return dsv4_error(DSV4_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t tb = (size_t)j->n * sizeof(int32_t);
    bool ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(j->tokens, 1, tb, f) == tb &&
              fwrite(j->b->data, 1, j->b->len, f) == j->b->len;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        dsv4_status rc = dsv4_error(DSV4_EIO, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
        return rc;
    }
    *bytes = sizeof h + tb + j->b->len;
    return DSV4_OK;
}

static void *writer_main(void *arg) {
    dsv4_prefix_cache *pc = arg;
    pthread_mutex_lock(&pc->mu);
    for (;;) {
        while (!pc->head && !pc->stop) pthread_cond_wait(&pc->wake, &pc->mu);
        if (!pc->head) break;
        write_job *j = pc->head;
        pc->head = j->next;
        if (!pc->head) pc->tail = NULL;
        pc->busy = true;
        pthread_mutex_unlock(&pc->mu);

        size_t bytes = 0;
        dsv4_status rc = write_file(pc, j, &bytes);

        pthread_mutex_lock(&pc->mu);
        pc->busy = false;
        if (rc) {
            pc->st.disk_errors++;
        } else {
            pc->st.disk_writes++;
            entry *e = find_exact(pc, j->tokens, j->n, j->hash, NULL);
            if (!e) { /* evicted from RAM meanwhile: it lives on as a disk entry */
                e = entry_add(pc, j->tokens, j->n, j->hash);
                if (e) e->has_logits = j->b->logits_len > 0;
            }
            if (e) {
                if (e->on_disk) pc->disk_used -= e->disk_len; /* rewritten in place */
                e->on_disk = true;
                e->disk_len = bytes;
                pc->disk_used += bytes;
                evict_disk(pc);
            }
        }
        blob_unref(j->b);
        free(j->tokens);
        free(j);
        pthread_cond_broadcast(&pc->idle);
    }
    pthread_mutex_unlock(&pc->mu);
    return NULL;
}

static void enqueue_write(dsv4_prefix_cache *pc, const entry *e, blob *b) {
    write_job *j = calloc(1, sizeof *j);
    int32_t *t = j ? malloc((size_t)e->n * sizeof *t + 1) : NULL;
    if (!t) {
        free(j);
        pc->st.disk_errors++;
        return;
    }
    memcpy(t, e->tokens, (size_t)e->n * sizeof *t);
    *j = (write_job){t, e->n, e->hash, b, NULL};
    b->refs++;
    if (pc->tail)
        pc->tail->next = j;
    else
        pc->head = j;
    pc->tail = j;
    pthread_cond_signal(&pc->wake);
}

/* Read a file's header and tokens; with want_blob also its data. Checks everything. */
static dsv4_status read_file(dsv4_prefix_cache *pc, const char *path, file_header *h, int32_t **tokens, blob **b) {
    FILE *f = fopen(path, "rb");
    if (!f) return dsv4_error(DSV4_EIO, "%s: %s", path, strerror(errno));
    dsv4_status rc = DSV4_OK;
    struct stat sb;
    *tokens = NULL;
    if (b) *b = NULL;
    if (fread(h, sizeof *h, 1, f) != 1 || memcmp(h->magic, FILE_MAGIC, 8)) {
        rc = dsv4_error(DSV4_EFORMAT, "%s: not a dsv4 prefix-cache file", path);
    } else if (h->fingerprint != pc->fingerprint || h->vocab != (uint32_t)pc->vocab) {
        rc = dsv4_error(DSV4_EINVAL, "%s: made by another model", path);
    } else if (fstat(fileno(f), &sb) || h->n_tokens == 0 || h->n_tokens > (1u << 30) ||
               (uint64_t)sb.st_size != sizeof *h + (uint64_t)h->n_tokens * 4 +
                                           ((h->flags & FLAG_LOGITS) ? (uint64_t)h->vocab * 4 : 0) + h->snapshot_len) {
        rc = dsv4_error(DSV4_EFORMAT, "%s: size does not match its header", path);
    } else if (!(*tokens = dsv4_malloc((size_t)h->n_tokens * 4, "cache file tokens"))) {
        rc = DSV4_ENOMEM;
    } else if (fread(*tokens, 4, h->n_tokens, f) != h->n_tokens) {
        rc = dsv4_error(DSV4_EIO, "%s: short read", path);
    } else if (b) {
        size_t ll = (h->flags & FLAG_LOGITS) ? (size_t)h->vocab * 4 : 0;
        *b = blob_new(ll, (size_t)h->snapshot_len);
        if (!*b)
            rc = DSV4_ENOMEM;
        else if (fread((*b)->data, 1, (*b)->len, f) != (*b)->len)
            rc = dsv4_error(DSV4_EIO, "%s: short read", path);
    }
    fclose(f);
    if (rc) {
        free(*tokens);
        *tokens = NULL;
        if (b && *b) {
            free((*b)->data);
            free(*b);
            *b = NULL;
        }
    }
    return rc;
}

typedef struct found_file {
    char *name;
    time_t mtime;
} found_file;

static int by_mtime(const void *a, const void *b) {
    const found_file *x = a, *y = b;
    return (x->mtime > y->mtime) - (x->mtime < y->mtime);
}

/* Index the files of the directory, oldest first so that recency follows their age. */
static dsv4_status load_dir(dsv4_prefix_cache *pc) {
    DIR *d = opendir(pc->dir);
    if (!d) return dsv4_error(DSV4_EIO, "%s: %s", pc->dir, strerror(errno));
    found_file *files = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t L = strlen(de->d_name);
        if (L < 4 || strcmp(de->d_name + L - 3, ".kv")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", pc->dir, de->d_name);
        struct stat sb;
        if (stat(path, &sb) || !S_ISREG(sb.st_mode)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            found_file *nf = realloc(files, cap * sizeof *nf);
            if (!nf) break;
            files = nf;
        }
        files[n].name = strdup(path);
        files[n].mtime = sb.st_mtime;
        if (files[n].name) n++;
    }
    closedir(d);
    if (n) qsort(files, n, sizeof *files, by_mtime);
    for (size_t i = 0; i < n; i++) {
        file_header h;
        int32_t *tokens;
        if (read_file(pc, files[i].name, &h, &tokens, NULL) == DSV4_OK) {
            uint64_t hash = hash_tokens(tokens, (int)h.n_tokens);
            char expect[4096];
            file_name(pc, hash, (int)h.n_tokens, expect, sizeof expect);
            /* a file under a name that is not its own would be unlinked under the wrong name */
            if (!strcmp(expect, files[i].name) && !find_exact(pc, tokens, (int)h.n_tokens, hash, NULL)) {
                entry *e = entry_add(pc, tokens, (int)h.n_tokens, hash);
                if (e) {
                    e->has_logits = h.flags & FLAG_LOGITS;
                    e->on_disk = true;
                    e->disk_len =
                        sizeof h + (size_t)h.n_tokens * 4 + (e->has_logits ? (size_t)h.vocab * 4 : 0) + h.snapshot_len;
                    pc->disk_used += e->disk_len;
                }
            }
            free(tokens);
        }
        free(files[i].name);
    }
    free(files);
    evict_disk(pc);
    dsv4_error_clear();
    return DSV4_OK;
}

/* ---- the interface ------------------------------------------------------------------------ */

dsv4_status dsv4_prefix_cache_open(dsv4_model *m, const dsv4_prefix_cache_opts *o, dsv4_prefix_cache **out) {
    *out = NULL;
    dsv4_prefix_cache *pc = dsv4_calloc(1, sizeof *pc, "prefix cache");
    if (!pc) return DSV4_ENOMEM;
    pc->o = *o;
    pc->fingerprint = dsv4_model_fingerprint(m);
    pc->vocab = dsv4_model_vocab(m);
    pthread_mutex_init(&pc->mu, NULL);
    pthread_cond_init(&pc->wake, NULL);
    pthread_cond_init(&pc->idle, NULL);
    dsv4_status rc = DSV4_OK;
    if (o->disk_dir && *o->disk_dir) {
        pc->dir = strdup(o->disk_dir);
        pc->o.disk_dir = pc->dir;
        if (!pc->dir)
            rc = dsv4_error(DSV4_ENOMEM, "out of memory");
        else if (mkdir(pc->dir, 0755) && errno != EEXIST)
            rc = dsv4_error(DSV4_EIO, "%s: cannot create the cache directory: %s", pc->dir, strerror(errno));
        if (!rc) rc = load_dir(pc);
        if (!rc) {
            if (pthread_create(&pc->writer, NULL, writer_main, pc))
                rc = dsv4_error(DSV4_ENOMEM, "cannot start the cache writer thread");
            else
                pc->has_writer = true;
        }
    }
    if (rc) {
        dsv4_prefix_cache_close(pc);
        return rc;
    }
    *out = pc;
    return DSV4_OK;
}

void dsv4_prefix_cache_close(dsv4_prefix_cache *pc) {
    if (!pc) return;
    if (pc->has_writer) {
        pthread_mutex_lock(&pc->mu);
        pc->stop = true;
        pthread_cond_signal(&pc->wake);
        pthread_mutex_unlock(&pc->mu);
        pthread_join(pc->writer, NULL);
    }
    for (int i = 0; i < pc->n; i++) {
        blob_unref(pc->e[i]->ram);
        free(pc->e[i]->tokens);
        free(pc->e[i]);
    }
    free(pc->e);
    free(pc->dir);
    pthread_mutex_destroy(&pc->mu);
    pthread_cond_destroy(&pc->wake);
    pthread_cond_destroy(&pc->idle);
    free(pc);
}

void dsv4_prefix_cache_flush(dsv4_prefix_cache *pc) {
    pthread_mutex_lock(&pc->mu);
    while (pc->head || pc->busy) pthread_cond_wait(&pc->idle, &pc->mu);
    pthread_mutex_unlock(&pc->mu);
}

dsv4_status dsv4_prefix_cache_put(dsv4_prefix_cache *pc, const int32_t *tokens, int n, const dsv4_session *s,
                                  const float *logits) {
    if (n < DSV4_MAX(pc->o.min_tokens, 1) || dsv4_session_pos(s) != n) return DSV4_OK;
    uint64_t h = hash_tokens(tokens, n);
    pthread_mutex_lock(&pc->mu);
    entry *e = find_exact(pc, tokens, n, h, NULL);
    bool refresh_only = e && (e->has_logits || !logits);
    if (e) e->tick = ++pc->tick;
    pthread_mutex_unlock(&pc->mu);
    if (refresh_only) return DSV4_OK;

    size_t ll = logits ? (size_t)pc->vocab * sizeof(float) : 0, sl = dsv4_session_snapshot_size(s);
    if (ll + sl > pc->o.ram_bytes && !pc->dir) return DSV4_OK; /* could never be kept */
    blob *b = blob_new(ll, sl);
    if (!b) return DSV4_ENOMEM;
    if (ll) memcpy(b->data, logits, ll);
    dsv4_status rc = dsv4_session_save(s, b->data + ll, sl, NULL);
    if (rc) {
        blob_unref(b);
        return rc;
    }
    pthread_mutex_lock(&pc->mu);
    e = find_exact(pc, tokens, n, h, NULL);
    if (!e) e = entry_add(pc, tokens, n, h);
    if (!e) {
        blob_unref(b);
        pthread_mutex_unlock(&pc->mu);
        return dsv4_error(DSV4_ENOMEM, "out of memory adding a cache entry");
    }
    if (e->ram) pc->ram_used -= e->ram->len;
    blob_unref(e->ram);
    e->ram = b;
    e->has_logits = ll > 0;
    e->tick = ++pc->tick;
    pc->ram_used += b->len;
    if (pc->has_writer) enqueue_write(pc, e, b);
    evict_ram(pc);
    pthread_mutex_unlock(&pc->mu);
    return DSV4_OK;
}

/* The best usable entry for the prompt whose prefix hashes are ph[0..n]; -1 if none. */
static int best_entry(dsv4_prefix_cache *pc, const int32_t *tokens, int n, const uint64_t *ph) {
    int best = -1;
    for (int i = 0; i < pc->n; i++) {
        const entry *e = pc->e[i];
        if (e->n > n || (e->n == n && !e->has_logits) || (best >= 0 && e->n <= pc->e[best]->n)) continue;
        if (e->hash == ph[e->n] && !memcmp(e->tokens, tokens, (size_t)e->n * sizeof *tokens)) best = i;
    }
    return best;
}

int dsv4_prefix_cache_restore(dsv4_prefix_cache *pc, const int32_t *tokens, int n, dsv4_session *s, float *logits_out) {
    uint64_t *ph = malloc(((size_t)n + 1) * sizeof *ph);
    if (!ph) {
        dsv4_session_reset(s);
        return 0;
    }
    ph[0] = HASH_SEED;
    for (int i = 0; i < n; i++) ph[i + 1] = hash_step(ph[i], tokens[i]);
    pthread_mutex_lock(&pc->mu);
    pc->st.lookups++;
    int got = 0;
    for (int attempt = 0; attempt < 8 && !got; attempt++) {
        int i = best_entry(pc, tokens, n, ph);
        if (i < 0) break;
        entry *e = pc->e[i];
        int len = e->n;
        uint64_t h = e->hash;
        blob *b = e->ram;
        if (b) {
            b->refs++;
        } else { /* on disk only: read it back without holding the lock */
            char path[4096];
            file_name(pc, h, len, path, sizeof path);
            pthread_mutex_unlock(&pc->mu);
            file_header fh;
            int32_t *ft = NULL;
            dsv4_status rc = read_file(pc, path, &fh, &ft, &b);
            if (!rc && ((int)fh.n_tokens != len || memcmp(ft, tokens, (size_t)len * sizeof *ft))) {
                blob_unref(b);
                b = NULL;
            }
            free(ft);
            pthread_mutex_lock(&pc->mu);
            pc->st.disk_reads++;
            int k;
            e = find_exact(pc, tokens, len, h, &k);
            if (!b) { /* unreadable: forget it */
                pc->st.disk_errors++;
                if (e) {
                    if (e->ram) { /* it came back into RAM meanwhile: keep that, drop the file */
                        e->on_disk = false;
                        pc->disk_used -= e->disk_len;
                    } else {
                        entry_remove(pc, k);
                    }
                }
                continue;
            }
            if (e && !e->ram) {
                e->ram = b;
                b->refs++;
                pc->ram_used += b->len;
            }
        }
        if (e) e->tick = ++pc->tick;
        pthread_mutex_unlock(&pc->mu);
        dsv4_status rc = dsv4_session_restore(s, b->data + b->logits_len, b->len - b->logits_len);
        if (!rc && len == n) memcpy(logits_out, b->data, b->logits_len);
        pthread_mutex_lock(&pc->mu);
        blob_unref(b);
        if (rc) { /* a bad snapshot: drop the entry, try the next best */
            int k;
            if (find_exact(pc, tokens, len, h, &k)) entry_remove(pc, k);
            continue;
        }
        got = len;
    }
    if (got) {
        pc->st.hits++;
        pc->st.hit_tokens += got;
    }
    evict_ram(pc);
    pthread_mutex_unlock(&pc->mu);
    free(ph);
    if (!got) dsv4_session_reset(s);
    return got;
}

void dsv4_prefix_cache_stats_get(dsv4_prefix_cache *pc, dsv4_prefix_cache_stats *out) {
    pthread_mutex_lock(&pc->mu);
    *out = pc->st;
    out->ram_entries = out->disk_entries = 0;
    for (int i = 0; i < pc->n; i++) {
        out->ram_entries += pc->e[i]->ram != NULL;
        out->disk_entries += pc->e[i]->on_disk;
    }
    out->ram_bytes = pc->ram_used;
    out->disk_bytes = pc->disk_used;
    pthread_mutex_unlock(&pc->mu);
}
