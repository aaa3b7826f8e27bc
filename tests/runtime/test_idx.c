/* The IDX loader: every element type, plain and gzip, and a corpus of broken files. */
#define _POSIX_C_SOURCE 200809L
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include "helpers.h"

/* the runtime's private byte streams, for which gzip files inflate all at once */
#include "../../runtime/data.h"

typedef struct IdxType {
    int code;
    const char *name;
    int size;
    int is_float;
} IdxType;

static const IdxType idx_types[] = {
    {0x08, "u8", 1, 0},  {0x09, "i8", 1, 0},  {0x0B, "i16", 2, 0},
    {0x0C, "i32", 4, 0}, {0x0D, "f32", 4, 1}, {0x0E, "f64", 8, 1},
};

/* Test values that use each type's range, signs included. */
static double idx_value(const IdxType *t, int i)
{
    switch (t->code) {
    case 0x08: return (i * 37) % 256;
    case 0x09: return (i * 37) % 256 - 128;
    case 0x0B: return i * 1337 - 16000;
    case 0x0C: return i == 0 ? INT32_MIN : i == 1 ? INT32_MAX : i * 100003 - 1200000;
    case 0x0D: return (i - 12) * 0.25;
    default: return (i - 12) * 0.1 + 1e-12;
    }
}

static void idx_put_value(Bytes *b, const IdxType *t, double v)
{
    if (t->code == 0x0D) {
        float f = (float)v;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        bytes_be(b, bits, 4);
    } else if (t->code == 0x0E) {
        uint64_t bits;
        memcpy(&bits, &v, 8);
        bytes_be(b, bits, 8);
    } else {
        bytes_be(b, (uint64_t)(int64_t)v, t->size);
    }
}

/* Header for type code and dims, then n values. */
static void idx_build(Bytes *b, const IdxType *t, int rank, const uint32_t *dims, int n)
{
    bytes_u8(b, 0);
    bytes_u8(b, 0);
    bytes_u8(b, (unsigned)t->code);
    bytes_u8(b, (unsigned)rank);
    for (int i = 0; i < rank; i++)
        bytes_be32(b, dims[i]);
    for (int i = 0; i < n; i++)
        idx_put_value(b, t, idx_value(t, i));
}

static void check_loaded(const NndTensor *x, const IdxType *t, NndRole role, NndDType fd,
                         double scale)
{
    assert_int_equal(x->rank, 3);
    assert_int_equal(x->shape[0], 2);
    assert_int_equal(x->shape[1], 3);
    assert_int_equal(x->shape[2], 4);
    assert_non_null(x->data);
    for (int i = 0; i < 24; i++) {
        double v = idx_value(t, i);
        if (role == NND_LABELS && !t->is_float) {
            assert_int_equal(x->dtype, NND_I32);
            assert_int_equal(((int32_t *)x->data)[i], (int32_t)v);
            continue;
        }
        double s = role == NND_FEATURES ? scale : 1.0;
        assert_int_equal(x->dtype, fd);
        if (fd == NND_F32)
            assert_true(((float *)x->data)[i] == (float)(v * s));
        else
            assert_true(((double *)x->data)[i] == v * s);
    }
}

