/* Tensors, dtypes, the allocator hook and error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include "helpers.h"

static void test_dtypes(void **state)
{
    assert_int_equal(nnd_dtype_size(NND_F32), 4);
    assert_int_equal(nnd_dtype_size(NND_F64), 8);
    assert_int_equal(nnd_dtype_size(NND_I32), 4);
    assert_int_equal(nnd_dtype_size(NND_BOOL), 1);
    assert_int_equal(nnd_dtype_size(NND_DTYPE_COUNT), 0);
    assert_string_equal(nnd_dtype_name(NND_F32), "f32");
    assert_string_equal(nnd_dtype_name(NND_F64), "f64");
    assert_string_equal(nnd_dtype_name(NND_I32), "i32");
    assert_string_equal(nnd_dtype_name(NND_BOOL), "bool");
    assert_string_equal(nnd_dtype_name(NND_DTYPE_COUNT), "?");
}

static void test_alloc_zeroed_aligned(void **state)
{
    NndTensor t;
    NndErr err;
    int64_t shape[3] = {3, 5, 7};
    assert_int_equal(nnd_tensor_alloc(&t, NND_F64, 3, shape, &err), 0);
    assert_int_equal(t.dtype, NND_F64);
    assert_int_equal(t.rank, 3);
    assert_int_equal(nnd_tensor_numel(&t), 105);
    assert_int_equal((uintptr_t)t.data % 64, 0);
    for (int i = 0; i < 105; i++)
        assert_true(((double *)t.data)[i] == 0.0);
    nnd_tensor_free(&t);
    assert_null(t.data);
    nnd_tensor_free(&t); /* twice is harmless */
    nnd_tensor_free(NULL);
}

/* A buffer of a page or more starts on a page (4K aliasing: see runtime/alloc.c),
 * several in a row too, as a model's weight and its optimizer states are. */
static void test_alloc_page_aligned(void **state)
{
    void *p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = nnd_alloc(784 * 128 * 4);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % 4096, 0);
    }
    void *page = nnd_alloc(4096), *small = nnd_alloc(4000);
    assert_int_equal((uintptr_t)page % 4096, 0);
    assert_int_equal((uintptr_t)small % 64, 0);
    for (int i = 0; i < 4; i++)
        nnd_free(p[i]);
    nnd_free(page);
    nnd_free(small);
}

static void test_alloc_scalar_and_empty(void **state)
{
    NndTensor t;
    NndErr err;
    assert_int_equal(nnd_tensor_alloc(&t, NND_I32, 0, NULL, &err), 0);
    assert_int_equal(nnd_tensor_numel(&t), 1);
    assert_non_null(t.data);
    nnd_tensor_free(&t);
    int64_t shape[2] = {0, 4};
    assert_int_equal(nnd_tensor_alloc(&t, NND_BOOL, 2, shape, &err), 0);
    assert_int_equal(nnd_tensor_numel(&t), 0);
    assert_non_null(t.data);
    nnd_tensor_free(&t);
    /* A zero after a huge dimension still makes an empty tensor. */
    int64_t shape2[3] = {INT64_MAX, INT64_MAX, 0};
    assert_int_equal(nnd_tensor_alloc(&t, NND_F32, 3, shape2, &err), 0);
    nnd_tensor_free(&t);
}

static void test_alloc_rejects(void **state)
{
    NndTensor t;
    NndErr err;
    int64_t big[2] = {INT64_MAX / 2, 4};
    assert_int_equal(nnd_tensor_alloc(&t, NND_F32, 2, big, &err), -1);
    assert_non_null(strstr(err.msg, "too large"));
    assert_null(t.data);
    int64_t neg[2] = {3, -1};
    assert_int_equal(nnd_tensor_alloc(&t, NND_F32, 2, neg, &err), -1);
    assert_non_null(strstr(err.msg, "negative"));
    int64_t shape[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    assert_int_equal(nnd_tensor_alloc(&t, NND_F32, 9, shape, &err), -1);
    assert_non_null(strstr(err.msg, "rank 9"));
    assert_int_equal(nnd_tensor_alloc(&t, NND_F32, -1, shape, &err), -1);
    assert_int_equal(nnd_tensor_alloc(&t, NND_DTYPE_COUNT, 1, shape, &err), -1);
    assert_non_null(strstr(err.msg, "dtype"));
    assert_int_equal(nnd_tensor_alloc(&t, NND_F32, 2, big, NULL), -1); /* err may be NULL */
}

static void test_allocator_hook(void **state)
{
    TestAlloc ta;
    NndTensor t1, t2;
    NndErr err;
    int64_t shape[1] = {10};
    test_alloc_install(&ta, 2);
    assert_int_equal(nnd_tensor_alloc(&t1, NND_F32, 1, shape, &err), 0);
    assert_int_equal(ta.calls, 1);
    assert_int_equal(ta.live, 1);
    assert_int_equal(ta.max_size, 40);
    assert_int_equal(nnd_tensor_alloc(&t2, NND_F32, 1, shape, &err), -1);
    assert_non_null(strstr(err.msg, "out of memory"));
    assert_null(t2.data);
    nnd_tensor_free(&t1);
    assert_int_equal(ta.live, 0);
    void *p = nnd_alloc(0);
    assert_non_null(p); /* a zero-byte request is not a failure */
    nnd_free(p);
    nnd_free(NULL);
    assert_int_equal(ta.live, 0);
    test_alloc_remove(&ta);
}

static void test_set_allocator_returns_previous(void **state)
{
    TestAlloc ta;
    test_alloc_install(&ta, 0);
    NndAllocator prev = nnd_set_allocator(NULL);
    assert_ptr_equal(prev.ctx, &ta);
    NndAllocator def = nnd_set_allocator(NULL);
    assert_null(def.ctx);
    assert_non_null(def.alloc);
    void *p = nnd_alloc(100);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    nnd_free(p);
}

static void test_err(void **state)
{
    NndErr err;
    assert_int_equal(nnd_err(&err, "%s: %d", "x", 42), -1);
    assert_string_equal(err.msg, "x: 42");
    assert_int_equal(nnd_err(NULL, "ignored"), -1);
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    nnd_err(&err, "%s", big);
    assert_int_equal(strlen(err.msg), sizeof err.msg - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_alloc_zeroed_aligned),
        cmocka_unit_test(test_alloc_page_aligned),
        cmocka_unit_test(test_alloc_scalar_and_empty),
        cmocka_unit_test(test_alloc_rejects),
        cmocka_unit_test(test_allocator_hook),
        cmocka_unit_test(test_set_allocator_returns_previous),
        cmocka_unit_test(test_err),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
