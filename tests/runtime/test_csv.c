/* The CSV loader: label selection, classes vs regression, line endings, and errors
 * that name the line. */
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

static const char *csv_file(const char *name, const char *text)
{
    const char *p = tmp_path(name);
    write_file(p, text, strlen(text));
    return p;
}

static float xf(const NndTensor *x, int r, int c)
{
    return ((float *)x->data)[r * x->shape[1] + c];
}

static void test_classes_last_column(void **state)
{
    const char *p = csv_file("csv_basic.csv", "a,b,label\n1,2,0\n3.5,-4,2\n1e2,0.25,1\n");
    NndTensor x, y;
    NndErr err;
    NndLoadOptions o = {0.5, NND_F32};
    assert_int_equal(nnd_csv_load(p, NULL, 1, &o, &x, &y, &err), 0);
    assert_int_equal(x.dtype, NND_F32);
    assert_int_equal(x.rank, 2);
    assert_int_equal(x.shape[0], 3);
    assert_int_equal(x.shape[1], 2);
    assert_int_equal(y.dtype, NND_I32);
    assert_int_equal(y.rank, 1);
    assert_int_equal(y.shape[0], 3);
    float ex[3][2] = {{0.5f, 1}, {1.75f, -2}, {50, 0.125f}};
    int32_t ey[3] = {0, 2, 1};
    for (int r = 0; r < 3; r++) {
        for (int c = 0; c < 2; c++)
            assert_true(xf(&x, r, c) == ex[r][c]);
        assert_int_equal(((int32_t *)y.data)[r], ey[r]);
    }
    nnd_tensor_free(&x);
    nnd_tensor_free(&y);
}

