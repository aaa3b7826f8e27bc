/* data: byte streams over plain and gzip files, size checks and element conversion
 * shared by the IDX, NPY and CSV loaders. */
#define _POSIX_C_SOURCE 200809L

#include "data.h"
#include "kernels.h"

#include <errno.h>
#include <float.h>
#include <libdeflate.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    IN_SIZE = 1 << 16, /* compressed bytes read per fread */
    CHUNK_SIZE = 1 << 16 /* raw bytes converted per step; a multiple of every element size */
};

/* ---- streams ------------------------------------------------------------------- */

static voidpf zalloc_hook(voidpf opaque, uInt items, uInt size)
{
    if (size && items > SIZE_MAX / size)
        return Z_NULL;
    return nnd_alloc((size_t)items * size);
}

static void zfree_hook(voidpf opaque, voidpf p) { nnd_free(p); }

static int out_of_memory(const char *path, NndErr *err)
{
    return nnd_err(err, "%s: out of memory", path);
}

void data_close(DataFile *f)
{
    if (f->zs_live)
        inflateEnd(&f->zs);
    f->zs_live = 0;
    nnd_free(f->in);
    f->in = NULL;
    nnd_free(f->whole);
    f->whole = NULL;
    if (f->fp)
        fclose(f->fp);
    f->fp = NULL;
}

/* Sizes are checked against the file before anything is allocated, so the size
 * must be known: no pipes or devices (and opening a FIFO would block). */
static int check_regular(const char *path, const struct stat *st, NndErr *err)
{
    if (S_ISDIR(st->st_mode))
        return nnd_err(err, "%s: is a directory", path);
    if (!S_ISREG(st->st_mode))
        return nnd_err(err, "%s: not a regular file", path);
    return 0;
}

int data_open(DataFile *f, const char *path, NndErr *err)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    if (!path)
        return nnd_err(err, "(null): no file name given");
    struct stat st;
    if (stat(path, &st) == 0 && check_regular(path, &st, err) != 0)
        return -1;
    f->fp = fopen(path, "rb");
    if (!f->fp)
        return nnd_err(err, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fileno(f->fp), &st) != 0) {
        nnd_err(err, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (check_regular(path, &st, err) != 0)
        goto fail;
    f->file_size = (int64_t)st.st_size;
    unsigned char magic[2];
    size_t got = fread(magic, 1, 2, f->fp);
    if (ferror(f->fp) || fseek(f->fp, 0, SEEK_SET) != 0) {
        nnd_err(err, "%s: read error: %s", path, strerror(errno));
        goto fail;
    }
    if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        f->gz = 1;
        f->in = nnd_alloc(IN_SIZE);
        if (!f->in) {
            out_of_memory(path, err);
            goto fail;
        }
        f->zs.zalloc = zalloc_hook;
        f->zs.zfree = zfree_hook;
        f->zs.opaque = Z_NULL;
        /* 16 + MAX_WBITS: gzip framing only, with its CRC and length checked. */
        int ret = inflateInit2(&f->zs, 16 + MAX_WBITS);
        if (ret != Z_OK) {
            if (ret == Z_MEM_ERROR)
                out_of_memory(path, err);
            else
                nnd_err(err, "%s: cannot start zlib (%s)", path, zError(ret));
            goto fail;
        }
        f->zs_live = 1;
    }
    return 0;
fail:
    data_close(f);
    return -1;
}

static int read_error(DataFile *f, NndErr *err)
{
    return nnd_err(err, "%s: read error: %s", f->path, strerror(errno));
}

