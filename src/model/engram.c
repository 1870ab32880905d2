/* engram.c: the Engram module, its tables' placement and the ahead-of-time gather.
 *
 * Placement. The tables are the bulk of a V4.1 checkpoint (2 x 94 GiB in Flash) yet a token
 * reads only 24 rows of each. By default they stay in the checkpoint's memory map, so they
 * may live on SSD and only the rows read are paged in; DSV4_ENGRAM_RAM copies them into
 * anonymous memory at load instead.
 *
 * Gather. A step's rows depend only on its token ids, so the forward pass hashes every
 * position before layer 0 and, before running any layer, asks the kernel to start reading
 * the pages the first Engram layer will need (madvise WILLNEED: the reads are in flight
 * together, not one page fault at a time). A reader thread asks for the later layers' pages
 * and copies the rows, layer by layer, into a staging buffer while the first blocks run
 * (the later Engram layers have many blocks of slack); an Engram layer whose rows the
 * thread has not reached yet copies them itself (each layer's copy is claimed by whoever
 * comes first), so a late thread never adds its wake-up to the critical path. RAM-resident
 * tables are copied when the layer runs (a few microseconds). With `sync` set, mapped rows
 * are also copied only when the layer runs and nothing is read ahead: what a naive
 * implementation pays.
 *
 * The module's arithmetic follows the official code: rows dequantised exactly (e4m3 times a
 * power of two is exact in bf16), kv = wkv(rows) through the FP8 linear, and per stream an
 * fp32 gate against that stream's key, added with the shared value before the block. */
#include <fcntl.h>
#include <math.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/base.h"
#include "model/engram.h"
#include "model/model.h"
#include "numeric/numeric.h"

/* ---- setup ------------------------------------------------------------------------------------ */

static void *reader_main(void *arg);

/* Unmap a tensor's pages from this process (they stay in the page cache, now evictable, and
 * fault back in from the file if touched again). */
static void release_pages(const dsv4_tensor *t) {
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t b = (uintptr_t)t->data & ~(uintptr_t)(page - 1);
    madvise((void *)b, (uintptr_t)t->data + t->nbytes - b, MADV_DONTNEED);
}

