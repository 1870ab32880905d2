/* bench.h: how fast the engine runs, against what this machine can do.
 *
 * Decode is limited by memory bandwidth: each token reads the active weights once. The
 * benchmark therefore reports, from one run, the decode rate, the weight bytes a decoded
 * token touches (counted from the weights actually used: embedding row, attention, indexer,
 * compressors, mHC, router, shared expert, the routed experts the router picked, head), the
 * memory bandwidth measured right then with STREAM-like loops over buffers far larger than
 * the caches, and their ratio: bytes/token x tokens/s / bandwidth. On a machine shared with
 * other jobs the bandwidth available drifts within seconds, so each decode step is followed
 * by a short read burst and compared with it; the ratio is the median over the steps. Prefill is limited by
 * arithmetic: it reports the GFLOP/s of the matrix products (whole model, and the expert
 * products alone) against the multiply-add peak measured with a register-blocked FMA loop
 * on every thread. Because the machine may be shared, only ratios measured in the same run
 * are meaningful. */
#ifndef DSV4_BENCH_H
#define DSV4_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "dsv4.h"

typedef struct dsv4_bench_opts {
    int prefill;     /* prompt tokens timed (0: no prefill measurement) */
    int chunk;       /* fed this many per call (0: all in one call): long prompts, as a
                      * server or `dsv4 run` feeds them, in bounded memory */
    int decode;      /* decode steps timed (after a few untimed ones) */
    int depth;       /* > 0: decode at this position, the session filled with random rows
                      * instead of a real prefill; 0: decode right after the prefill */
    uint64_t seed;   /* token ids are random (routing, hash layers) */
    size_t bw_bytes; /* total size of the bandwidth buffers; 0: 1.5 GiB */
    void (*progress)(void *user, const char *what, double fraction);
    void *progress_user;
} dsv4_bench_opts;

typedef struct dsv4_bench_result {
    const char *kernels;     /* the active kernel set */
    int threads, depth;
    bool depth_synthetic;
    double touch_s;          /* paging every weight in before timing */
    /* prefill */
    int prefill_tokens;
    double prefill_s, prefill_tok_s;
    double prefill_gflops;   /* matrix-product GFLOP/s over the whole prefill */
    double expert_gflops;    /* the expert products alone (their own time) */
    double expert_share;     /* share of the prefill time spent in the experts */
    /* decode */
    int decode_tokens;
    double decode_s, decode_tok_s;
    double decode_bytes_per_token;
    double decode_expert_bytes_per_token; /* the routed + shared experts' part */
    /* where a decode step's time goes: the LM head and the experts at the speed they stream
     * their weights, and the share of the step spent outside both (attention, mHC, norms,
     * routing, the other products and the fork/joins between them) */
    double decode_head_gb_s, decode_expert_gb_s, decode_other_share;
    double decode_attn_share, decode_attn_gb_s; /* the attention blocks: share of a step, and
                                                   their weights' bytes per second of it */
    /* the machine, measured in the same run */
    double bw_copy_gb_s, bw_triad_gb_s, bw_read_gb_s; /* STREAM-like loops before the run */
    double bandwidth_gb_s;   /* the read bandwidth measured right after each decode step (median) */
    double fma_peak_gflops;  /* the larger of the measurements before and after the prefill */
    /* The same per second of CPU time of all threads: what the code achieves while it runs,
     * whatever share of the cores other jobs leave it (with passive OpenMP waiting, a
     * thread waiting for the others uses no CPU time; these figures ignore such waits). */
    double fma_peak_gflops_cpu, prefill_gflops_cpu, expert_gflops_cpu;
    double decode_gb_s_cpu, bw_read_gb_s_cpu; /* decode weight bytes, burst reads (medians); for
                                               * memory-bound work these also depend on how many
                                               * threads happen to run at once */
    /* memory: the session's state after the run (window, compressed rows, indexer keys, in the
     * formats it stores them), per position, and the process's peak resident set */
    double kv_bytes, kv_bytes_per_token, max_rss_bytes;
    /* ratios */
    double decode_bw_ratio;     /* per step: bytes / step time / the bandwidth right after it (median) */
    double decode_bw_ratio_start; /* decode bytes/token x tok/s / max(copy, triad, read) before the run */
    double prefill_peak_ratio;  /* prefill GFLOP/s / FMA peak */
    double expert_peak_ratio;   /* expert GFLOP/s / FMA peak */
    double decode_bw_ratio_cpu, prefill_peak_ratio_cpu, expert_peak_ratio_cpu; /* CPU-time based */
} dsv4_bench_result;

dsv4_status dsv4_bench_run(dsv4_model *m, const dsv4_bench_opts *opts, dsv4_bench_result *out);

/* The pieces, for tests and for other tools. */
/* STREAM-like copy (c = a), triad (a = b + s c) and read (a sum over a) on every thread over
 * three arrays of bytes/3 each; GB/s (10^9 bytes) of the best of `reps` runs each. */
dsv4_status dsv4_bench_bandwidth(size_t bytes, int reps, double *copy, double *triad, double *read);
/* Multiply-add GFLOP/s of the active kernel set's FMA loop on every thread; per_cpu, if not
 * NULL, receives the GFLOP per CPU-second of all threads. */
double dsv4_bench_fma_peak(double seconds, double *per_cpu);
/* Weight bytes every decoded token reads whatever the routing (all but the routed experts). */
double dsv4_bench_fixed_bytes(const dsv4_model *m);
/* Fill a session's state as if `depth` tokens had been fed (random rows of the right
 * formats): for benchmarking long contexts without prefilling them. */
dsv4_status dsv4_bench_fill_session(dsv4_session *s, int depth, uint64_t seed);

#endif