/* Inflates into buf.  Concatenated gzip members are one stream, as with gunzip. */
static int64_t gz_read(DataFile *f, unsigned char *buf, int64_t n, NndErr *err)
{
    int64_t got = 0;
    while (got < n && !f->done) {
        if (f->zs.avail_in == 0 && !f->in_eof) {
            size_t r = fread(f->in, 1, IN_SIZE, f->fp);
            if (r < IN_SIZE) {
                if (ferror(f->fp))
                    return read_error(f, err);
                f->in_eof = 1;
            }
            f->zs.next_in = f->in;
            f->zs.avail_in = (uInt)r;
        }
        if (f->member_ended) {
            if (f->zs.avail_in == 0) {
                f->done = 1;
                break;
            }
            inflateReset(&f->zs);
            f->member_ended = 0;
            f->between_members = 1;
        }
        int64_t want = n - got;
        if (want > (1 << 30))
            want = 1 << 30;
        f->zs.next_out = buf + got;
        f->zs.avail_out = (uInt)want;
        int ret = inflate(&f->zs, Z_NO_FLUSH);
        int64_t produced = want - (int64_t)f->zs.avail_out;
        got += produced;
        if (produced > 0)
            f->between_members = 0;
        switch (ret) {
        case Z_OK: break;
        case Z_STREAM_END: f->member_ended = 1; break;
        case Z_BUF_ERROR:
            /* No progress with output space left: the input ran out mid-member. */
            if (f->between_members)
                return nnd_err(err, "%s: trailing bytes after the gzip data", f->path);
            f->done = 1;
            f->cut = 1;
            break;
        case Z_MEM_ERROR: return out_of_memory(f->path, err);
        default:
            if (f->between_members)
                return nnd_err(err, "%s: trailing bytes after the gzip data", f->path);
            return nnd_err(err, "%s: corrupt gzip data (%s)", f->path,
                           f->zs.msg ? f->zs.msg : zError(ret));
        }
    }
    return got;
}

/* Inflates the rest of the stream to nowhere: fails where gz_read finds it damaged. */
static int gz_drain(DataFile *f, NndErr *err)
{
    unsigned char *sink = nnd_alloc(CHUNK_SIZE);
    if (!sink)
        return out_of_memory(f->path, err);
    int64_t got;
    while ((got = gz_read(f, sink, CHUNK_SIZE, err)) == CHUNK_SIZE)
        ;
    nnd_free(sink);
    return got < 0 ? -1 : 0;
}