dsv4_status dsv4_engram_init(struct dsv4_model *m, dsv4_engram_placement placement, bool sync) {
    const struct dsv4_config *c = &m->cfg;
    dsv4_engram *e = m->engram;
    e->max_ngram = c->engram_max_ngram;
    e->n_heads = c->engram_n_heads;
    e->head_dim = c->engram_head_dim;
    e->n_cols = (e->max_ngram - 1) * e->n_heads;
    e->vocab = c->vocab_size;
    e->placement = placement;
    e->sync = sync;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->sync_init = true;

    dsv4_status rc = dsv4_engram_token_map(m->dir, c->vocab_size, &e->token_map, &e->n_compressed, &e->map_source);
    if (rc) return dsv4_error_wrap(rc, "%s: building the Engram vocabulary", m->dir);
    if (e->n_compressed != c->engram_compressed_vocab_size)
        return dsv4_error(DSV4_EFORMAT,
                          "%s: the Engram vocabulary from %s has %d ids, the config says engram_compressed_vocab_size %d "
                          "(every hash multiplier depends on it)",
                          m->dir, e->map_source, e->n_compressed, c->engram_compressed_vocab_size);
    e->pad_c = e->token_map[c->engram_pad_id];

    int64_t *primes = dsv4_malloc((size_t)e->n_layers * e->n_cols * sizeof(int64_t), "engram primes");
    if (!primes) return DSV4_ENOMEM;
    dsv4_engram_primes(e->n_layers, e->max_ngram, e->n_heads, c->engram_vocab_size, primes);
    for (int i = 0; i < e->n_layers && !rc; i++) {
        dsv4_engram_w *w = &e->layers[i];
        w->primes = dsv4_malloc((size_t)e->n_cols * sizeof(int64_t), "engram primes");
        w->offsets = dsv4_malloc((size_t)e->n_cols * sizeof(int64_t), "engram offsets");
        if (!w->primes || !w->offsets) {
            rc = DSV4_ENOMEM;
            break;
        }
        int64_t sum = 0;
        for (int k = 0; k < e->n_cols; k++) {
            w->primes[k] = primes[(size_t)i * e->n_cols + k];
            w->offsets[k] = sum;
            sum += w->primes[k];
        }
        if (sum != w->rows)
            rc = dsv4_error(DSV4_EFORMAT,
                            "%s: Engram layer %d: the hash buckets (primes from %d) cover %lld rows, its table has %lld",
                            m->dir, w->layer, c->engram_vocab_size, (long long)sum, (long long)w->rows);
        if (!rc) rc = dsv4_engram_multipliers(w->layer, e->max_ngram, e->n_compressed, w->mult);
    }
    free(primes);
    if (rc) return rc;

    for (int i = 0; i < e->n_layers; i++) {
        dsv4_engram_w *w = &e->layers[i];
        if (placement == DSV4_ENGRAM_RAM) {
            size_t nc = w->t_codes->nbytes, ns = w->t_scales->nbytes;
            w->ram = dsv4_malloc(nc + ns, "Engram table in RAM");
            if (!w->ram) return dsv4_error_wrap(DSV4_ENOMEM, "%s: Engram layer %d (%.2f GiB)", m->dir, w->layer,
                                                (double)(nc + ns) / (1 << 30));
            memcpy(w->ram, w->t_codes->data, nc);
            memcpy(w->ram + nc, w->t_scales->data, ns);
            w->codes = w->ram;
            w->scales = w->ram + nc;
            release_pages(w->t_codes); /* the map's copy is not needed any more */
            release_pages(w->t_scales);
        } else {
            /* rows are read at random: no read-around of whole windows */
            long page = sysconf(_SC_PAGESIZE);
            const dsv4_tensor *ts[2] = {w->t_codes, w->t_scales};
            for (int k = 0; k < 2; k++) {
                uintptr_t b = (uintptr_t)ts[k]->data & ~(uintptr_t)(page - 1);
                madvise((void *)b, (uintptr_t)ts[k]->data + ts[k]->nbytes - b, MADV_RANDOM);
            }
        }
    }
    if (!sync && placement == DSV4_ENGRAM_MAPPED) {
        if (pthread_create(&e->thread, NULL, reader_main, e))
            return dsv4_error(DSV4_ENOMEM, "%s: cannot start the Engram reader thread", m->dir);
        e->thread_started = true;
    }
    return DSV4_OK;
}

void dsv4_engram_free(dsv4_engram *e) {
    if (!e) return;
    if (e->thread_started) {
        pthread_mutex_lock(&e->mu);
        e->quit = true;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
        e->thread_started = false;
    }
    if (e->sync_init) {
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
    }
    for (int i = 0; i < e->n_layers; i++) {
        free(e->layers[i].ram);
        free(e->layers[i].primes);
        free(e->layers[i].offsets);
    }
    free(e->token_map);
}

double dsv4_engram_table_bytes(const dsv4_engram *e) {
    double b = 0;
    for (int i = 0; e && i < e->n_layers; i++) b += (double)e->layers[i].t_codes->nbytes + (double)e->layers[i].t_scales->nbytes;
    return b;
}

dsv4_status dsv4_engram_evict(struct dsv4_model *m) {
    dsv4_engram *e = m->engram;
    for (int i = 0; e && i < e->n_layers; i++) {
        const dsv4_tensor *ts[2] = {e->layers[i].t_codes, e->layers[i].t_scales};
        for (int k = 0; k < 2; k++) {
            release_pages(ts[k]); /* mapped pages cannot be dropped */
            const char *path = dsv4_st_file_path(m->st, ts[k]->file);
            int fd = open(path, O_RDONLY);
            if (fd < 0) return dsv4_error(DSV4_EIO, "%s: cannot open to evict the Engram table", path);
            fdatasync(fd); /* dirty pages cannot be dropped */
            int err = posix_fadvise(fd, (off_t)ts[k]->offset, (off_t)ts[k]->nbytes, POSIX_FADV_DONTNEED);
            close(fd);
            if (err) return dsv4_error(DSV4_EIO, "%s: posix_fadvise(DONTNEED) failed (%d)", path, err);
        }
    }
    return DSV4_OK;
}

