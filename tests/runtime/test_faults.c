/* Fault injection: the Nth allocation fails, for every N until the load succeeds; each
 * failure must be a clean error (message, nothing allocated left behind). */
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

typedef enum LoaderKind { LOAD_IDX, PROBE_IDX, LOAD_NPY, PROBE_NPY, LOAD_CSV } LoaderKind;

static int run_loader(LoaderKind kind, const char *path, NndTensor *x, NndTensor *y, NndErr *err)
{
    NndLoadOptions o = {1.0 / 255, NND_F32};
    memset(y, 0, sizeof *y);
    switch (kind) {
    case LOAD_IDX: return nnd_idx_load(path, NND_FEATURES, &o, x, err);
    case PROBE_IDX: return nnd_idx_probe(path, NND_FEATURES, &o, x, err);
    case LOAD_NPY: return nnd_npy_load(path, NND_LABELS, &o, x, err);
    case PROBE_NPY: return nnd_npy_probe(path, NND_LABELS, &o, x, err);
    case LOAD_CSV: return nnd_csv_load(path, "y", 1, &o, x, y, err);
    }
    return -1;
}

/* Fails allocation 1, 2, 3, ... and returns how many allocations a full load makes. */
static long fail_each_allocation(LoaderKind kind, const char *path)
{
    for (long n = 1; n < 10000; n++) {
        TestAlloc ta;
        NndTensor x, y;
        NndErr err;
        test_alloc_install(&ta, n);
        int rc = run_loader(kind, path, &x, &y, &err);
        if (rc == 0) {
            assert_true(ta.calls < n); /* it succeeded because nothing failed */
            nnd_tensor_free(&x);
            nnd_tensor_free(&y);
            assert_int_equal(ta.live, 0);
            test_alloc_remove(&ta);
            print_message("%s: %ld allocations, each failed once\n", path, n - 1);
            return n - 1;
        }
        long live = ta.live;
        test_alloc_remove(&ta);
        assert_load_error(rc, &err, path, "out of memory");
        assert_null(x.data);
        assert_null(y.data);
        assert_int_equal(live, 0);
    }
    fail_msg("%s: never succeeded", path);
    return 0;
}

static void test_idx(void **state)
{
    Bytes b = {0};
    bytes_put(&b, "\0\0\x08\x02", 4);
    bytes_be32(&b, 300);
    bytes_be32(&b, 400);
    for (int i = 0; i < 120000; i++)
        bytes_u8(&b, (unsigned)(i % 256));
    const char *plain = tmp_path("faults.idx");
    write_file(plain, b.p, b.n);
    const char *gz = tmp_path("faults.idx.gz");
    write_gz(gz, b.p, b.n, 0);
    bytes_free(&b);
    long n_plain = fail_each_allocation(LOAD_IDX, plain);
    long n_gz = fail_each_allocation(LOAD_IDX, gz);
    /* The tensor and a conversion buffer; gzip adds its input buffer and zlib's. */
    assert_true(n_plain >= 2);
    assert_true(n_gz > n_plain);
    assert_int_equal(fail_each_allocation(PROBE_IDX, plain), 0);
    assert_true(fail_each_allocation(PROBE_IDX, gz) >= 2);
}

static void test_npy(void **state)
{
    Bytes b = {0};
    const char *h = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000,), }\n";
    bytes_put(&b, "\x93NUMPY\x03\x00", 8);
    bytes_le(&b, strlen(h), 4);
    bytes_str(&b, h);
    for (int i = 0; i < 1000; i++)
        bytes_u8(&b, (unsigned)(i % 10));
    const char *plain = tmp_path("faults.npy");
    write_file(plain, b.p, b.n);
    const char *gz = tmp_path("faults.npy.gz");
    write_gz(gz, b.p, b.n, 0);
    bytes_free(&b);
    assert_true(fail_each_allocation(LOAD_NPY, plain) >= 3);
    assert_true(fail_each_allocation(LOAD_NPY, gz) >= 5);
    assert_true(fail_each_allocation(PROBE_NPY, plain) >= 1);
}