/* Reads the n bytes at offset `at` of f's file, whatever the stream has read. */
static int read_at(DataFile *f, unsigned char *buf, size_t n, off_t at)
{
    int fd = fileno(f->fp);
    while (n > 0) {
        ssize_t r = pread(fd, buf, n, at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        buf += r;
        n -= (size_t)r;
        at += r;
    }
    return 1;
}

int data_inflate_all(DataFile *f, int64_t total, NndErr *err)
{
    /* A gzip member ends with its length mod 2^32; 18 bytes is the smallest member. */
    if (!f->gz || f->whole_tried || f->done || f->file_size < 18 ||
        (uint64_t)f->file_size > SIZE_MAX || total < f->pos || (uint64_t)total > SIZE_MAX)
        return 0;
    f->whole_tried = 1;
    size_t in_len = (size_t)f->file_size, len = (size_t)total;
    unsigned char *in = nnd_alloc(in_len), *out = NULL;
    struct libdeflate_decompressor *d = NULL;
    int rc = 0;
    if (!in) {
        rc = out_of_memory(f->path, err);
        goto done;
    }
    if (!read_at(f, in, in_len, 0))
        goto done; /* the stream meets the same trouble, and says what it is */
    const unsigned char *tail = in + in_len - 4;
    uint32_t field = (uint32_t)tail[0] | (uint32_t)tail[1] << 8 | (uint32_t)tail[2] << 16 |
                     (uint32_t)tail[3] << 24;
    if (field != (uint32_t)len)
        goto done;
    out = nnd_alloc(len ? len : 1);
    d = libdeflate_alloc_decompressor();
    if (!out || !d) {
        rc = out_of_memory(f->path, err);
        goto done;
    }
    size_t used = 0, made = 0;
    /* Only one member that fills the buffer exactly: a second member (or trailing
     * bytes), a length other than the header's and damage all stream instead. */
    if (libdeflate_gzip_decompress_ex(d, in, in_len, out, len, &used, &made) ==
            LIBDEFLATE_SUCCESS &&
        used == in_len && made == len) {
        f->whole = out;
        f->whole_len = (int64_t)len;
        out = NULL;
    }
done:
    if (d)
        libdeflate_free_decompressor(d);
    nnd_free(out);
    nnd_free(in);
    return rc;
}

int64_t data_read(DataFile *f, void *buf, int64_t n, NndErr *err)
{
    int64_t got;
    if (f->whole) {
        got = f->whole_len - f->pos < n ? f->whole_len - f->pos : n;
        memcpy(buf, f->whole + f->pos, (size_t)got);
    } else if (f->gz) {
        got = gz_read(f, buf, n, err);
    } else {
        got = (int64_t)fread(buf, 1, (size_t)n, f->fp);
        if (got < n && ferror(f->fp))
            return read_error(f, err);
    }
    if (got > 0)
        f->pos += got;
    return got;
}

/* Deflate codes at best 258 bytes in 2 bits, so n gzip bytes inflate to at most
 * 1032 n: a lying header is caught before anything is allocated. */
int64_t data_file_limit(const DataFile *f)
{
    if (!f->gz)
        return f->file_size;
    if (f->file_size > INT64_MAX / 1032)
        return INT64_MAX;
    return f->file_size * 1032;
}

int data_read_rest(DataFile *f, char **text, int64_t *len, NndErr *err)
{
    *text = NULL;
    *len = 0;
    /* Plain files: the size is known, and the spare byte shows the end. */
    int64_t cap = f->gz ? CHUNK_SIZE : f->file_size - f->pos + 2;
    if (cap < 2)
        cap = 2;
    if ((uint64_t)cap > SIZE_MAX)
        return out_of_memory(f->path, err);
    char *buf = nnd_alloc((size_t)cap);
    if (!buf)
        return out_of_memory(f->path, err);
    int64_t n = 0;
    for (;;) {
        if (n + 1 == cap) {
            if (cap > DATA_GZ_MAX_BYTES / 2 || (uint64_t)cap * 2 > SIZE_MAX) {
                nnd_err(err, "%s: more than %lld bytes of text", f->path,
                        (long long)DATA_GZ_MAX_BYTES);
                goto fail;
            }
            char *bigger = nnd_alloc((size_t)cap * 2);
            if (!bigger) {
                out_of_memory(f->path, err);
                goto fail;
            }
            memcpy(bigger, buf, (size_t)n);
            nnd_free(buf);
            buf = bigger;
            cap *= 2;
        }
        int64_t want = cap - 1 - n;
        int64_t got = data_read(f, buf + n, want, err);
        if (got < 0)
            goto fail;
        n += got;
        if (got < want)
            break;
    }
    if (f->cut) {
        nnd_err(err, "%s: truncated: the gzip stream is cut short", f->path);
        goto fail;
    }
    buf[n] = 0;
    *text = buf;
    *len = n;
    return 0;
fail:
    nnd_free(buf);
    return -1;
}

/* ---- element types ------------------------------------------------------------- */

int raw_size(RawKind k)
{
    switch (k) {
    case RAW_U8:
    case RAW_I8:
    case RAW_BOOL: return 1;
    case RAW_I16: return 2;
    case RAW_I32:
    case RAW_F32: return 4;
    case RAW_I64:
    case RAW_F64: return 8;
    }
    return 0;
}

const char *raw_name(RawKind k)
{
    switch (k) {
    case RAW_U8: return "u8";
    case RAW_I8: return "i8";
    case RAW_I16: return "i16";
    case RAW_I32: return "i32";
    case RAW_I64: return "i64";
    case RAW_F32: return "f32";
    case RAW_F64: return "f64";
    case RAW_BOOL: return "bool";
    }
    return "?";
}

static int raw_is_float(RawKind k) { return k == RAW_F32 || k == RAW_F64; }

static uint64_t load_bits(const unsigned char *p, int size, int big_endian)
{
    uint64_t v = 0;
    for (int i = 0; i < size; i++)
        v |= (uint64_t)p[big_endian ? size - 1 - i : i] << (8 * i);
    return v;
}

/* Integer kinds only: the value, sign-extended. */
static int64_t raw_int(RawType t, const unsigned char *p)
{
    switch (t.kind) {
    case RAW_U8:
    case RAW_BOOL: return p[0];
    case RAW_I8: return (int8_t)p[0];
    case RAW_I16: return (int16_t)(uint16_t)load_bits(p, 2, t.big_endian);
    case RAW_I32: return (int32_t)(uint32_t)load_bits(p, 4, t.big_endian);
    case RAW_I64: return (int64_t)load_bits(p, 8, t.big_endian);
    default: return 0;
    }
}

static double raw_double(RawType t, const unsigned char *p)
{
    if (t.kind == RAW_F32) {
        uint32_t bits = (uint32_t)load_bits(p, 4, t.big_endian);
        float v;
        memcpy(&v, &bits, sizeof v);
        return v;
    }
    if (t.kind == RAW_F64) {
        uint64_t bits = load_bits(p, 8, t.big_endian);
        double v;
        memcpy(&v, &bits, sizeof v);
        return v;
    }
    return (double)raw_int(t, p);
}

/* Whether converting every element of this type to dtype (times scale) is sure to
 * succeed, as reading on demand needs: raw_convert refuses finite values beyond f32's
 * range. */
static int convert_cannot_fail(RawKind k, NndDType dtype, double scale)
{
    if (dtype == NND_F64)
        return 1;
    switch (k) {
    case RAW_U8:
    case RAW_I8:
    case RAW_I16:
    case RAW_I32:
    case RAW_BOOL: return fabs(scale) <= 1e20; /* |value| < 2^31 */
    case RAW_F32: return fabs(scale) <= 1;
    default: return 0;
    }
}

/* n elements at src as floats of dtype times scale, into dst, where
 * convert_cannot_fail says so.  Bytes (images) to f32 in vector lanes (kernels.c):
 * a batch's rows are converted on every step. */
static void raw_floats(RawType t, const unsigned char *src, int64_t n, NndDType dtype, double scale,
                       void *dst)
{
    int size = raw_size(t.kind);
    if (dtype == NND_F64) {
        double *d = dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = raw_double(t, src + i * size) * scale;
    } else if (t.kind == RAW_U8) {
        u8_to_f32(src, n, scale, dst);
    } else {
        float *d = dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = (float)(raw_double(t, src + i * size) * scale);
    }
}

/* Converts n elements at src into out, starting at element index at. */
static int raw_convert(const DataFile *f, RawType t, const unsigned char *src, int64_t n,
                       NndTensor *out, int64_t at, double scale, NndErr *err)
{
    int size = raw_size(t.kind);
    switch (out->dtype) {
    case NND_I32: {
        int32_t *dst = (int32_t *)out->data + at;
        if (t.kind == RAW_U8) {
            for (int64_t i = 0; i < n; i++)
                dst[i] = src[i];
            return 0;
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t v = raw_int(t, src + i * size);
            if (v < INT32_MIN || v > INT32_MAX)
                return nnd_err(err, "%s: label %lld is %lld, which does not fit in i32", f->path,
                               (long long)(at + i), (long long)v);
            dst[i] = (int32_t)v;
        }
        return 0;
    }
    case NND_F64: raw_floats(t, src, n, NND_F64, scale, (double *)out->data + at); return 0;
    case NND_F32: {
        float *dst = (float *)out->data + at;
        if (convert_cannot_fail(t.kind, NND_F32, scale)) {
            raw_floats(t, src, n, NND_F32, scale, dst);
            return 0;
        }
        for (int64_t i = 0; i < n; i++) {
            double v = raw_double(t, src + i * size) * scale;
            /* Converting a finite double beyond FLT_MAX to float is undefined. */
            if (fabs(v) > FLT_MAX && isfinite(v))
                return nnd_err(err, "%s: element %lld is %g, out of range for f32", f->path,
                               (long long)(at + i), v);
            dst[i] = (float)v;
        }
        return 0;
    }
    default: return nnd_err(err, "%s: cannot convert to %s", f->path, nnd_dtype_name(out->dtype));
    }
}

/* ---- shared checks ------------------------------------------------------------- */

int data_options(const char *path, const NndLoadOptions *opts, NndLoadOptions *o, NndErr *err)
{
    o->scale = 1;
    o->float_dtype = NND_F32;
    if (!opts)
        return 0;
    if (opts->float_dtype != NND_F32 && opts->float_dtype != NND_F64)
        return nnd_err(err, "%s: float_dtype must be f32 or f64, not %s", path ? path : "(null)",
                       nnd_dtype_name(opts->float_dtype));
    o->float_dtype = opts->float_dtype;
    if (opts->scale != 0)
        o->scale = opts->scale;
    return 0;
}

NndDType data_out_dtype(RawKind k, NndRole role, const NndLoadOptions *o)
{
    if (role == NND_LABELS && !raw_is_float(k))
        return NND_I32;
    return o->float_dtype;
}

void data_format_shape(char *buf, size_t size, int rank, const int64_t *shape)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < rank && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? "x" : "", (long long)shape[i]);
}