static void test_named_label_regression(void **state)
{
    /* CRLF, blank lines, spaces, a BOM, quoted header names, no final newline. */
    const char *p = csv_file("csv_named.csv", "\xEF\xBB\xBF\"x1\", target ,x2\r\n"
                                              "\r\n"
                                              " 1 , 10.5, 2\r\n"
                                              "   \r\n"
                                              "3,-0.5,4\r\n"
                                              "\n"
                                              "5,7,6");
    NndTensor x, y;
    NndErr err;
    NndLoadOptions o = {0, NND_F64};
    if (nnd_csv_load(p, "target", 0, &o, &x, &y, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(x.dtype, NND_F64);
    assert_int_equal(x.shape[0], 3);
    assert_int_equal(x.shape[1], 2);
    assert_int_equal(y.dtype, NND_F64);
    assert_int_equal(y.rank, 2);
    assert_int_equal(y.shape[0], 3);
    assert_int_equal(y.shape[1], 1);
    double ex[6] = {1, 2, 3, 4, 5, 6}, ey[3] = {10.5, -0.5, 7};
    assert_memory_equal(x.data, ex, sizeof ex);
    assert_memory_equal(y.data, ey, sizeof ey);
    nnd_tensor_free(&x);
    nnd_tensor_free(&y);
    /* The first column as the label, whole-number floats as classes. */
    assert_int_equal(nnd_csv_load(p, "x1", 1, NULL, &x, &y, &err), 0);
    assert_int_equal(((int32_t *)y.data)[2], 5);
    assert_true(xf(&x, 2, 0) == 7.0f && xf(&x, 2, 1) == 6.0f);
    nnd_tensor_free(&x);
    nnd_tensor_free(&y);
}

static void test_gzip_csv(void **state)
{
    const char *text = "f,y\n0.5,1\n1.5,0\n";
    const char *p = tmp_path("csv_gz.csv.gz");
    write_gz(p, text, strlen(text), 0);
    NndTensor x, y;
    NndErr err;
    assert_int_equal(nnd_csv_load(p, "y", 1, NULL, &x, &y, &err), 0);
    assert_int_equal(x.shape[0], 2);
    assert_true(xf(&x, 1, 0) == 1.5f);
    assert_int_equal(((int32_t *)y.data)[0], 1);
    nnd_tensor_free(&x);
    nnd_tensor_free(&y);
}

/* Many rows: more than one read of the gzip stream and growth of the text buffer. */
static void test_many_rows(void **state)
{
    Bytes b = {0};
    bytes_str(&b, "a,b,c,label\n");
    for (int i = 0; i < 20000; i++) {
        char line[128];
        snprintf(line, sizeof line, "%d,%d.5,%d,%d\n", i, -i, i * 3, i % 10);
        bytes_str(&b, line);
    }
    const char *plain = tmp_path("csv_many.csv");
    write_file(plain, b.p, b.n);
    const char *gz = tmp_path("csv_many.csv.gz");
    write_gz(gz, b.p, b.n, 0);
    const char *paths[2] = {plain, gz};
    for (int k = 0; k < 2; k++) {
        NndTensor x, y;
        NndErr err;
        assert_int_equal(nnd_csv_load(paths[k], NULL, 1, NULL, &x, &y, &err), 0);
        assert_int_equal(x.shape[0], 20000);
        assert_int_equal(x.shape[1], 3);
        for (int i = 0; i < 20000; i += 997) {
            assert_true(xf(&x, i, 0) == (float)i);
            assert_true(xf(&x, i, 1) == (float)(-i + (i ? -0.5 : 0.5)));
            assert_int_equal(((int32_t *)y.data)[i], i % 10);
        }
        nnd_tensor_free(&x);
        nnd_tensor_free(&y);
    }
    bytes_free(&b);
}

static void expect_error(const char *name, const char *text, const char *label, int classes,
                         const char *needle)
{
    const char *p = csv_file(name, text);
    NndTensor x, y;
    NndErr err;
    TestAlloc ta;
    test_alloc_install(&ta, 0);
    int rc = nnd_csv_load(p, label, classes, NULL, &x, &y, &err);
    long live = ta.live;
    test_alloc_remove(&ta);
    assert_load_error(rc, &err, p, needle);
    assert_null(x.data);
    assert_null(y.data);
    assert_int_equal(live, 0);
}

static void test_errors(void **state)
{
    expect_error("csv_empty.csv", "", NULL, 1, "empty file");
    expect_error("csv_blank.csv", "\n  \r\n\n", NULL, 1, "empty file");
    expect_error("csv_header_only.csv", "a,b\n\n", NULL, 1, "no data rows");
    expect_error("csv_one_column.csv", "a\n1\n", NULL, 1,
                 ":1: the header names 1 column; a feature and a label column are needed");
    expect_error("csv_ragged_short.csv", "a,b,c\n1,2,3\n\n4,5\n", NULL, 1,
                 ":4: expected 3 fields, as in the header on line 1, but found 2");
    expect_error("csv_ragged_long.csv", "a,b,c\r\n1,2,3\r\n4,5,6,7\r\n", NULL, 1,
                 ":3: expected 3 fields");
    expect_error("csv_not_number.csv", "a,b,c\n1,2,3\n1,abc,3\n", NULL, 1,
                 ":3: column 2 ('b'): 'abc' is not a number");
    expect_error("csv_partial_number.csv", "a,b,c\n1,2x,3\n", NULL, 1, "'2x' is not a number");
    expect_error("csv_two_numbers.csv", "a,b,c\n1,2 3,3\n", NULL, 1, "'2 3' is not a number");
    expect_error("csv_quoted_comma.csv", "a,b,c\n1,\"2,5\",3\n", NULL, 1,
                 ":2: expected 3 fields, as in the header on line 1, but found 4 (quoted fields "
                 "are not supported)");
    expect_error("csv_empty_field.csv", "a,b,c\n1,,3\n", NULL, 1, ":2: column 2 ('b') is empty");
    expect_error("csv_quoted.csv", "a,b,c\n1,\"2\",3\n", NULL, 1,
                 "quoted fields are not supported");
    /* decimal only: strtod's hexadecimal forms are not numbers here */
    expect_error("csv_hex.csv", "a,b,c\n1,0x10,3\n", NULL, 1,
                 ":2: column 2 ('b'): '0x10' is not a number");
    expect_error("csv_hex_float.csv", "a,b,c\n1,2,-0X1p3\n", NULL, 0,
                 ":2: column 3 ('c'): '-0X1p3' is not a number");
    expect_error("csv_nan.csv", "a,b,c\n1,nan,3\n", NULL, 1, "'nan' is not a finite number");
    expect_error("csv_inf.csv", "a,b,c\n1,-inf,3\n", NULL, 1, "is not a finite number");
    expect_error("csv_range.csv", "a,b,c\n1,1e999,3\n", NULL, 1, "'1e999' is out of range");
    expect_error("csv_f32_range.csv", "a,b,c\n1,1e300,3\n", NULL, 1,
                 "'1e300' is out of range for f32");
    expect_error("csv_missing_label.csv", "a,b,c\n1,2,3\n", "y", 1,
                 ":1: no label column named 'y' (the columns are: a, b, c)");
    expect_error("csv_dup_label.csv", "y,b,y\n1,2,3\n", "y", 1, "2 columns are named 'y'");
    expect_error("csv_fraction_class.csv", "a,b\n1,1.5\n", NULL, 1,
                 ":2: column 2 ('b'): '1.5' is not a class index");
    expect_error("csv_negative_class.csv", "a,b\n1,2\n1,-1\n", NULL, 1,
                 ":3: column 2 ('b'): '-1' is not a class index");
    expect_error("csv_huge_class.csv", "a,b\n1,3e9\n", NULL, 1, "is not a class index");
    expect_error("csv_binary.csv", "a,b\n1,\x01\x02\n", NULL, 1,
                 "'?"
                 "?' is not a number");
    expect_error("csv_long_field.csv",
                 "a,b\n1,"
                 "1111111111111111111111111111111111111111111111111111111111111111111111111111"
                 "1111111111111111111111111111111111111111111111111111111111111111111111111111"
                 "x\n",
                 NULL, 1, "...' is not a number");
    /* Regression labels are floats: 1.5 is fine there, but still must be a number. */
    expect_error("csv_regression_text.csv", "a,b\n1,1.5\n2,yes\n", NULL, 0,
                 ":3: column 2 ('b'): 'yes' is not a number");

    NndTensor x, y;
    NndErr err;
    const char *p = tmp_path("csv_missing_file.csv");
    remove(p);
    assert_load_error(nnd_csv_load(p, NULL, 1, NULL, &x, &y, &err), &err, p, "cannot open");
    p = csv_file("csv_opts.csv", "a,b\n1,2\n");
    NndLoadOptions bad = {1, NND_BOOL};
    assert_load_error(nnd_csv_load(p, NULL, 1, &bad, &x, &y, &err), &err, p, "float_dtype");
    assert_null(x.data);
    assert_null(y.data);
}

/* Errors in a gzip CSV: a cut stream. */
static void test_gzip_errors(void **state)
{
    const char *text = "f,y\n0.5,1\n1.5,0\n2.5,1\n";
    size_t gn;
    unsigned char *g = gzip_bytes(text, strlen(text), &gn);
    const char *p = tmp_path("csv_cut.csv.gz");
    write_file(p, g, gn - 3);
    NndTensor x, y;
    NndErr err;
    assert_load_error(nnd_csv_load(p, NULL, 1, NULL, &x, &y, &err), &err, p, "truncated");
    free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes_last_column),
        cmocka_unit_test(test_named_label_regression),
        cmocka_unit_test(test_gzip_csv),
        cmocka_unit_test(test_many_rows),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_gzip_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
