#if defined(__x86_64__)
#include "kernels/linear.h"
void dsv4_kernels_avx2_init(void);
void dsv4_kernels_avx2_init(void) {}
const dsv4_kernel_set dsv4_kernels_avx2 = {.name = "avx2-placeholder"};
#endif
