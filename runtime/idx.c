/* idx: LeCun's IDX format (MNIST), plain or gzip-compressed.
 *
 *   file := 00 00 type rank dim{rank} data
 *   type := 08 u8 | 09 i8 | 0B i16 | 0C i32 | 0D f32 | 0E f64
 *   dim  := u32, big-endian, > 0
 *   data := the product of the dims elements of type, big-endian, row-major */
#include "data.h"

#include <string.h>

static int idx_type(int code, RawKind *k)
{
    switch (code) {
    case 0x08: *k = RAW_U8; return 1;
    case 0x09: *k = RAW_I8; return 1;
    case 0x0B: *k = RAW_I16; return 1;
    case 0x0C: *k = RAW_I32; return 1;
    case 0x0D: *k = RAW_F32; return 1;
    case 0x0E: *k = RAW_F64; return 1;
    default: return 0;
    }
}

/* Reads and checks the header, and checks the rest of the file against it. */
static int idx_header(DataFile *f, RawType *t, int *rank, int64_t *shape, int64_t *nbytes,
                      NndErr *err)
{
    unsigned char magic[4];
    int64_t got = data_read(f, magic, 4, err);
    if (got < 0)
        return -1;
    if (got < 4)
        return nnd_err(err, "%s: truncated: the file ends inside the 4-byte IDX magic", f->path);
    if (magic[0] != 0 || magic[1] != 0)
        return nnd_err(err,
                       "%s: bad magic: an IDX file starts with 00 00 <type> <rank>, this one "
                       "with %02x %02x %02x %02x",
                       f->path, magic[0], magic[1], magic[2], magic[3]);
    t->big_endian = 1;
    if (!idx_type(magic[2], &t->kind))
        return nnd_err(err, "%s: bad magic: unknown IDX element type 0x%02x", f->path, magic[2]);
    *rank = magic[3];
    if (*rank < 1 || *rank > NND_MAX_RANK)
        return nnd_err(err, "%s: bad header: rank %d is not in 1..%d", f->path, *rank,
                       (int)NND_MAX_RANK);
    unsigned char dims[4 * NND_MAX_RANK];
    got = data_read(f, dims, 4 * *rank, err);
    if (got < 0)
        return -1;
    if (got < 4 * *rank)
        return nnd_err(err,
                       "%s: truncated: the file ends inside the IDX header (rank %d needs %d "
                       "bytes of dimensions, found %lld)",
                       f->path, *rank, 4 * *rank, (long long)got);
    for (int i = 0; i < *rank; i++) {
        const unsigned char *p = dims + 4 * i;
        shape[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
                             (uint32_t)p[3]);
    }
    if (data_check_shape(f, *rank, shape, t->kind, nbytes, err) != 0)
        return -1;
    return data_check_body(f, *rank, shape, *t, *nbytes, err);
}

/* load: read the body into out; rows (load 0): map the body if it can be, or hold
 * it as stored, else load it; neither: the header only. */
static int idx_open(const char *path, NndRole role, const NndLoadOptions *opts, int load,
                    NndRows **rows, NndTensor *out, NndErr *err)
{
    if (rows)
        *rows = NULL;
    memset(out, 0, sizeof *out);
    NndLoadOptions o;
    if (data_options(path, opts, &o, err) != 0)
        return -1;
    DataFile f;
    if (data_open(&f, path, err) != 0)
        return -1;
    RawType t = {RAW_U8, 1};
    int rank = 0;
    int64_t shape[NND_MAX_RANK] = {0};
    int64_t nbytes = 0;
    int rc = idx_header(&f, &t, &rank, shape, &nbytes, err);
    if (rc == 0 && rows)
        rc = data_map_rows(&f, rank, shape, t, role, &o, rows);
    if (rc == 0 && rows && !*rows)
        rc = data_read_rows(&f, rank, shape, t, nbytes, role, &o, rows, err);
    if (rc == 0 && (load || (rows && !*rows))) {
        rc = data_read_body(&f, rank, shape, t, nbytes, role, &o, out, err);
    } else if (rc == 0) {
        out->dtype = data_out_dtype(t.kind, role, &o);
        out->rank = rank;
        memcpy(out->shape, shape, sizeof(int64_t) * (size_t)rank);
    }
    data_close(&f);
    return rc;
}

int nnd_idx_load(const char *path, NndRole role, const NndLoadOptions *opts, NndTensor *out,
                 NndErr *err)
{
    return idx_open(path, role, opts, 1, NULL, out, err);
}

int nnd_idx_probe(const char *path, NndRole role, const NndLoadOptions *opts, NndTensor *out,
                  NndErr *err)
{
    return idx_open(path, role, opts, 0, NULL, out, err);
}

int nnd_idx_map(const char *path, NndRole role, const NndLoadOptions *opts, NndTensor *out,
                NndRows **rows, NndErr *err)
{
    return idx_open(path, role, opts, 0, rows, out, err);
}
