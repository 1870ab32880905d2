/* npy.c: reading and writing float32 .npy files (and reading int64 ones). */
#include <errno.h>
#include <stdio.h>

#include "base/base.h"
#include "io/npy.h"

dsv4_status dsv4_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape) {
    char dict[256];
    int o = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        o += snprintf(dict + o, sizeof dict - (size_t)o, "%lld,%s", (long long)shape[i], i + 1 < ndim ? " " : "");
        n *= (size_t)shape[i];
    }
    o += snprintf(dict + o, sizeof dict - (size_t)o, "), }");
    /* magic(6) + version(2) + len(2) + dict + padding + '\n' = multiple of 64 */
    size_t total = 10 + (size_t)o + 1;
    size_t pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return dsv4_error(DSV4_EIO, "%s: cannot create: %s", path, strerror(errno));
    uint16_t hl = (uint16_t)(o + pad + 1);
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff), (unsigned char)(hl >> 8)};
    int ok = fwrite(head, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)o, f) == (size_t)o;
    for (size_t i = 0; i < pad && ok; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && (n == 0 || fwrite(data, sizeof(float), n, f) == n);
    if (fclose(f) != 0) ok = 0;
    if (!ok) return dsv4_error(DSV4_EIO, "%s: write failed: %s", path, strerror(errno));
    return DSV4_OK;
}

/* Read an array whose dtype descriptor is `descr` (elements of `size` bytes; `what` names the
 * dtype and `unit` its elements in messages). */
static dsv4_status npy_read(const char *path, const char *descr, const char *what, const char *unit, size_t size,
                            void **data, int *ndim, int64_t *shape) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return dsv4_error(DSV4_EIO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char head[12];
    dsv4_status rc = DSV4_OK;
    size_t hlen = 0;
    if (fread(head, 1, 10, f) != 10 || memcmp(head, "\x93NUMPY", 6)) rc = dsv4_error(DSV4_EFORMAT, "%s: not a .npy file", path);
    else if (head[6] == 1) hlen = (size_t)head[8] | ((size_t)head[9] << 8);
    else if (head[6] == 2 || head[6] == 3) {
        if (fread(head + 10, 1, 2, f) != 2) rc = dsv4_error(DSV4_EFORMAT, "%s: truncated header", path);
        hlen = (size_t)head[8] | ((size_t)head[9] << 8) | ((size_t)head[10] << 16) | ((size_t)head[11] << 24);
    } else rc = dsv4_error(DSV4_EFORMAT, "%s: unsupported .npy version %d", path, head[6]);
    char *dict = NULL;
    if (!rc && (hlen > (1 << 20) || !(dict = calloc(hlen + 1, 1)) || fread(dict, 1, hlen, f) != hlen))
        rc = dsv4_error(DSV4_EFORMAT, "%s: truncated header", path);
    if (!rc) {
        char want[32];
        snprintf(want, sizeof want, "'descr': '%s'", descr);
        if (!strstr(dict, want)) rc = dsv4_error(DSV4_EFORMAT, "%s: dtype is not %s", path, what);
        else if (!strstr(dict, "'fortran_order': False")) rc = dsv4_error(DSV4_EFORMAT, "%s: Fortran order", path);
    }
    size_t n = 1;
    if (!rc) {
        char *p = strstr(dict, "'shape': (");
        if (!p) rc = dsv4_error(DSV4_EFORMAT, "%s: no shape", path);
        else {
            p += 10;
            *ndim = 0;
            while (*p && *p != ')') {
                char *end;
                long long v = strtoll(p, &end, 10);
                if (end == p) break;
                if (*ndim >= 8 || v < 0) {
                    rc = dsv4_error(DSV4_EFORMAT, "%s: bad shape", path);
                    break;
                }
                shape[(*ndim)++] = v;
                size_t bytes;
                if (!dsv4_mul_ok(n, (size_t)v, &n) || !dsv4_mul_ok(n, size, &bytes)) {
                    rc = dsv4_error(DSV4_EFORMAT, "%s: shape overflows", path);
                    break;
                }
                p = end;
                while (*p == ',' || *p == ' ') p++;
            }
        }
    }
    if (!rc) {
        /* the data must be in the file before we allocate for it */
        long here = ftell(f);
        if (here < 0 || fseek(f, 0, SEEK_END) != 0 || (size_t)(ftell(f) - here) / size < n ||
            fseek(f, here, SEEK_SET) != 0)
            rc = dsv4_error(DSV4_EFORMAT, "%s: truncated data: the shape needs %zu %s", path, n, unit);
    }
    if (!rc) {
        *data = malloc(n * size + 1);
        if (!*data) rc = dsv4_error(DSV4_ENOMEM, "%s: out of memory", path);
        else if (fread(*data, size, n, f) != n) rc = dsv4_error(DSV4_EFORMAT, "%s: truncated data", path);
    }
    free(dict);
    fclose(f);
    if (rc) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

dsv4_status dsv4_npy_read_f32(const char *path, float **data, int *ndim, int64_t *shape) {
    return npy_read(path, "<f4", "little-endian float32", "floats", sizeof(float), (void **)data, ndim, shape);
}

dsv4_status dsv4_npy_read_i64(const char *path, int64_t **data, int *ndim, int64_t *shape) {
    return npy_read(path, "<i8", "little-endian int64", "int64 values", sizeof(int64_t), (void **)data, ndim, shape);
}