int data_check_shape(const DataFile *f, int rank, const int64_t *shape, RawKind k, int64_t *nbytes,
                     NndErr *err)
{
    *nbytes = 0;
    if (rank < 1 || rank > NND_MAX_RANK)
        return nnd_err(err, "%s: bad header: rank %d is not in 1..%d", f->path, rank,
                       (int)NND_MAX_RANK);
    char dims[NND_MAX_RANK * 21 + 1];
    data_format_shape(dims, sizeof dims, rank, shape);
    int64_t n = raw_size(k);
    for (int i = 0; i < rank; i++) {
        if (i == 0 && shape[0] == 0)
            return nnd_err(err, "%s: no samples (its shape is %s)", f->path, dims);
        if (shape[i] <= 0)
            return nnd_err(err, "%s: bad header: dimension %d of %s is %lld", f->path, i + 1, dims,
                           (long long)shape[i]);
        if (n > INT64_MAX / shape[i])
            return nnd_err(err, "%s: bad header: shape %s of %s overflows", f->path, dims,
                           raw_name(k));
        n *= shape[i];
    }
    *nbytes = n;
    return 0;
}

static void describe(char *buf, size_t size, int rank, const int64_t *shape, RawKind k,
                     int64_t nbytes)
{
    char dims[NND_MAX_RANK * 21 + 1];
    data_format_shape(dims, sizeof dims, rank, shape);
    snprintf(buf, size, "%s %s (%lld bytes)", dims, raw_name(k), (long long)nbytes);
}

