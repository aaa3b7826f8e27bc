/* The NPY loader: versions 1.0/2.0/3.0, each dtype, header variants, and broken files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include "helpers.h"

/* Writes an NPY file: magic, version major.0, the header text padded with spaces and a
 * newline to a multiple of 64 bytes (as numpy does), then n data bytes. */
static void npy_write(const char *path, int major, const char *header, const void *data, size_t n)
{
    Bytes b = {0};
    bytes_put(&b, "\x93NUMPY", 6);
    bytes_u8(&b, (unsigned)major);
    bytes_u8(&b, 0);
    size_t pre = 6 + 2 + (major == 1 ? 2 : 4);
    size_t hlen = strlen(header) + 1;
    while ((pre + hlen) % 64 != 0)
        hlen++;
    bytes_le(&b, hlen, major == 1 ? 2 : 4);
    bytes_str(&b, header);
    for (size_t i = strlen(header) + 1; i < hlen; i++)
        bytes_u8(&b, ' ');
    bytes_u8(&b, '\n');
    bytes_put(&b, data, n);
    write_file(path, b.p, b.n);
    bytes_free(&b);
}

typedef struct NpyType {
    const char *descr;
    int size;
    int is_float;
} NpyType;

static const NpyType npy_types[] = {
    {"<f4", 4, 1}, {"<f8", 8, 1}, {"|u1", 1, 0}, {"<i4", 4, 0},
    {"<i8", 8, 0}, {"|i1", 1, 0}, {"<i2", 2, 0}, {"|b1", 1, 0},
};

static double npy_value(const NpyType *t, int i)
{
    if (t->is_float)
        return (i - 6) * 0.375;
    if (strcmp(t->descr, "|u1") == 0)
        return i * 21;
    if (strcmp(t->descr, "|b1") == 0)
        return i % 2;
    if (strcmp(t->descr, "|i1") == 0)
        return i * 21 - 128;
    if (strcmp(t->descr, "<i2") == 0)
        return i * 3001 - 20000;
    if (strcmp(t->descr, "<i8") == 0)
        return i == 0 ? INT32_MIN : i == 1 ? INT32_MAX : (i - 6) * 1000003;
    return i == 0 ? INT32_MIN : i == 1 ? INT32_MAX : (i - 6) * 77777;
}

static void npy_data(Bytes *b, const NpyType *t, int n)
{
    for (int i = 0; i < n; i++) {
        double v = npy_value(t, i);
        if (t->size == 4 && t->is_float) {
            float f = (float)v;
            uint32_t bits;
            memcpy(&bits, &f, 4);
            bytes_le(b, bits, 4);
        } else if (t->is_float) {
            uint64_t bits;
            memcpy(&bits, &v, 8);
            bytes_le(b, bits, 8);
        } else {
            bytes_le(b, (uint64_t)(int64_t)v, t->size);
        }
    }
}

static void test_versions_and_dtypes(void **state)
{
    for (int major = 1; major <= 3; major++) {
        for (size_t k = 0; k < sizeof npy_types / sizeof npy_types[0]; k++) {
            const NpyType *t = &npy_types[k];
            char header[128], name[64];
            snprintf(header, sizeof header,
                     "{'descr': '%s', 'fortran_order': False, 'shape': (3, 4), }", t->descr);
            snprintf(name, sizeof name, "npy_v%d_%s.npy", major, t->descr + 1);
            const char *p = tmp_path(name);
            Bytes d = {0};
            npy_data(&d, t, 12);
            npy_write(p, major, header, d.p, d.n);
            bytes_free(&d);
            for (int role = NND_FEATURES; role <= NND_LABELS; role++) {
                for (int fd = NND_F32; fd <= NND_F64; fd++) {
                    NndLoadOptions o = {2.0, (NndDType)fd};
                    NndTensor x;
                    NndErr err;
                    int rc = nnd_npy_load(p, (NndRole)role, &o, &x, &err);
                    if (rc != 0)
                        fail_msg("%s", err.msg);
                    assert_int_equal(x.rank, 2);
                    assert_int_equal(x.shape[0], 3);
                    assert_int_equal(x.shape[1], 4);
                    for (int i = 0; i < 12; i++) {
                        double v = npy_value(t, i);
                        if (role == NND_LABELS && !t->is_float) {
                            assert_int_equal(x.dtype, NND_I32);
                            assert_int_equal(((int32_t *)x.data)[i], (int32_t)v);
                        } else {
                            double s = role == NND_FEATURES ? 2.0 : 1.0;
                            assert_int_equal(x.dtype, fd);
                            if (fd == NND_F32)
                                assert_true(((float *)x.data)[i] == (float)(v * s));
                            else
                                assert_true(((double *)x.data)[i] == v * s);
                        }
                    }
                    nnd_tensor_free(&x);
                    assert_int_equal(nnd_npy_probe(p, (NndRole)role, &o, &x, &err), 0);
                    assert_null(x.data);
                    assert_int_equal(x.rank, 2);
                    assert_int_equal(x.shape[1], 4);
                }
            }
        }
    }
}

