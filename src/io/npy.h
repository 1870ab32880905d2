/* npy.h: NumPy .npy files of float32 or int64 (format 1.0, little-endian, C order).
 *
 * Enough to write logits for other tools and to read the reference vectors. The reader
 * parses the header dictionary properly (descr, fortran_order, shape) and refuses anything
 * that is not little-endian float32 in C order. */
#ifndef DSV4_NPY_H
#define DSV4_NPY_H

#include <stdint.h>

#include "dsv4.h"

dsv4_status dsv4_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape);
/* Reads a float32 array; *data is malloc'd. ndim <= 8. */
dsv4_status dsv4_npy_read_f32(const char *path, float **data, int *ndim, int64_t *shape);
/* Reads a little-endian int64 array (token maps, ids); *data is malloc'd. */
dsv4_status dsv4_npy_read_i64(const char *path, int64_t **data, int *ndim, int64_t *shape);

#endif
