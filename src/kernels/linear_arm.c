/* linear_arm.c: which SIMD kernel set this AArch64 CPU can run.
 *
 * Advanced SIMD (NEON) is part of every AArch64 CPU that Linux runs on; the BF16 instructions
 * (FEAT_BF16: BFDOT, BFMMLA) are optional before Armv8.6 and are only used when the kernel
 * reports them (HWCAP2_BF16). The sets live in linear_neon.c. */
#if defined(__aarch64__)
#include <sys/auxv.h>

#include "kernels/linear.h"

#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP2_BF16
#define HWCAP2_BF16 (1 << 14)
#endif

extern const dsv4_kernel_set dsv4_kernels_neon, dsv4_kernels_neon_bf16;
void dsv4_kernels_neon_init(void);

const dsv4_kernel_set *dsv4_kernels_arm_best(void);
int dsv4_kernels_arm_list(const dsv4_kernel_set **out, int max);

int dsv4_kernels_arm_list(const dsv4_kernel_set **out, int max) {
    int n = 0;
    if (!(getauxval(AT_HWCAP) & HWCAP_ASIMD)) return 0;
    dsv4_kernels_neon_init();
    if (n < max) out[n++] = &dsv4_kernels_neon;
    if ((getauxval(AT_HWCAP2) & HWCAP2_BF16) && n < max) out[n++] = &dsv4_kernels_neon_bf16;
    return n;
}

const dsv4_kernel_set *dsv4_kernels_arm_best(void) {
    const dsv4_kernel_set *sets[2];
    int n = dsv4_kernels_arm_list(sets, 2);
    return n ? sets[n - 1] : NULL;
}
#endif