int data_check_body(const DataFile *f, int rank, const int64_t *shape, RawType t, int64_t nbytes,
                    NndErr *err)
{
    char what[256];
    describe(what, sizeof what, rank, shape, t.kind, nbytes);
    if (!f->gz) {
        int64_t left = f->file_size - f->pos;
        if (left < nbytes)
            return nnd_err(err,
                           "%s: truncated: header declares %s but the file holds %lld bytes after "
                           "the %lld-byte header",
                           f->path, what, (long long)left, (long long)f->pos);
        if (left > nbytes)
            return nnd_err(err,
                           "%s: trailing bytes: header declares %s but the file holds %lld "
                           "bytes after the %lld-byte header (%lld extra)",
                           f->path, what, (long long)left, (long long)f->pos,
                           (long long)(left - nbytes));
        return 0;
    }
    if (nbytes > DATA_GZ_MAX_BYTES)
        return nnd_err(err, "%s: header declares %s, more than the %lld-byte limit", f->path, what,
                       (long long)DATA_GZ_MAX_BYTES);
    if (nbytes > data_file_limit(f) - f->pos)
        return nnd_err(err,
                       "%s: truncated: header declares %s but a %lld-byte gzip file cannot "
                       "hold that much (deflate expands at most 1032:1)",
                       f->path, what, (long long)f->file_size);
    return 0;
}