static void test_csv(void **state)
{
    Bytes b = {0};
    bytes_str(&b, "a,y,b\n");
    for (int i = 0; i < 30000; i++) {
        char line[64];
        snprintf(line, sizeof line, "%d,%d,%d.25\n", i, i % 3, i);
        bytes_str(&b, line);
    }
    const char *plain = tmp_path("faults.csv");
    write_file(plain, b.p, b.n);
    const char *gz = tmp_path("faults.csv.gz");
    write_gz(gz, b.p, b.n, 0);
    bytes_free(&b);
    assert_true(fail_each_allocation(LOAD_CSV, plain) >= 4);
    /* Large enough that the text buffer grows several times. */
    assert_true(fail_each_allocation(LOAD_CSV, gz) >= 8);
}

/* Random damage: flipped bytes, cuts and insertions in valid files.  Any outcome is
 * fine except a crash, a leak, or a failure without a message naming the file. */
static void damage(LoaderKind kind, const char *name, const unsigned char *good, size_t n, int gz,
                   uint64_t stream)
{
    size_t gn = n;
    unsigned char *base = gz ? gzip_bytes(good, n, &gn) : NULL;
    const unsigned char *src = gz ? base : good;
    unsigned char *buf = malloc(gn + 16);
    assert_non_null(buf);
    const char *path = tmp_path(name);
    int rejected = 0;
    for (uint64_t trial = 0; trial < 400; trial++) {
        uint64_t r = nnd_random_u64(1, stream, trial);
        size_t len = gn;
        memcpy(buf, src, gn);
        switch (r % 4) {
        case 0: /* flip a few bytes, most often in the header */
            for (int k = 0; k < 1 + (int)(r >> 8) % 3; k++) {
                uint64_t q = nnd_random_u64(2, stream, trial * 4 + (uint64_t)k);
                size_t at = q % 2 ? (size_t)(q >> 8) % (gn < 80 ? gn : 80) : (size_t)(q >> 8) % gn;
                buf[at] ^= (unsigned char)(1 + (q >> 40) % 255);
            }
            break;
        case 1: /* cut */ len = (size_t)(r >> 8) % gn; break;
        case 2: /* append */
            for (int k = 0; k < 1 + (int)(r >> 8) % 16; k++)
                buf[len++] = (unsigned char)(r >> (16 + k));
            break;
        default: /* set one byte to 0x00 or 0xFF */
            buf[(size_t)(r >> 8) % gn] = (r >> 40) % 2 ? 0xFF : 0x00;
            break;
        }
        write_file(path, buf, len);
        TestAlloc ta;
        NndTensor x, y;
        NndErr err;
        test_alloc_install(&ta, 0);
        int rc = run_loader(kind, path, &x, &y, &err);
        if (rc == 0) {
            nnd_tensor_free(&x);
            nnd_tensor_free(&y);
        }
        long live = ta.live;
        test_alloc_remove(&ta);
        assert_int_equal(live, 0);
        if (rc != 0)
            assert_load_error(rc, &err, path, "");
        rejected += rc != 0;
    }
    print_message("%s: %d of 400 damaged files rejected\n", name, rejected);
    free(buf);
    free(base);
}

static void test_random_damage(void **state)
{
    Bytes b = {0};
    bytes_put(&b, "\0\0\x0B\x02", 4);
    bytes_be32(&b, 20);
    bytes_be32(&b, 30);
    for (int i = 0; i < 600; i++)
        bytes_be(&b, (uint64_t)(i * 97), 2);
    damage(LOAD_IDX, "damage.idx", b.p, b.n, 0, 1);
    damage(LOAD_IDX, "damage.idx.gz", b.p, b.n, 1, 2);
    bytes_free(&b);

    const char *h = "{'descr': '<i2', 'fortran_order': False, 'shape': (20, 30), }\n";
    bytes_put(&b, "\x93NUMPY\x01\x00", 8);
    bytes_le(&b, strlen(h), 2);
    bytes_str(&b, h);
    for (int i = 0; i < 600; i++)
        bytes_le(&b, (uint64_t)(i * 97), 2);
    damage(LOAD_NPY, "damage.npy", b.p, b.n, 0, 3);
    damage(LOAD_NPY, "damage.npy.gz", b.p, b.n, 1, 4);
    bytes_free(&b);

    bytes_str(&b, "a,y,b\r\n");
    for (int i = 0; i < 50; i++) {
        char line[64];
        snprintf(line, sizeof line, "%d.5,%d,%d\r\n", i, i % 4, -i);
        bytes_str(&b, line);
    }
    damage(LOAD_CSV, "damage.csv", b.p, b.n, 0, 5);
    damage(LOAD_CSV, "damage.csv.gz", b.p, b.n, 1, 6);
    bytes_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx),
        cmocka_unit_test(test_npy),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_random_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
