/* data: what the loaders (idx.c, npy.c, csv.c) share; private to the runtime.
 *
 * A DataFile reads a file as a byte stream, inflating it on the fly when it starts
 * with the gzip magic 1f 8b (or all at once before a body: data_inflate_all).  zlib's
 * memory and the inflated buffers come from nnd_alloc, so a failing allocator
 * reaches every path.  Raw element types are decoded byte by byte, so
 * nothing depends on the host's byte order. */
#ifndef NND_DATA_H
#define NND_DATA_H

#include "nnd_runtime.h"

#include <stdio.h>
#include <zlib.h>

/* The most decompressed bytes a gzip file may declare; the file itself bounds it
 * more tightly (see data_file_limit). */
#define DATA_GZ_MAX_BYTES ((int64_t)16 << 30)

typedef struct DataFile {
    const char *path; /* borrowed */
    FILE *fp;
    int64_t file_size; /* bytes on disk */
    int gz;
    z_stream zs;
    int zs_live; /* inflateInit2 succeeded */
    unsigned char *in; /* compressed input; nnd_alloc'd */
    int in_eof; /* fp is exhausted */
    int done; /* no more bytes will come */
    int cut; /* the gzip stream ended early */
    int member_ended; /* a gzip member ended; another may follow */
    /* Set after a member ended, until the next one yields a byte: a failure there
     * means bytes after the gzip data rather than damage inside it. */
    int between_members;
    int64_t pos; /* bytes delivered so far */
    /* A gzip file's whole decompressed stream (nnd_alloc'd), where data_inflate_all
     * made it; reads then come from here, and zs is not used again. */
    unsigned char *whole;
    int64_t whole_len;
    int whole_tried; /* data_inflate_all ran (it runs once) */
} DataFile;

/* Opens path; on failure f is closed and err names the file. */
int data_open(DataFile *f, const char *path, NndErr *err);
void data_close(DataFile *f);
/* Reads up to n bytes; fewer only at the end of the stream.  Returns the count or -1. */
int64_t data_read(DataFile *f, void *buf, int64_t n, NndErr *err);
/* Before the body of a gzip file is read, the stream's length `total` declared by
 * its header: inflates the whole stream at once into f->whole (libdeflate, about
 * twice zlib's speed) where the file is one gzip member of exactly that length.
 * Otherwise, or for a plain file, nothing changes and reads stream as before (zlib
 * then says what is wrong with a damaged file).  -1 when memory or reading fails. */
int data_inflate_all(DataFile *f, int64_t total, NndErr *err);
/* An upper bound on the total stream length: exact for plain files; for gzip,
 * deflate expands at most 1032:1. */
int64_t data_file_limit(const DataFile *f);
/* Reads the rest of the stream into a NUL-terminated nnd_alloc'd buffer (the caller
 * owns it). */
int data_read_rest(DataFile *f, char **text, int64_t *len, NndErr *err);

/* Element types found in files. */
typedef enum RawKind {
    RAW_U8,
    RAW_I8,
    RAW_I16,
    RAW_I32,
    RAW_I64,
    RAW_F32,
    RAW_F64,
    RAW_BOOL
} RawKind;

typedef struct RawType {
    RawKind kind;
    int big_endian;
} RawType;

int raw_size(RawKind k);
const char *raw_name(RawKind k);

/* Fills the defaults (scale 1, F32) for NULL opts; -1 on a bad float_dtype. */
int data_options(const char *path, const NndLoadOptions *opts, NndLoadOptions *o, NndErr *err);
/* The dtype a tensor of this raw type comes back as. */
NndDType data_out_dtype(RawKind k, NndRole role, const NndLoadOptions *o);
/* Writes "60000x28x28" into buf. */
void data_format_shape(char *buf, size_t size, int rank, const int64_t *shape);

/* Checks a declared shape (rank 1..8, every dim > 0, no overflow) and returns its
 * size in bytes through nbytes. */
int data_check_shape(const DataFile *f, int rank, const int64_t *shape, RawKind k, int64_t *nbytes,
                     NndErr *err);
/* Checks that the rest of the file can hold exactly the declared data, as far as it
 * can be known without reading it (exactly for plain files). */
int data_check_body(const DataFile *f, int rank, const int64_t *shape, RawType t, int64_t nbytes,
                    NndErr *err);
/* Allocates out and fills it from the next nbytes of f, converted; then checks
 * that the stream ends there. */
int data_read_body(DataFile *f, int rank, const int64_t *shape, RawType t, int64_t nbytes,
                   NndRole role, const NndLoadOptions *o, NndTensor *out, NndErr *err);

/* After the header of a plain file: *out the file's rows mapped into memory, read
 * when a gather takes them (0 with *out NULL where that cannot be done: a gzip file,
 * labels, a conversion that could fail; the caller then loads the body). */
int data_map_rows(DataFile *f, int rank, const int64_t *shape, RawType t, NndRole role,
                  const NndLoadOptions *o, NndRows **out);

/* The mappings nnd_guard_mapped_files knows (mapguard.c): a data file's, named by
 * path, from when it is mapped until it is unmapped. */
void data_map_register(const void *p, size_t n, const char *path);
void data_map_unregister(const void *p);

/* After the header of a file data_map_rows could not map (gzip): *out the body read
 * into memory as it is stored (the u8 pixels of an image set: a quarter of them as
 * f32), converted when a gather takes the rows.  0 with *out NULL where the rows
 * cannot be converted on demand or there is no memory (the caller loads the body);
 * -1 on a bad body, as data_read_body. */
int data_read_rows(DataFile *f, int rank, const int64_t *shape, RawType t, int64_t nbytes,
                   NndRole role, const NndLoadOptions *o, NndRows **out, NndErr *err);

/* Asks the cache for every line of the n bytes at p (a row need not start on one). */
static inline void data_prefetch(const void *p, size_t n)
{
    uintptr_t at = (uintptr_t)p, end = at + n;
    for (at &= ~(uintptr_t)63; at < end; at += 64)
        __builtin_prefetch((const void *)at, 0, 1);
}

#endif