/* The body into out (converted), or as it is into raw (nbytes) when raw is set. */
static int read_body(DataFile *f, int rank, const int64_t *shape, RawType t, int64_t nbytes,
                     NndRole role, const NndLoadOptions *o, NndTensor *out, unsigned char *raw,
                     NndErr *err)
{
    NndErr sub;
    if (data_inflate_all(f, f->pos + nbytes, err) != 0)
        return -1;
    if (!raw && nnd_tensor_alloc(out, data_out_dtype(t.kind, role, o), rank, shape, &sub) != 0)
        return nnd_err(err, "%s: %s", f->path, sub.msg);
    unsigned char *chunk = raw ? NULL : nnd_alloc(CHUNK_SIZE);
    if (!raw && !chunk) {
        out_of_memory(f->path, err);
        goto fail;
    }
    double scale = role == NND_FEATURES ? o->scale : 1.0;
    int size = raw_size(t.kind);
    int64_t header = f->pos;
    int64_t done = 0;
    while (done < nbytes) {
        int64_t want = nbytes - done < CHUNK_SIZE ? nbytes - done : CHUNK_SIZE;
        int64_t got = data_read(f, raw ? raw + done : chunk, want, err);
        if (got < 0)
            goto fail;
        if (!raw && raw_convert(f, t, chunk, got / size, out, done / size, scale, err) != 0)
            goto fail;
        done += got;
        if (got < want) {
            char what[256];
            describe(what, sizeof what, rank, shape, t.kind, nbytes);
            nnd_err(err,
                    "%s: truncated: header declares %s but the %s holds %lld bytes after the "
                    "%lld-byte header",
                    f->path, what, f->gz ? "decompressed file" : "file", (long long)done,
                    (long long)header);
            goto fail;
        }
    }
    unsigned char extra;
    int64_t got = data_read(f, &extra, 1, err);
    if (got < 0)
        goto fail;
    /* Damage inside a deflate stream may inflate to more bytes rather than fail: the
     * rest of the stream is checked (its CRC and length) before blaming the header. */
    if (got > 0 && f->gz && !f->whole && gz_drain(f, err) != 0)
        goto fail;
    if (got > 0 && !f->cut) {
        char what[256];
        describe(what, sizeof what, rank, shape, t.kind, nbytes);
        nnd_err(err, "%s: trailing bytes: header declares %s but the %s goes on after it", f->path,
                what, f->gz ? "decompressed data" : "file");
        goto fail;
    }
    if (f->cut) {
        nnd_err(err, "%s: truncated: the gzip stream is cut short", f->path);
        goto fail;
    }
    nnd_free(chunk);
    return 0;
fail:
    nnd_free(chunk);
    if (!raw)
        nnd_tensor_free(out);
    return -1;
}

int data_read_body(DataFile *f, int rank, const int64_t *shape, RawType t, int64_t nbytes,
                   NndRole role, const NndLoadOptions *o, NndTensor *out, NndErr *err)
{
    return read_body(f, rank, shape, t, nbytes, role, o, out, NULL, err);
}

/* ---- rows read on demand -------------------------------------------------------- */

struct NndRows {
    void *map; /* the file mapped, or NULL: the rows read into owned */
    size_t map_len;
    void *owned;
    const unsigned char *base; /* row 0 of the file */
    RawType t;
    double scale;
    NndDType dtype;
    int64_t row_elems;
    int64_t count; /* the data set's rows */
    int64_t *rows; /* their rows in the file; NULL: 0..count */
};

/* r's rows for a file whose header is read (a plain file mapped, or held: base) */
static NndRows *rows_new(void *map, size_t map_len, void *owned, const unsigned char *base,
                         int rank, const int64_t *shape, RawType t, NndDType dtype, double scale)
{
    NndRows *r = nnd_alloc(sizeof *r);
    if (!r)
        return NULL;
    *r = (NndRows){.map = map,
                   .map_len = map_len,
                   .owned = owned,
                   .base = base,
                   .t = t,
                   .scale = scale,
                   .dtype = dtype,
                   .row_elems = 1,
                   .count = shape[0]};
    for (int i = 1; i < rank; i++)
        r->row_elems *= shape[i];
    return r;
}