/* ---- the gather ------------------------------------------------------------------------------- */

static void advise_range(const void *p, size_t n, long page) {
    uintptr_t b = (uintptr_t)p & ~(uintptr_t)(page - 1);
    madvise((void *)b, (uintptr_t)p + n - b, MADV_WILLNEED);
}

/* Ask for the pages of Engram layers [first, last) of a row list. */
static void read_ahead(const dsv4_engram *e, const int64_t *rows, int n, int first, int last) {
    long page = sysconf(_SC_PAGESIZE);
    int sb = e->head_dim / 32;
    for (int l = first; l < last; l++) {
        const dsv4_engram_w *w = &e->layers[l];
        if (w->ram) continue;
        const int64_t *r = rows + (size_t)l * n * e->n_cols;
        for (int i = 0; i < n * e->n_cols; i++) {
            advise_range(w->codes + (size_t)r[i] * e->head_dim, (size_t)e->head_dim, page);
            advise_range(w->scales + (size_t)r[i] * sb, (size_t)sb, page);
        }
    }
}

void dsv4_engram_prefetch(const dsv4_engram *e, const int64_t *rows, int n) { read_ahead(e, rows, n, 0, e->n_layers); }

/* Copy layer l's rows of the job into its staging area. */
static void gather_layer(const dsv4_engram *e, int l) {
    const dsv4_engram_w *w = &e->layers[l];
    int hd = e->head_dim, sb = hd / 32, rb = dsv4_engram_row_bytes(e), n = e->job_n;
    const int64_t *r = e->job_rows + (size_t)l * n * e->n_cols;
    uint8_t *o = e->job_out + (size_t)l * n * e->n_cols * rb;
    for (int i = 0; i < n * e->n_cols; i++) {
        memcpy(o + (size_t)i * rb, w->codes + (size_t)r[i] * hd, (size_t)hd);
        memcpy(o + (size_t)i * rb + hd, w->scales + (size_t)r[i] * sb, (size_t)sb);
    }
}

