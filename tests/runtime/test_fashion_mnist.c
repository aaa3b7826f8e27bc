/* The real Fashion-MNIST files, where the machine has them; skipped otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include "helpers.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

static int have(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    fclose(fp);
    return 1;
}

static void check_split(const char *images, const char *labels, int64_t n)
{
    if (!have(images) || !have(labels)) {
        print_message("skipping: %s not found\n", images);
        skip();
    }
    NndLoadOptions o = {1.0 / 255, NND_F32};
    NndTensor x, y;
    NndErr err;
    assert_int_equal(nnd_idx_probe(images, NND_FEATURES, &o, &x, &err), 0);
    assert_int_equal(x.rank, 3);
    assert_int_equal(x.shape[0], n);
    assert_null(x.data);
    if (nnd_idx_load(images, NND_FEATURES, &o, &x, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(x.dtype, NND_F32);
    assert_int_equal(x.rank, 3);
    assert_int_equal(x.shape[0], n);
    assert_int_equal(x.shape[1], 28);
    assert_int_equal(x.shape[2], 28);
    const float *px = x.data;
    double sum = 0;
    for (int64_t i = 0; i < n * 28 * 28; i++) {
        assert_true(px[i] >= 0.0f && px[i] <= 1.0f);
        sum += px[i];
    }
    /* Fashion-MNIST's mean pixel is about 0.286. */
    double mean = sum / (double)(n * 28 * 28);
    assert_true(mean > 0.27 && mean < 0.30);
    nnd_tensor_free(&x);

    if (nnd_idx_load(labels, NND_LABELS, &o, &y, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(y.dtype, NND_I32);
    assert_int_equal(y.rank, 1);
    assert_int_equal(y.shape[0], n);
    int64_t counts[10] = {0};
    for (int64_t i = 0; i < n; i++) {
        int32_t v = ((int32_t *)y.data)[i];
        assert_true(v >= 0 && v <= 9);
        counts[v]++;
    }
    /* Both splits are balanced: n / 10 of each class. */
    for (int c = 0; c < 10; c++)
        assert_int_equal(counts[c], n / 10);
    nnd_tensor_free(&y);
}

static void test_train(void **state)
{
    check_split(FASHION_DIR "/train-images-idx3-ubyte.gz",
                FASHION_DIR "/train-labels-idx1-ubyte.gz", 60000);
}

static void test_t10k(void **state)
{
    check_split(FASHION_DIR "/t10k-images-idx3-ubyte.gz", FASHION_DIR "/t10k-labels-idx1-ubyte.gz",
                10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train),
        cmocka_unit_test(test_t10k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
