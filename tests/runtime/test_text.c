/* Text data: files concatenated as byte tokens (nnd_text_load), the split of
 * their bytes, and the windows a text data set's samples are (nnd_dataset_*). */
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

#define TMP NND_TEST_TMP "/text"

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static void test_concatenation_and_split(void **state)
{
    (void)state;
    write_text(TMP "_a.txt", "abcd");
    write_text(TMP "_b.txt", "efghij");
    const char *paths[] = {TMP "_a.txt", TMP "_b.txt"};
    int64_t bytes;
    NndErr err;
    assert_int_equal(nnd_text_size(paths, 2, &bytes, &err), 0);
    assert_int_equal(bytes, 10);
    NndTensor t;
    assert_int_equal(nnd_text_load(paths, 2, 0, 1, &t, &err), 0);
    assert_int_equal(t.dtype, NND_I32);
    assert_int_equal(t.shape[0], 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(((int32_t *)t.data)[i], 'a' + i);
    nnd_tensor_free(&t);
    /* the last 40%: across the files' boundary it starts in the second */
    assert_int_equal(nnd_text_load(paths, 2, 0.6, 1, &t, &err), 0);
    assert_int_equal(t.shape[0], 4);
    assert_int_equal(((int32_t *)t.data)[0], 'g');
    nnd_tensor_free(&t);
    assert_int_equal(nnd_text_load(paths, 2, 0.3, 0.6, &t, &err), 0);
    assert_int_equal(t.shape[0], 3);
    assert_int_equal(((int32_t *)t.data)[0], 'd');
    assert_int_equal(((int32_t *)t.data)[2], 'f');
    nnd_tensor_free(&t);
}

static void test_errors(void **state)
{
    (void)state;
    NndErr err;
    NndTensor t;
    const char *dir[] = {NND_TEST_TMP};
    assert_int_equal(nnd_text_load(dir, 1, 0, 1, &t, &err), -1);
    assert_non_null(strstr(err.msg, "is a directory"));
    assert_null(t.data);
    const char *missing[] = {TMP "_missing.txt"};
    assert_int_equal(nnd_text_load(missing, 1, 0, 1, &t, &err), -1);
    assert_non_null(strstr(err.msg, "missing.txt: cannot open"));
    write_text(TMP "_empty.txt", "");
    const char *empty[] = {TMP "_empty.txt"};
    assert_int_equal(nnd_text_load(empty, 1, 0, 1, &t, &err), -1);
    assert_non_null(strstr(err.msg, "empty.txt: empty"));
    write_text(TMP "_a.txt", "abcd");
    /* an empty file among others is an error too, naming it */
    const char *with_empty[] = {TMP "_a.txt", TMP "_empty.txt"};
    int64_t bytes;
    assert_int_equal(nnd_text_size(with_empty, 2, &bytes, &err), -1);
    assert_non_null(strstr(err.msg, "_empty.txt: empty"));
    assert_int_equal(nnd_text_load(with_empty, 2, 0, 1, &t, &err), -1);
    assert_non_null(strstr(err.msg, "_empty.txt: empty"));
    const char *a[] = {TMP "_a.txt"};
    assert_int_equal(nnd_text_load(a, 1, 0.5, 0.5, &t, &err), -1);
    assert_int_equal(nnd_text_load(a, 1, 0, 0.1, &t, &err), -1); /* no byte in the split */
    assert_non_null(strstr(err.msg, "of 4 bytes is empty"));
    write_text(TMP "_one.txt", "a");
    const char *one[] = {TMP "_one.txt"};
    assert_int_equal(nnd_text_load(one, 1, 0, 0.5, &t, &err), -1);
    assert_non_null(strstr(err.msg, "of 1 byte is empty"));
}

/* Sample i is window tokens from i * stride; y the same window one token later. */
static void test_windows(void **state)
{
    (void)state;
    int64_t len = 10;
    NndTensor t;
    NndErr err;
    assert_int_equal(nnd_tensor_alloc(&t, NND_I32, 1, &len, &err), 0);
    for (int i = 0; i < 10; i++)
        ((int32_t *)t.data)[i] = 100 + i;
    NndDataSet ds = {.name = "text", .x = &t, .y = &t, .window = 4, .stride = 1};
    assert_int_equal(nnd_dataset_count(&ds), 6); /* starts 0..5: the last y ends at 9 */
    size_t xb, yb;
    nnd_dataset_sample_bytes(&ds, &xb, &yb);
    assert_int_equal(xb, 16);
    assert_int_equal(yb, 16);
    uint32_t idx[2] = {5, 1};
    int32_t x[8], y[8];
    nnd_dataset_gather(&ds, idx, 2, x, y);
    int32_t wx[8] = {105, 106, 107, 108, 101, 102, 103, 104};
    int32_t wy[8] = {106, 107, 108, 109, 102, 103, 104, 105};
    assert_memory_equal(x, wx, sizeof wx);
    assert_memory_equal(y, wy, sizeof wy);
    ds.stride = 4; /* chunks: starts 0 and 4 (8 would need a target at 12) */
    assert_int_equal(nnd_dataset_count(&ds), 2);
    uint32_t one = 1;
    nnd_dataset_gather(&ds, &one, 1, x, y);
    assert_int_equal(x[0], 104);
    assert_int_equal(y[3], 108);
    ds.window = 10; /* no room for a target */
    assert_int_equal(nnd_dataset_count(&ds), 0);
    nnd_tensor_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concatenation_and_split),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