static void test_each_type(void **state)
{
    uint32_t dims[3] = {2, 3, 4};
    for (size_t k = 0; k < sizeof idx_types / sizeof idx_types[0]; k++) {
        const IdxType *t = &idx_types[k];
        Bytes b = {0};
        idx_build(&b, t, 3, dims, 24);
        char name[64];
        snprintf(name, sizeof name, "idx_%s.idx", t->name);
        const char *plain = tmp_path(name);
        write_file(plain, b.p, b.n);
        snprintf(name, sizeof name, "idx_%s.idx.gz", t->name);
        const char *gz = tmp_path(name);
        write_gz(gz, b.p, b.n, 0);
        const char *paths[2] = {plain, gz};
        for (int p = 0; p < 2; p++) {
            for (int role = NND_FEATURES; role <= NND_LABELS; role++) {
                NndTensor x;
                NndErr err;
                NndLoadOptions f32 = {0.5, NND_F32}, f64 = {0.5, NND_F64};
                assert_int_equal(nnd_idx_load(paths[p], (NndRole)role, &f32, &x, &err), 0);
                check_loaded(&x, t, (NndRole)role, NND_F32, 0.5);
                nnd_tensor_free(&x);
                assert_int_equal(nnd_idx_load(paths[p], (NndRole)role, &f64, &x, &err), 0);
                check_loaded(&x, t, (NndRole)role, NND_F64, 0.5);
                nnd_tensor_free(&x);
                /* NULL options: scale 1, f32. */
                assert_int_equal(nnd_idx_load(paths[p], (NndRole)role, NULL, &x, &err), 0);
                check_loaded(&x, t, (NndRole)role, NND_F32, 1.0);
                nnd_tensor_free(&x);
                /* Probe: the same dtype and shape, no data. */
                assert_int_equal(nnd_idx_probe(paths[p], (NndRole)role, &f64, &x, &err), 0);
                assert_null(x.data);
                assert_int_equal(x.rank, 3);
                assert_int_equal(x.shape[2], 4);
                assert_int_equal(x.dtype, role == NND_LABELS && !t->is_float ? NND_I32 : NND_F64);
            }
        }
        bytes_free(&b);
    }
}

static void test_scale_zero_means_one(void **state)
{
    uint32_t dims[1] = {5};
    Bytes b = {0};
    idx_build(&b, &idx_types[0], 1, dims, 5);
    const char *path = tmp_path("idx_scale0.idx");
    write_file(path, b.p, b.n);
    NndLoadOptions o = {0, NND_F32};
    NndTensor x;
    NndErr err;
    assert_int_equal(nnd_idx_load(path, NND_FEATURES, &o, &x, &err), 0);
    assert_int_equal(x.rank, 1);
    for (int i = 0; i < 5; i++)
        assert_true(((float *)x.data)[i] == (float)idx_value(&idx_types[0], i));
    nnd_tensor_free(&x);
    bytes_free(&b);
}

/* More than one chunk of conversion, and concatenated gzip members. */
static void test_large_and_multi_member(void **state)
{
    uint32_t dims[2] = {1000, 300};
    const IdxType *t = &idx_types[2]; /* i16: 600000 bytes */
    Bytes b = {0};
    idx_build(&b, t, 2, dims, 0);
    size_t header = b.n;
    for (int i = 0; i < 300000; i++)
        bytes_be(&b, (uint64_t)(i % 65536), 2);
    const char *gz = tmp_path("idx_multi.idx.gz");
    write_gz(gz, b.p, header + 1001, 0);
    write_gz(gz, b.p + header + 1001, 100000, 1);
    write_gz(gz, b.p + header + 101001, b.n - header - 101001, 1);
    const char *plain = tmp_path("idx_large.idx");
    write_file(plain, b.p, b.n);
    const char *paths[2] = {plain, gz};
    for (int p = 0; p < 2; p++) {
        NndTensor x;
        NndErr err;
        assert_int_equal(nnd_idx_load(paths[p], NND_LABELS, NULL, &x, &err), 0);
        assert_int_equal(x.dtype, NND_I32);
        for (int i = 0; i < 300000; i++)
            assert_int_equal(((int32_t *)x.data)[i], (int16_t)(i % 65536));
        nnd_tensor_free(&x);
    }
    bytes_free(&b);
}

