/* safetensors.h: reading and writing Hugging Face safetensors files, alone or sharded.
 *
 * A model directory holds either model.safetensors or shards listed in
 * model.safetensors.index.json ({"weight_map": {name: file}}). Files are memory-mapped
 * read-only and tensors point straight into the maps: nothing is copied. Every header is
 * validated before use: its length against the file, its JSON, each dtype, shape and byte
 * range (inside the data section, of the size the shape implies, not overlapping another),
 * and each shard against the index. Errors name the file and the tensor. */
#ifndef DSV4_SAFETENSORS_H
#define DSV4_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dsv4.h"

typedef enum dsv4_dtype {
    DSV4_DT_UNKNOWN = 0,
    DSV4_DT_F64, DSV4_DT_F32, DSV4_DT_F16, DSV4_DT_BF16,
    DSV4_DT_F8_E4M3, DSV4_DT_F8_E5M2, DSV4_DT_F8_E8M0,
    DSV4_DT_I64, DSV4_DT_I32, DSV4_DT_I16, DSV4_DT_I8,
    DSV4_DT_U64, DSV4_DT_U32, DSV4_DT_U16, DSV4_DT_U8, DSV4_DT_BOOL,
} dsv4_dtype;

const char *dsv4_dtype_name(dsv4_dtype t);
dsv4_dtype dsv4_dtype_parse(const char *s);
size_t dsv4_dtype_size(dsv4_dtype t);

#define DSV4_MAX_DIMS 8

typedef struct dsv4_tensor {
    const char *name;
    dsv4_dtype dtype;
    int ndim;
    int64_t shape[DSV4_MAX_DIMS];
    const void *data;  /* inside the file's map */
    size_t nbytes;
    int file;          /* index into the reader's file list */
    size_t offset;     /* absolute byte offset in that file */
} dsv4_tensor;

typedef struct dsv4_st dsv4_st;

/* Open a single .safetensors file. */
dsv4_status dsv4_st_open_file(const char *path, dsv4_st **out);
/* Open a model directory: the index plus its shards, or model.safetensors. */
dsv4_status dsv4_st_open_dir(const char *dir, dsv4_st **out);
/* Parse a header held in memory (for the fuzzer and tests): `buf` is a whole file image. */
dsv4_status dsv4_st_open_memory(const void *buf, size_t len, const char *label, dsv4_st **out);
void dsv4_st_close(dsv4_st *st);

const dsv4_tensor *dsv4_st_find(const dsv4_st *st, const char *name);
int dsv4_st_count(const dsv4_st *st);
const dsv4_tensor *dsv4_st_at(const dsv4_st *st, int i);
const char *dsv4_st_file_path(const dsv4_st *st, int file);
/* What was opened: the index file of a shard set, else the single file (or memory label);
 * the place to name when a tensor is missing altogether. */
const char *dsv4_st_source(const dsv4_st *st);
int64_t dsv4_tensor_numel(const dsv4_tensor *t);

/* Ask the OS to read a tensor's pages in ahead of use (madvise WILLNEED). */
void dsv4_st_prefetch(const dsv4_tensor *t);

/* ---- writing ---------------------------------------------------------------------------- */
typedef struct dsv4_st_writer dsv4_st_writer;
/* A generator fills `len` bytes starting at byte `off` of the tensor's data. */
typedef dsv4_status (*dsv4_st_gen)(void *ctx, size_t off, void *dst, size_t len);

dsv4_st_writer *dsv4_st_writer_new(void);
/* The data pointer must stay valid until dsv4_st_writer_write returns. */
dsv4_status dsv4_st_writer_add(dsv4_st_writer *w, const char *name, dsv4_dtype dtype, int ndim,
                               const int64_t *shape, const void *data);
/* Data produced on demand while writing (for checkpoints larger than memory). */
dsv4_status dsv4_st_writer_add_gen(dsv4_st_writer *w, const char *name, dsv4_dtype dtype,
                                   int ndim, const int64_t *shape, dsv4_st_gen gen, void *ctx,
                                   void (*ctx_free)(void *));
/* Writes the file: header padded to 8 bytes, data ordered by element size, largest first,
 * so every tensor is aligned to its element size (as the release files are). */
dsv4_status dsv4_st_writer_write(dsv4_st_writer *w, const char *path);
void dsv4_st_writer_free(dsv4_st_writer *w);

#endif