/* Whoever claims a layer first (the reader thread or the forward pass) copies it. */
static void take_layer(dsv4_engram *e, int l) {
    if (__atomic_exchange_n(&e->claimed[l], 1, __ATOMIC_ACQ_REL)) return;
    gather_layer(e, l);
    pthread_mutex_lock(&e->mu);
    e->done[l] = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

static void *reader_main(void *arg) {
    dsv4_engram *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->quit && !e->job_pending) pthread_cond_wait(&e->cv, &e->mu);
        if (e->quit) break;
        pthread_mutex_unlock(&e->mu);
        read_ahead(e, e->job_rows, e->job_n, 1, e->n_layers); /* the first layer's went out already */
        for (int l = 0; l < e->n_layers; l++) take_layer(e, l);
        pthread_mutex_lock(&e->mu);
        e->job_pending = 0;
        pthread_cond_broadcast(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

void dsv4_engram_gather_begin(dsv4_engram *e, const int64_t *rows, int n, uint8_t *out) {
    e->rows_read += (long long)n * e->n_cols * e->n_layers;
    pthread_mutex_lock(&e->mu);
    while (e->job_pending) pthread_cond_wait(&e->cv, &e->mu); /* the reader is done with the last job */
    e->job_rows = rows;
    e->job_out = out;
    e->job_n = n;
    for (int l = 0; l < e->n_layers; l++) e->claimed[l] = e->done[l] = 0;
    pthread_mutex_unlock(&e->mu);
    if (e->sync || e->placement == DSV4_ENGRAM_RAM) return; /* copied when the layer runs */
    /* the first Engram layer's reads go out now, from this thread (it has the least slack and
     * must not wait for the reader to wake up); the reader asks for the other layers' */
    double t0 = dsv4_now();
    read_ahead(e, rows, n, 0, 1);
    e->prefetch_s += dsv4_now() - t0;
    pthread_mutex_lock(&e->mu);
    e->job_pending = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void dsv4_engram_wait(dsv4_engram *e, int index) {
    double t0 = dsv4_now();
    for (int l = 0; l <= index; l++) take_layer(e, l);
    pthread_mutex_lock(&e->mu);
    for (int l = 0; l <= index; l++)
        while (!e->done[l]) pthread_cond_wait(&e->cv, &e->mu);
    pthread_mutex_unlock(&e->mu);
    e->wait_s += dsv4_now() - t0;
}

void dsv4_engram_finish(dsv4_engram *e) {
    dsv4_engram_wait(e, e->n_layers - 1);
    pthread_mutex_lock(&e->mu);
    while (e->job_pending) pthread_cond_wait(&e->cv, &e->mu);
    pthread_mutex_unlock(&e->mu);
}

/* ---- the module ------------------------------------------------------------------------------- */

dsv4_status dsv4_engram_forward(const struct dsv4_model *m, int index, const uint8_t *staged, int n, float *X) {
    const struct dsv4_config *c = &m->cfg;
    const dsv4_engram *e = m->engram;
    const dsv4_engram_w *w = &e->layers[index];
    int hd = e->head_dim, rb = dsv4_engram_row_bytes(e), cols = e->n_cols * hd, hc = c->hc_mult, d = c->dim;
    size_t kvw = (size_t)(hc + 1) * d;
    float *emb = dsv4_malloc((size_t)n * cols * sizeof(float), "engram rows");
    float *kv = dsv4_malloc((size_t)n * kvw * sizeof(float), "engram key/value");
    float *xq = dsv4_malloc((size_t)n * cols * sizeof(float), "engram scratch");
    if (!emb || !kv || !xq) {
        free(emb);
        free(kv);
        free(xq);
        return DSV4_ENOMEM;
    }
    const uint8_t *st = staged + (size_t)index * n * e->n_cols * rb;
    for (int r = 0; r < n; r++)
        for (int k = 0; k < e->n_cols; k++) {
            const uint8_t *row = st + ((size_t)r * e->n_cols + k) * rb;
            float *o = emb + (size_t)r * cols + (size_t)k * hd;
            for (int i = 0; i < hd; i++) o[i] = dsv4_e4m3_to_f32(row[i]) * dsv4_e8m0_to_f32(row[hd + i / 32]);
        }
    dsv4_linear_forward(&w->wkv, emb, n, kv, m->numerics, xq);
    float inv_sqrt_d = 1.0f / sqrtf((float)d);
    float eps = c->norm_eps;
#pragma omp parallel for schedule(static) if (n > 1)
    for (int r = 0; r < n; r++) {
        const float *value = kv + (size_t)r * kvw + (size_t)hc * d;
        for (int s = 0; s < hc; s++) {
            float *h = X + ((size_t)r * hc + s) * d;
            const float *key = kv + (size_t)r * kvw + (size_t)s * d, *gw = w->gate_w + (size_t)s * d;
            double hh = 0, kk = 0;
            float dot = 0.0f;
            for (int i = 0; i < d; i++) {
                hh += (double)h[i] * h[i];
                kk += (double)key[i] * key[i];
                dot += h[i] * gw[i] * key[i];
            }
            /* per stream and per key, not jointly over the streams */
            float rstd = (float)(1.0 / sqrt(hh / d + (double)eps)) * (float)(1.0 / sqrt(kk / d + (double)eps));
            dot = dot * rstd * inv_sqrt_d;
            float g = dsv4_sigmoid(copysignf(sqrtf(fmaxf(fabsf(dot), 1e-6f)), dot));
            for (int i = 0; i < d; i++) h[i] += g * value[i];
        }
    }
    free(emb);
    free(kv);
    free(xq);
    return DSV4_OK;
}