/* Headers numpy (or Python 2 numpy) may write, and a little more. */
static void test_header_variants(void **state)
{
    static const char *headers[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)}",
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (6,)}",
        "{'shape': (6,), 'fortran_order': False, 'descr': '<f4'}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6L,), }",
        "{'descr':'<f4','fortran_order':False,'shape':(2,3)}",
        "  {  'descr' : '<f4' ,\t'fortran_order' : False , 'shape' : ( 1 , 6 , ) , }  ",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 6), }",
    };
    float data[6] = {1, 2, 3, 4, 5, 6};
    Bytes d = {0};
    for (int i = 0; i < 6; i++) {
        uint32_t bits;
        memcpy(&bits, &data[i], 4);
        bytes_le(&d, bits, 4);
    }
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "npy_variant%zu.npy", i);
        const char *p = tmp_path(name);
        npy_write(p, 1, headers[i], d.p, d.n);
        NndTensor x;
        NndErr err;
        if (nnd_npy_load(p, NND_FEATURES, NULL, &x, &err) != 0)
            fail_msg("%s", err.msg);
        assert_int_equal(nnd_tensor_numel(&x), 6);
        assert_memory_equal(x.data, data, sizeof data);
        nnd_tensor_free(&x);
    }
    /* NPY through gzip works too, as the stream layer is shared. */
    const char *p = tmp_path("npy_variant.npy.gz");
    Bytes f = {0};
    bytes_put(&f, "\x93NUMPY\x01\x00", 8);
    const char *h = "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }\n";
    bytes_le(&f, strlen(h), 2);
    bytes_str(&f, h);
    bytes_put(&f, d.p, d.n);
    write_gz(p, f.p, f.n, 0);
    NndTensor x;
    NndErr err;
    assert_int_equal(nnd_npy_load(p, NND_FEATURES, NULL, &x, &err), 0);
    assert_memory_equal(x.data, data, sizeof data);
    nnd_tensor_free(&x);
    bytes_free(&f);
    bytes_free(&d);
}

static void expect_error(const char *path, const char *needle)
{
    NndTensor x;
    NndErr err;
    TestAlloc ta;
    test_alloc_install(&ta, 0);
    int rc = nnd_npy_load(path, NND_FEATURES, NULL, &x, &err);
    long live = ta.live;
    size_t max_size = ta.max_size;
    test_alloc_remove(&ta);
    assert_load_error(rc, &err, path, needle);
    assert_null(x.data);
    assert_int_equal(live, 0);
    assert_true(max_size <= (1 << 20) + 1);
}

/* Writes header with n bytes of data (filled with 0x3f) and expects needle. */
static void bad_header(const char *name, int major, const char *header, size_t n,
                       const char *needle)
{
    const char *p = tmp_path(name);
    unsigned char *data = malloc(n ? n : 1);
    memset(data, 0x3f, n);
    npy_write(p, major, header, data, n);
    free(data);
    expect_error(p, needle);
}

