/* linear_x86.c: which SIMD kernel set this x86-64 CPU can run.
 *
 * Compiled without ISA flags, so it runs anywhere; the sets themselves live in files built
 * with their own flags (linear_avx2.c, linear_avx512.c) and are only touched after the CPU
 * (and the OS, for the AVX-512 register state) has been checked here. */
#if defined(__x86_64__)
#include "kernels/linear.h"

extern const dsv4_kernel_set dsv4_kernels_avx2, dsv4_kernels_avx512;
void dsv4_kernels_avx512_init(void);
void dsv4_kernels_avx2_init(void);

const dsv4_kernel_set *dsv4_kernels_x86_best(void);
int dsv4_kernels_x86_list(const dsv4_kernel_set **out, int max);

static bool has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bf16") &&
           __builtin_cpu_supports("fma");
}

static bool has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

int dsv4_kernels_x86_list(const dsv4_kernel_set **out, int max) {
    int n = 0;
    if (has_avx2() && n < max) {
        dsv4_kernels_avx2_init();
        out[n++] = &dsv4_kernels_avx2;
    }
    if (has_avx512() && n < max) {
        dsv4_kernels_avx512_init();
        out[n++] = &dsv4_kernels_avx512;
    }
    return n;
}

const dsv4_kernel_set *dsv4_kernels_x86_best(void) {
    const dsv4_kernel_set *sets[2];
    int n = dsv4_kernels_x86_list(sets, 2);
    return n ? sets[n - 1] : NULL;
}
#endif
