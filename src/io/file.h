/* file.h: opening the files of a model directory without trusting them.
 *
 * A model directory comes from users, downloads and half-finished copies, so each path may be
 * missing, a directory, a dangling or looping symlink, a FIFO (whose open() would block
 * forever), empty, or larger than anything sensible. These helpers open only regular files,
 * never block, bound what they read into memory, and report every failure with the path and
 * the reason. */
#ifndef DSV4_FILE_H
#define DSV4_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "dsv4.h"

/* Whether `path` names something at all (following symlinks). Returns DSV4_OK if it exists,
 * DSV4_ENOTFOUND (no message set) if it does not, DSV4_EIO with a message for other errors
 * (permission, symlink loop, ...). */
dsv4_status dsv4_file_probe(const char *path);

/* Read a whole regular file of at most `max_bytes` into a NUL-terminated buffer (free()). */
dsv4_status dsv4_file_read(const char *path, size_t max_bytes, char **out, size_t *len);

/* Map a whole regular file read-only; unmap with munmap(map, size) when size > 0. An empty
 * file gives map NULL and size 0. */
dsv4_status dsv4_file_map(const char *path, const uint8_t **map, size_t *size);

#endif