static void test_bad_headers(void **state)
{
    bad_header("npy_fortran.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 8,
               "fortran_order is True");
    bad_header("npy_big_endian.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
               8, "big-endian");
    bad_header("npy_complex.npy", 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }",
               16, "unsupported dtype '<c8'");
    bad_header("npy_unicode.npy", 1, "{'descr': '<U4', 'fortran_order': False, 'shape': (2,), }",
               32, "unsupported dtype");
    bad_header("npy_pipe_f4.npy", 1, "{'descr': '|f4', 'fortran_order': False, 'shape': (2,), }", 8,
               "unsupported dtype");
    bad_header("npy_structured.npy", 1,
               "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8,
               "structured");
    bad_header("npy_scalar.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4,
               "rank 0");
    bad_header("npy_rank9.npy", 1,
               "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4,
               "rank 9");
    bad_header("npy_zero_dim.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }",
               0, "no samples (its shape is 0x3)");
    bad_header("npy_overflow.npy", 1,
               "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 8,
               "overflows");
    bad_header("npy_huge_int.npy", 1,
               "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,), }", 8,
               "does not fit in 64 bits");
    bad_header("npy_negative.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
               4, "non-negative");
    bad_header("npy_missing_key.npy", 1, "{'descr': '<f4', 'fortran_order': False}", 4,
               "missing key 'shape'");
    bad_header("npy_unknown_key.npy", 1,
               "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4,
               "unknown key 'x'");
    bad_header("npy_duplicate.npy", 1,
               "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4,
               "duplicate key 'descr'");
    bad_header("npy_bad_bool.npy", 1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", 4,
               "True or False");
    bad_header("npy_unterminated.npy", 1, "{'descr': '<f4, 'fortran_order': False}", 4,
               "bad NPY header");
    bad_header("npy_no_brace.npy", 1, "'descr': '<f4', 'fortran_order': False, 'shape': (1,)", 4,
               "expected '{'");
    bad_header("npy_no_close.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", 4,
               "expected ',' or '}'");
    bad_header("npy_after.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x", 4,
               "unexpected text after the dict");
    bad_header("npy_shape_int.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': 5}", 20,
               "expected a tuple");
    bad_header("npy_bad_tuple.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1 2)}",
               8, "expected ',' or ')'");
    bad_header("npy_empty_dict.npy", 1, "{}", 0, "missing key 'descr'");
    bad_header("npy_not_dict.npy", 1, "", 0, "bad NPY header");
    /* Data size against the shape. */
    bad_header("npy_short.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
               47, "truncated: header declares 3x4 f32 (48 bytes) but the file holds 47 bytes");
    bad_header("npy_long.npy", 3, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 49,
               "trailing bytes");
    bad_header("npy_lying.npy", 2,
               "{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }", 16,
               "truncated: header declares 100000x100000 f64 (80000000000 bytes)");
    bad_header("npy_no_data.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", 0,
               "truncated");
}