int data_map_rows(DataFile *f, int rank, const int64_t *shape, RawType t, NndRole role,
                  const NndLoadOptions *o, NndRows **out)
{
    *out = NULL;
    NndDType dtype = data_out_dtype(t.kind, role, o);
    if (f->gz || role != NND_FEATURES || !convert_cannot_fail(t.kind, dtype, o->scale) ||
        f->file_size <= 0 || (uint64_t)f->file_size > SIZE_MAX)
        return 0;
    void *map = mmap(NULL, (size_t)f->file_size, PROT_READ, MAP_PRIVATE, fileno(f->fp), 0);
    if (map == MAP_FAILED)
        return 0;
    NndRows *r = rows_new(map, (size_t)f->file_size, NULL, (const unsigned char *)map + f->pos,
                          rank, shape, t, dtype, o->scale);
    if (!r) {
        munmap(map, (size_t)f->file_size);
        return 0;
    }
    /* Batches take rows in shuffled order: read ahead only what is asked for. */
    posix_madvise(map, (size_t)f->file_size, POSIX_MADV_RANDOM);
    data_map_register(map, (size_t)f->file_size, f->path);
    *out = r;
    return 0;
}

int data_read_rows(DataFile *f, int rank, const int64_t *shape, RawType t, int64_t nbytes,
                   NndRole role, const NndLoadOptions *o, NndRows **out, NndErr *err)
{
    *out = NULL;
    NndDType dtype = data_out_dtype(t.kind, role, o);
    if (role != NND_FEATURES || !convert_cannot_fail(t.kind, dtype, o->scale) ||
        (uint64_t)nbytes > SIZE_MAX)
        return 0;
    if (data_inflate_all(f, f->pos + nbytes, err) != 0)
        return -1;
    if (f->whole) {
        /* the body is the rest of the inflated stream: the rows are read there */
        *out = rows_new(NULL, 0, f->whole, f->whole + f->pos, rank, shape, t, dtype, o->scale);
        if (!*out)
            return out_of_memory(f->path, err);
        f->whole = NULL;
        f->pos += nbytes;
        return 0;
    }
    unsigned char *raw = nnd_alloc(nbytes > 0 ? (size_t)nbytes : 1);
    if (!raw)
        return 0; /* the caller loads the body, and says what memory is missing */
    if (read_body(f, rank, shape, t, nbytes, role, o, NULL, raw, err) != 0) {
        nnd_free(raw);
        return -1;
    }
    *out = rows_new(NULL, 0, raw, raw, rank, shape, t, dtype, o->scale);
    if (!*out) {
        nnd_free(raw);
        return out_of_memory(f->path, err);
    }
    return 0;
}

int nnd_rows_mapped(const NndRows *r) { return r && r->map; }

void nnd_rows_prefetch(const NndRows *r, const uint32_t *idx, int64_t b)
{
    size_t rb = (size_t)(r->row_elems * raw_size(r->t.kind));
    for (int64_t s = 0; s < b; s++) {
        int64_t row = r->rows ? r->rows[idx[s]] : (int64_t)idx[s];
        data_prefetch(r->base + (size_t)row * rb, rb);
    }
}

void nnd_rows_free(NndRows *r)
{
    if (!r)
        return;
    if (r->map) {
        data_map_unregister(r->map);
        munmap(r->map, r->map_len);
    }
    nnd_free(r->owned);
    nnd_free(r->rows);
    nnd_free(r);
}

int nnd_rows_keep(NndRows *r, const unsigned char *keep, int64_t count, NndErr *err)
{
    int64_t *rows = nnd_alloc(sizeof(int64_t) * (size_t)(count ? count : 1));
    if (!rows)
        return nnd_err(err, "out of memory for %lld row numbers", (long long)count);
    int64_t k = 0;
    for (int64_t i = 0; i < r->count && k < count; i++)
        if (keep[i])
            rows[k++] = r->rows ? r->rows[i] : i;
    nnd_free(r->rows);
    r->rows = rows;
    r->count = k;
    return 0;
}

void nnd_rows_gather(const NndRows *r, const uint32_t *idx, int64_t b, void *dst)
{
    size_t size = (size_t)raw_size(r->t.kind), es = nnd_dtype_size(r->dtype);
    int64_t n = r->row_elems;
    for (int64_t s = 0; s < b; s++) {
        int64_t row = r->rows ? r->rows[idx[s]] : (int64_t)idx[s];
        raw_floats(r->t, r->base + (size_t)(row * n) * size, n, r->dtype, r->scale,
                   (char *)dst + (size_t)(s * n) * es);
    }
}