static unsigned char *read_whole_file(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long len = ftell(fp);
    assert_true(len > 0);
    rewind(fp);
    unsigned char *p = malloc((size_t)len);
    assert_int_equal(fread(p, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    *n = (size_t)len;
    return p;
}

/* Reads path's first `head` bytes as a stream, then asks for the whole inflate of a
 * stream declared declared_extra bytes longer than expect: *whole says whether it was
 * made; the rest must read back as expect's. */
static void read_after_inflate_all(const char *path, const Bytes *expect, size_t head,
                                   long declared_extra, int *whole)
{
    DataFile f;
    NndErr err;
    assert_int_equal(data_open(&f, path, &err), 0);
    unsigned char *got = malloc(expect->n + 1);
    assert_int_equal(data_read(&f, got, (int64_t)head, &err), (int64_t)head);
    assert_int_equal(data_inflate_all(&f, (int64_t)(expect->n + declared_extra), &err), 0);
    *whole = f.whole != NULL;
    if (f.whole)
        assert_int_equal(f.whole_len, (int64_t)expect->n);
    int64_t rest = (int64_t)(expect->n - head);
    assert_int_equal(data_read(&f, got + head, rest + 1, &err), rest);
    assert_memory_equal(got, expect->p, expect->n);
    data_close(&f);
    free(got);
}

/* A gzip file of one member inflates at once (libdeflate), after a header already
 * read by streaming; a file of several members, a length field that does not match
 * and a plain file keep streaming, to the same bytes. */
static void test_inflate_all(void **state)
{
    Bytes b = {0};
    for (int i = 0; i < 300000; i++)
        bytes_u8(&b, (unsigned)(i % 251 * 7 % 256));
    const char *one = tmp_path("inflate_one.gz");
    write_gz(one, b.p, b.n, 0);
    int whole;
    read_after_inflate_all(one, &b, 16, 0, &whole);
    assert_true(whole);
    read_after_inflate_all(one, &b, 0, 0, &whole);
    assert_true(whole);
    /* a header declaring more or less than the file holds: streamed, as before */
    read_after_inflate_all(one, &b, 16, 1, &whole);
    assert_false(whole);
    read_after_inflate_all(one, &b, 16, -1, &whole);
    assert_false(whole);

    /* the last member's length field is the whole length, but there are two */
    const char *two = tmp_path("inflate_two.gz");
    write_gz(two, b.p, 1000, 0);
    write_gz(two, b.p + 1000, b.n - 1000, 1);
    size_t gn;
    unsigned char *g = read_whole_file(two, &gn);
    g[gn - 4] = (unsigned char)(b.n & 0xff);
    g[gn - 3] = (unsigned char)(b.n >> 8 & 0xff);
    g[gn - 2] = (unsigned char)(b.n >> 16 & 0xff);
    write_file(two, g, gn);
    free(g);
    DataFile f;
    NndErr err;
    assert_int_equal(data_open(&f, two, &err), 0);
    assert_int_equal(data_inflate_all(&f, (int64_t)b.n, &err), 0);
    assert_null(f.whole);
    data_close(&f);

    /* the length field one more than the data, as the header says: libdeflate
     * refuses it, and zlib's stream names the damage */
    g = gzip_bytes(b.p, b.n, &gn);
    g[gn - 4]++;
    const char *len = tmp_path("inflate_length.gz");
    write_file(len, g, gn);
    free(g);
    assert_int_equal(data_open(&f, len, &err), 0);
    assert_int_equal(data_inflate_all(&f, (int64_t)b.n + 1, &err), 0);
    assert_null(f.whole);
    unsigned char *buf = malloc(b.n + 1);
    assert_int_equal(data_read(&f, buf, (int64_t)b.n + 1, &err), -1);
    assert_non_null(strstr(err.msg, "corrupt gzip data"));
    data_close(&f);
    free(buf);

    const char *plain = tmp_path("inflate_plain.bin");
    write_file(plain, b.p, b.n);
    read_after_inflate_all(plain, &b, 16, 0, &whole);
    assert_false(whole);
    bytes_free(&b);
}

/* Header for a u8 tensor of the given dims followed by n data bytes. */
static void write_u8_idx(const char *path, int rank, const uint32_t *dims, size_t n, int gz)
{
    Bytes b = {0};
    idx_build(&b, &idx_types[0], rank, dims, 0);
    for (size_t i = 0; i < n; i++)
        bytes_u8(&b, (unsigned)i);
    if (gz)
        write_gz(path, b.p, b.n, 0);
    else
        write_file(path, b.p, b.n);
    bytes_free(&b);
}

static void expect_error(const char *path, const char *needle)
{
    NndTensor x;
    NndErr err;
    TestAlloc ta;
    test_alloc_install(&ta, 0);
    int rc = nnd_idx_load(path, NND_FEATURES, NULL, &x, &err);
    long live = ta.live;
    size_t max_size = ta.max_size;
    test_alloc_remove(&ta);
    assert_load_error(rc, &err, path, needle);
    assert_null(x.data);
    assert_int_equal(live, 0);
    /* Nothing was allocated from a lying size. */
    assert_true(max_size <= (1 << 20));
    rc = nnd_idx_probe(path, NND_FEATURES, NULL, &x, &err);
    /* Probe reads only the header, so it may accept a file whose damage is inside the
     * gzip data; when it rejects, the message must still name the file. */
    if (rc != 0)
        assert_load_error(rc, &err, path, "");
}

static void write_bytes(const char *path, const char *bytes, size_t n)
{
    write_file(path, bytes, n);
}

/* Rows converted on demand (nnd_idx_map: a plain file mapped, a gzip file held as
 * stored) gather the same values as a load, for every type, both dtypes, shuffled
 * and kept rows; labels and f64 data read as f32 are loaded instead. */
static void test_rows_match_load(void **state)
{
    uint32_t dims[3] = {5, 3, 4};
    for (size_t k = 0; k < sizeof idx_types / sizeof idx_types[0]; k++) {
        const IdxType *t = &idx_types[k];
        Bytes b = {0};
        idx_build(&b, t, 3, dims, 60);
        char name[64];
        snprintf(name, sizeof name, "rows_%s.idx", t->name);
        const char *plain = tmp_path(name);
        write_file(plain, b.p, b.n);
        snprintf(name, sizeof name, "rows_%s.idx.gz", t->name);
        const char *gz = tmp_path(name);
        write_gz(gz, b.p, b.n, 0);
        const char *paths[2] = {plain, gz};
        for (int p = 0; p < 2; p++)
            for (int d = 0; d < 2; d++) {
                NndLoadOptions o = {0.25, d ? NND_F64 : NND_F32};
                NndTensor all, x;
                NndRows *rows;
                NndErr err;
                assert_int_equal(nnd_idx_load(paths[p], NND_FEATURES, &o, &all, &err), 0);
                assert_int_equal(nnd_idx_map(paths[p], NND_FEATURES, &o, &x, &rows, &err), 0);
                assert_int_equal(x.dtype, all.dtype);
                assert_int_equal(x.shape[0], 5);
                size_t es = nnd_dtype_size(all.dtype), rb = 12 * es;
                if (t->code == 0x0E && !d) { /* f64 as f32 may fail: loaded whole */
                    assert_null(rows);
                    assert_memory_equal(x.data, all.data, 5 * rb);
                } else {
                    assert_non_null(rows);
                    assert_null(x.data);
                    assert_int_equal(nnd_rows_mapped(rows), p == 0);
                    uint32_t idx[4] = {4, 0, 2, 4};
                    char got[4 * 12 * 8];
                    nnd_rows_prefetch(rows, idx, 4);
                    nnd_rows_gather(rows, idx, 4, got);
                    for (int i = 0; i < 4; i++)
                        assert_memory_equal(got + i * rb, (char *)all.data + idx[i] * rb, rb);
                    /* rows 1 and 3 kept: rows 0 and 1 of what is left */
                    unsigned char keep[5] = {0, 1, 0, 1, 0};
                    assert_int_equal(nnd_rows_keep(rows, keep, 2, &err), 0);
                    uint32_t two[2] = {1, 0};
                    nnd_rows_gather(rows, two, 2, got);
                    assert_memory_equal(got, (char *)all.data + 3 * rb, rb);
                    assert_memory_equal(got + rb, (char *)all.data + 1 * rb, rb);
                }
                nnd_rows_free(rows);
                nnd_tensor_free(&x);
                /* labels are loaded */
                assert_int_equal(nnd_idx_map(paths[p], NND_LABELS, &o, &x, &rows, &err), 0);
                assert_null(rows);
                assert_non_null(x.data);
                nnd_tensor_free(&x);
                nnd_tensor_free(&all);
            }
        bytes_free(&b);
    }
    /* a gzip body that is cut short: the error a load gives, no rows */
    uint32_t d2[2] = {100, 100};
    Bytes b = {0};
    idx_build(&b, &idx_types[0], 2, d2, 0);
    for (int i = 0; i < 10000; i++)
        bytes_u8(&b, (unsigned)(i * 7 % 251));
    size_t gn;
    unsigned char *g = gzip_bytes(b.p, b.n, &gn);
    const char *cut = tmp_path("rows_cut.idx.gz");
    write_file(cut, g, gn / 2);
    NndTensor x;
    NndRows *rows;
    NndErr err;
    assert_int_equal(nnd_idx_map(cut, NND_FEATURES, NULL, &x, &rows, &err), -1);
    assert_null(rows);
    assert_null(x.data);
    assert_non_null(strstr(err.msg, "truncated"));
    free(g);
    bytes_free(&b);
}

static void test_corrupt_headers(void **state)
{
    const char *p;
    p = tmp_path("idx_empty.idx");
    write_bytes(p, "", 0);
    expect_error(p, "truncated");

    p = tmp_path("idx_short_magic.idx");
    write_bytes(p, "\0\0\x08", 3);
    expect_error(p, "truncated");

    p = tmp_path("idx_bad_magic.idx");
    write_bytes(p, "\x01\x02\x08\x01\0\0\0\1\0", 9);
    expect_error(p, "bad magic");

    p = tmp_path("idx_bad_type.idx");
    write_bytes(p, "\0\0\x07\x01\0\0\0\1\0", 9);
    expect_error(p, "unknown IDX element type 0x07");

    p = tmp_path("idx_rank0.idx");
    write_bytes(p, "\0\0\x08\0\0", 5);
    expect_error(p, "rank 0");

    p = tmp_path("idx_rank9.idx");
    uint32_t dims9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    Bytes b = {0};
    bytes_put(&b, "\0\0\x08\x09", 4);
    for (int i = 0; i < 9; i++)
        bytes_be32(&b, dims9[i]);
    bytes_u8(&b, 0);
    write_file(p, b.p, b.n);
    bytes_free(&b);
    expect_error(p, "rank 9");

    p = tmp_path("idx_short_dims.idx");
    write_bytes(p, "\0\0\x08\x03\0\0\0\2\0\0\0\2", 12);
    expect_error(p, "truncated");

    p = tmp_path("idx_zero_dim.idx");
    uint32_t zero[3] = {2, 0, 3};
    write_u8_idx(p, 3, zero, 0, 0);
    expect_error(p, "dimension 2 of 2x0x3 is 0");

    p = tmp_path("idx_overflow.idx");
    uint32_t huge[8] = {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF,
                        0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF};
    write_u8_idx(p, 8, huge, 10, 0);
    expect_error(p, "overflows");

    p = tmp_path("idx_overflow_gz.idx.gz");
    write_u8_idx(p, 8, huge, 10, 1);
    expect_error(p, "overflows");

    p = tmp_path("idx_missing.idx");
    remove(p);
    expect_error(p, "cannot open");

    expect_error(NND_TEST_TMP, "is a directory");
    expect_error("/dev/null", "not a regular file");
}

static void test_lying_sizes(void **state)
{
    const char *p;
    uint32_t mnist[3] = {60000, 28, 28};
    p = tmp_path("idx_lying.idx");
    write_u8_idx(p, 3, mnist, 1234, 0);
    expect_error(p, "truncated: header declares 60000x28x28 u8 (47040000 bytes) but the file "
                    "holds 1234");

    /* A small gzip file cannot inflate to 47 MB: rejected before reading it. */
    p = tmp_path("idx_lying.idx.gz");
    write_u8_idx(p, 3, mnist, 1234, 1);
    expect_error(p, "truncated: header declares 60000x28x28 u8 (47040000 bytes)");
    expect_error(p, "1032");

    /* Plausible for the gzip size, but the data runs out. */
    uint32_t dims[2] = {100, 100};
    p = tmp_path("idx_short.idx.gz");
    write_u8_idx(p, 2, dims, 9999, 1);
    expect_error(p, "truncated: header declares 100x100 u8 (10000 bytes) but the decompressed "
                    "file holds 9999");

    p = tmp_path("idx_trailing.idx");
    write_u8_idx(p, 2, dims, 10007, 0);
    expect_error(p, "trailing bytes");
    expect_error(p, "(7 extra)");

    p = tmp_path("idx_trailing.idx.gz");
    write_u8_idx(p, 2, dims, 10001, 1);
    expect_error(p, "trailing bytes");

    /* i16 data one byte short of whole elements. */
    p = tmp_path("idx_half_elem.idx");
    write_bytes(p, "\0\0\x0B\x01\0\0\0\2\0\1\0", 11);
    expect_error(p, "truncated");
}

static void test_corrupt_gzip(void **state)
{
    uint32_t dims[2] = {100, 100};
    Bytes b = {0};
    idx_build(&b, &idx_types[0], 2, dims, 0);
    for (int i = 0; i < 10000; i++)
        bytes_u8(&b, (unsigned)(i * 7 % 251));
    size_t gn;
    unsigned char *g = gzip_bytes(b.p, b.n, &gn);
    const char *p;

    /* Cut in the middle of the deflate data. */
    p = tmp_path("idx_cut.idx.gz");
    write_file(p, g, gn / 2);
    expect_error(p, "truncated");

    /* Cut inside the 8-byte trailer: all data present, CRC and length missing. */
    p = tmp_path("idx_cut_trailer.idx.gz");
    write_file(p, g, gn - 4);
    expect_error(p, "truncated: the gzip stream is cut short");

    /* A damaged CRC. */
    p = tmp_path("idx_bad_crc.idx.gz");
    g[gn - 8] ^= 0xFF;
    write_file(p, g, gn);
    expect_error(p, "corrupt gzip data");
    g[gn - 8] ^= 0xFF;

    /* Damage inside the deflate stream. */
    p = tmp_path("idx_damaged.idx.gz");
    unsigned char *d = malloc(gn);
    memcpy(d, g, gn);
    for (size_t i = 20; i < gn - 8; i += 3)
        d[i] ^= 0x5A;
    write_file(p, d, gn);
    expect_error(p, "gzip");
    free(d);

    /* Damage that inflates to more bytes than the header declares, which the CRC
     * shows: a corrupt stream, not a header that lies. */
    p = tmp_path("idx_damaged_longer.idx.gz");
    Bytes lb = {0};
    bytes_put(&lb, b.p, b.n);
    for (int i = 0; i < 1000; i++) /* enough that one byte past the body is not the end */
        bytes_u8(&lb, (unsigned)i);
    size_t ln;
    unsigned char *l = gzip_bytes(lb.p, lb.n, &ln);
    l[ln - 8] ^= 0xFF;
    write_file(p, l, ln);
    expect_error(p, "corrupt gzip data (incorrect data check)");
    free(l);
    bytes_free(&lb);

    /* Garbage after the gzip member, short and long. */
    p = tmp_path("idx_garbage1.idx.gz");
    Bytes gb = {0};
    bytes_put(&gb, g, gn);
    bytes_u8(&gb, 0);
    write_file(p, gb.p, gb.n);
    expect_error(p, "trailing bytes after the gzip data");
    p = tmp_path("idx_garbage2.idx.gz");
    bytes_str(&gb, "this is not gzip at all, just text appended to the file");
    write_file(p, gb.p, gb.n);
    expect_error(p, "trailing bytes after the gzip data");
    bytes_free(&gb);

    /* Only the gzip magic. */
    p = tmp_path("idx_gz_magic.idx.gz");
    write_bytes(p, "\x1f\x8b", 2);
    expect_error(p, "truncated");

    /* The gzip magic then nonsense. */
    p = tmp_path("idx_gz_nonsense.idx.gz");
    write_bytes(p, "\x1f\x8b\x63\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03", 13);
    expect_error(p, "corrupt gzip data");

    free(g);
    bytes_free(&b);
}

static void test_values_and_options(void **state)
{
    /* f64 data beyond the range of f32. */
    Bytes b = {0};
    bytes_put(&b, "\0\0\x0E\x01", 4);
    bytes_be32(&b, 3);
    double vals[3] = {1.0, 1e300, -2.0};
    for (int i = 0; i < 3; i++) {
        uint64_t bits;
        memcpy(&bits, &vals[i], 8);
        bytes_be(&b, bits, 8);
    }
    const char *p = tmp_path("idx_f64_big.idx");
    write_file(p, b.p, b.n);
    bytes_free(&b);
    expect_error(p, "element 1 is 1e+300, out of range for f32");
    NndLoadOptions o64 = {1, NND_F64};
    NndTensor x;
    NndErr err;
    assert_int_equal(nnd_idx_load(p, NND_FEATURES, &o64, &x, &err), 0);
    assert_true(((double *)x.data)[1] == 1e300);
    nnd_tensor_free(&x);

    NndLoadOptions bad = {1, NND_I32};
    assert_load_error(nnd_idx_load(p, NND_FEATURES, &bad, &x, &err), &err, p, "float_dtype");
    assert_load_error(nnd_idx_probe(p, NND_FEATURES, &bad, &x, &err), &err, p, "float_dtype");
    assert_int_equal(nnd_idx_load(NULL, NND_FEATURES, NULL, &x, &err), -1);
    assert_null(x.data);
}

/* A mapped data file that another process truncates: reading a row past its new end
 * is a message naming the file and exit status 1 (nnd_guard_mapped_files), not a
 * crash; a SIGBUS sent by a process keeps its default action.  In child processes. */
static void test_truncated_mapped_file(void **state)
{
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* AddressSanitizer keeps SIGBUS for itself */
#endif
    const char *path = tmp_path("mapped_then_cut.idx");
    uint32_t dims[2] = {1000, 4096}; /* a page a row */
    write_u8_idx(path, 2, dims, (size_t)1000 * 4096, 0);
    NndTensor x;
    NndRows *rows;
    NndErr err;
    assert_int_equal(nnd_idx_map(path, NND_FEATURES, NULL, &x, &rows, &err), 0);
    assert_true(nnd_rows_mapped(rows));
    const char *log = tmp_path("mapped_then_cut.log");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen(log, "w", stderr) || nnd_guard_mapped_files() != 0 ||
            truncate(path, 16 + 4096 * 10) != 0)
            _exit(3);
        float *dst = malloc(4096 * sizeof(float));
        uint32_t early = 5, late = 999;
        nnd_rows_gather(rows, &early, 1, dst); /* still in the file */
        nnd_rows_gather(rows, &late, 1, dst);
        _exit(2);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    size_t n;
    unsigned char *text = read_whole_file(log, &n);
    text[n - 1] = 0;
    assert_non_null(strstr((char *)text, path));
    assert_non_null(strstr((char *)text, "the file became shorter while this run read it"));
    free(text);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        nnd_guard_mapped_files();
        raise(SIGBUS);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS);
    nnd_rows_free(rows);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_type),
        cmocka_unit_test(test_scale_zero_means_one),
        cmocka_unit_test(test_large_and_multi_member),
        cmocka_unit_test(test_inflate_all),
        cmocka_unit_test(test_corrupt_headers),
        cmocka_unit_test(test_lying_sizes),
        cmocka_unit_test(test_corrupt_gzip),
        cmocka_unit_test(test_rows_match_load),
        cmocka_unit_test(test_truncated_mapped_file),
        cmocka_unit_test(test_values_and_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