static void test_bad_preamble(void **state)
{
    const char *p;
    p = tmp_path("npy_empty.npy");
    write_file(p, "", 0);
    expect_error(p, "bad magic");
    p = tmp_path("npy_magic.npy");
    write_file(p, "\x93NUMPX\x01\x00\x10\x00", 10);
    expect_error(p, "bad magic");
    p = tmp_path("npy_version.npy");
    write_file(p, "\x93NUMPY\x04\x00\x10\x00", 10);
    expect_error(p, "unsupported NPY version 4.0");
    p = tmp_path("npy_minor.npy");
    write_file(p, "\x93NUMPY\x01\x01\x10\x00", 10);
    expect_error(p, "unsupported NPY version 1.1");
    p = tmp_path("npy_no_hlen.npy");
    write_file(p, "\x93NUMPY\x02\x00\x10\x00", 10);
    expect_error(p, "truncated");
    p = tmp_path("npy_no_version.npy");
    write_file(p, "\x93NUMPY\x01", 7);
    expect_error(p, "truncated");
    p = tmp_path("npy_hlen_past_end.npy");
    write_file(p, "\x93NUMPY\x01\x00\xff\xff{}", 12);
    expect_error(p, "header length 65535 goes past the end of the file");
    p = tmp_path("npy_nul.npy");
    write_file(p, "\x93NUMPY\x01\x00\x10\x00{'descr': '<\0f4'}", 26);
    expect_error(p, "unsupported character in a string at offset 12");
    p = tmp_path("npy_hlen_huge.npy");
    write_file(p, "\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14);
    expect_error(p, "header length 4294967295");
}

/* An i8 label that does not fit in i32. */
static void test_label_range(void **state)
{
    Bytes d = {0};
    bytes_le(&d, 1, 8);
    bytes_le(&d, (uint64_t)1 << 40, 8);
    const char *p = tmp_path("npy_label_range.npy");
    npy_write(p, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", d.p, d.n);
    bytes_free(&d);
    NndTensor x;
    NndErr err;
    assert_load_error(nnd_npy_load(p, NND_LABELS, NULL, &x, &err), &err, p,
                      "label 1 is 1099511627776, which does not fit in i32");
    assert_null(x.data);
    /* As features the value is fine. */
    assert_int_equal(nnd_npy_load(p, NND_FEATURES, NULL, &x, &err), 0);
    assert_true(((float *)x.data)[1] == 1099511627776.0f);
    nnd_tensor_free(&x);
}

/* nnd_npy_write, read back by the loader: every dtype, ranks 0 to 3, the header's
 * 64-byte alignment. */
static void test_write_roundtrip(void **state)
{
    (void)state;
    static const int64_t shapes[4][3] = {{0}, {5}, {3, 4}, {2, 1, 3}};
    for (int dt = 0; dt < NND_DTYPE_COUNT; dt++)
        for (int rank = 0; rank < 4; rank++) {
            NndTensor t, back;
            NndErr err;
            assert_int_equal(nnd_tensor_alloc(&t, (NndDType)dt, rank, shapes[rank], &err), 0);
            int64_t n = nnd_tensor_numel(&t);
            for (int64_t i = 0; i < n; i++) {
                if (dt == NND_F32)
                    ((float *)t.data)[i] = (float)i * 0.25f - 1;
                else if (dt == NND_F64)
                    ((double *)t.data)[i] = (double)i / 3 - 2;
                else if (dt == NND_I32)
                    ((int32_t *)t.data)[i] = (int32_t)(i * 1000 - 7);
                else
                    ((uint8_t *)t.data)[i] = (uint8_t)(i % 2);
            }
            const char *p = tmp_path("npy_write.npy");
            assert_int_equal(nnd_npy_write(p, &t, &err), 0);
            FILE *f = fopen(p, "rb");
            unsigned char pre[10];
            assert_int_equal(fread(pre, 1, 10, f), 10);
            fclose(f);
            assert_int_equal((10 + pre[8] + 256 * pre[9]) % 64, 0);
            if (rank == 0) { /* a scalar has no samples to load */
                nnd_tensor_free(&t);
                continue;
            }
            NndLoadOptions lo = {1, dt == NND_F64 ? NND_F64 : NND_F32};
            NndRole role = dt == NND_I32 || dt == NND_BOOL ? NND_LABELS : NND_FEATURES;
            if (rank == 1 && (dt == NND_F32 || dt == NND_F64))
                role = NND_LABELS; /* one value per sample: regression targets */
            assert_int_equal(nnd_npy_load(p, role, &lo, &back, &err), 0);
            assert_int_equal(back.rank, rank);
            for (int d = 0; d < rank; d++)
                assert_int_equal(back.shape[d], shapes[rank][d]);
            for (int64_t i = 0; i < n; i++) {
                double want = dt == NND_F32   ? ((float *)t.data)[i]
                              : dt == NND_F64 ? ((double *)t.data)[i]
                              : dt == NND_I32 ? ((int32_t *)t.data)[i]
                                              : ((uint8_t *)t.data)[i];
                double got = back.dtype == NND_F32   ? ((float *)back.data)[i]
                             : back.dtype == NND_F64 ? ((double *)back.data)[i]
                                                     : ((int32_t *)back.data)[i];
                assert_true(got == want);
            }
            nnd_tensor_free(&back);
            nnd_tensor_free(&t);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions_and_dtypes), cmocka_unit_test(test_header_variants),
        cmocka_unit_test(test_bad_headers),         cmocka_unit_test(test_bad_preamble),
        cmocka_unit_test(test_label_range),         cmocka_unit_test(test_write_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
