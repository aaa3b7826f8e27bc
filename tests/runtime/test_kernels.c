/* The runtime's own matrix products: the AVX-512 and AVX2 f32 kernels (each where the
 * CPU has it) against a plain loop in f64; bf16 products (precision = bf16): rounding to
 * bf16, the AVX512-BF16 kernels (where the CPU has them) and the emulation against a
 * plain loop over the rounded inputs in f64.  Every transpose, odd and ragged sizes,
 * beta 0 (C not read) and not (narrow ones, n <= 16 and m >= 32, computed transposed), and
 * nnd_gemm_bf16 split across a pool and batched.
 * The loaders' byte conversion on each vector path against the plain formula. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include "../../runtime/kernels.h"
#include "nnd_abi.h"

typedef void (*GemmFn)(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                       const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

static uint64_t rng = 0x9e3779b97f4a7c15u;

static float uniform(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 - 0.5);
}

static float *random_floats(int64_t n)
{
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        x[i] = uniform();
    return x;
}

static bool round_inputs = true; /* expect_product: bf16 products (else f32) */

static double operand(float x) { return round_inputs ? nnd_bf16_round(x) : x; }

/* C (m x n, ldc n) against the (rounded) inputs' products summed in f64: within f32
 * rounding of the sum of |terms| */
static void expect_product(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                           int64_t lda, const float *b, int64_t ldb, float beta, const float *c0,
                           const float *c)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0, mag = 0;
            for (int64_t q = 0; q < k; q++) {
                double x = operand(ta ? a[q * lda + i] : a[i * lda + q]);
                double y = operand(tb ? b[j * ldb + q] : b[q * ldb + j]);
                s += x * y;
                mag += fabs(x * y);
            }
            if (beta != 0) {
                s += beta * (double)c0[i * n + j];
                mag += fabs(beta * (double)c0[i * n + j]);
            }
            double err = fabs(s - c[i * n + j]);
            if (!(err <= 4e-7 * (double)(k + 2) * mag + 1e-30))
                fail_msg("C[%lld][%lld] = %.9g, want %.9g (ta %d tb %d, %lld x %lld x %lld)",
                         (long long)i, (long long)j, (double)c[i * n + j], s, ta, tb, (long long)m,
                         (long long)n, (long long)k);
        }
}

/* x (rows x ld): the columns from cols on set to NaN */
static void pad_nan(float *x, int64_t rows, int64_t cols, int64_t ld)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = cols; j < ld; j++)
            x[i * ld + j] = NAN;
}

static void check_fn(GemmFn fn)
{
    static const int64_t sizes[][3] = {{1, 1, 1},
                                       {1, 37, 64},
                                       {8, 32, 2},
                                       {9, 33, 3},
                                       {7, 5, 31},
                                       {64, 128, 61},
                                       {17, 100, 200},
                                       {3, 47, 1},
                                       {9, 33, 1000}, /* k in blocks (A transposed) */
                                       /* short k, rows 2 or 4 KiB apart: blocks along
                                        * the rows, all of B packed first */
                                       {13, 512, 10},
                                       {70, 1024, 16},
                                       {5, 2048, 3},
                                       /* n <= 16 (m >= 32): C computed transposed */
                                       {64, 10, 37},
                                       {40, 10, 33},
                                       {100, 1, 9},
                                       {70, 16, 130},
                                       /* the AVX2 kernels' blocks: k in 2 blocks and
                                        * rows in 2 (B packed whole), columns in 2 */
                                       {130, 64, 400},
                                       {20, 600, 100},
                                       /* a B in rows over 1 MiB: its panels packed
                                        * before the first block of rows, not by it */
                                       {9, 300, 1000},
                                       {3, 5, 0}}; /* no k: C = beta C */
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (int t = 0; t < 8; t++) {
            int ta = t & 1, tb = (t >> 1) & 1;
            float beta = t & 4 ? 0.5f : 0;
            int64_t m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
            /* leading dimensions wider than the matrices: strides are honoured */
            int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2;
            float *a = random_floats((ta ? k : m) * lda), *b = random_floats((tb ? n : k) * ldb);
            /* past each row: NaN, which a read beyond the matrix would carry into C
             * (where it meets a 0 of padding in the other operand too) */
            pad_nan(a, ta ? k : m, ta ? m : k, lda);
            pad_nan(b, tb ? n : k, tb ? k : n, ldb);
            float *c0 = random_floats(m * n), *c = malloc((size_t)(m * n) * sizeof *c);
            for (int64_t i = 0; i < m * n; i++)
                c[i] = beta != 0 ? c0[i] : NAN; /* beta 0: whatever C held is not read */
            fn(ta, tb, m, n, k, a, lda, b, ldb, beta, c, n);
            expect_product(ta, tb, m, n, k, a, lda, b, ldb, beta, c0, c);
            free(a);
            free(b);
            free(c0);
            free(c);
        }
}

static void test_round(void **state)
{
    (void)state;
    assert_true(nnd_bf16_round(1.0f) == 1.0f);
    assert_true(nnd_bf16_round(1.0f + 0x1p-8f) == 1.0f); /* a tie: to the even neighbour */
    assert_true(nnd_bf16_round(1.0f + 0x3p-8f) == 1.0f + 0x1p-6f); /* a tie: up to even */
    assert_true(nnd_bf16_round(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f); /* past it: up */
    assert_true(nnd_bf16_round(-3.0f) == -3.0f);
    assert_true(isinf(nnd_bf16_round(INFINITY)) && nnd_bf16_round(-INFINITY) < 0);
    assert_true(isnan(nnd_bf16_round(NAN)));
    assert_true(isinf(nnd_bf16_round(FLT_MAX))); /* past the largest bf16 */
}

static void test_f32_own(void **state)
{
    (void)state;
    if (!nnd_own_sgemm())
        skip(); /* neither AVX-512 nor AVX2 with FMA: OpenBLAS does the f32 products */
    round_inputs = false;
    /* each path of own kernels the CPU has: the AVX-512 ones, the AVX2 ones */
    for (int path = 2; path >= 1; path--)
        if (vector_path(path) == path)
            check_fn(f32_gemm_own);
    vector_path(2);
}

static void test_native(void **state)
{
    (void)state;
    round_inputs = true;
    if (!nnd_bf16_native())
        skip(); /* this CPU has no AVX512-BF16: only the emulation runs */
    check_fn(bf16_gemm_native);
}

static void test_emulated(void **state)
{
    (void)state;
    round_inputs = true;
    check_fn(bf16_gemm_emulated);
}

/* Through the pool: products big enough to split by rows, by columns and along k,
 * and a batch, each against the plain loop. */
static void test_split(void **state)
{
    (void)state;
    round_inputs = true;
    NndErr e;
    NndPool *pool = nnd_pool_create(2, &e);
    assert_non_null(pool);
    static const int64_t shapes[][5] = {
        {0, 0, 64, 128, 784}, /* x @ W: along k */
        {1, 0, 784, 128, 64}, /* x^T @ dY: by rows */
        {0, 1, 64, 784, 128}, /* dY @ W^T: by columns */
        {0, 0, 1, 300, 256}, /* one row: the matrix-vector form */
        {1, 0, 1, 300, 256},  {0, 1, 1, 300, 256}, /* one row against a transposed matrix */
    };
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int ta = (int)shapes[s][0], tb = (int)shapes[s][1];
        int64_t m = shapes[s][2], n = shapes[s][3], k = shapes[s][4];
        int64_t lda = ta ? m : k, ldb = tb ? k : n;
        float *a = random_floats(m * k), *b = random_floats(k * n);
        float *c = malloc((size_t)(m * n) * sizeof *c);
        nnd_gemm_bf16(pool, ta, tb, m, n, k, a, lda, b, ldb, 0, c, n, 1, 0, 0, 0);
        expect_product(ta, tb, m, n, k, a, lda, b, ldb, 0, NULL, c);
        free(a);
        free(b);
        free(c);
    }
    /* a batch of 3 products, [3, 20, 70] @ [3, 70, 40] */
    float *a = random_floats(3 * 20 * 70), *b = random_floats(3 * 70 * 40);
    float *c = malloc(3 * 20 * 40 * sizeof *c);
    nnd_gemm_bf16(pool, 0, 0, 20, 40, 70, a, 70, b, 40, 0, c, 40, 3, 20 * 70, 70 * 40, 20 * 40);
    for (int i = 0; i < 3; i++)
        expect_product(0, 0, 20, 40, 70, a + i * 20 * 70, 70, b + i * 70 * 40, 40, 0, NULL,
                       c + i * 20 * 40);
    free(a);
    free(b);
    free(c);
    nnd_pool_destroy(pool);
}

/* u8_to_f32 on every path this CPU has: every byte value, at every offset of the
 * vector loops and their tails, with scales whose products round differently in f32
 * than in f64 (the plain formula rounds twice: to f64, then to f32).  At the last
 * scale the f32 lanes' two-float product gives 0x1.c5ffd8p+15 for 195, where the
 * plain formula gives 0x1.c5ffd6p+15: the f64 lanes must take it. */
static void test_u8_to_f32(void **state)
{
    (void)state;
    const double scales[] = {1.0 / 255, 0.1, 1.0 / 3, 3.7, 1.0, 298.00984575320496};
    unsigned char src[300];
    for (int i = 0; i < 300; i++)
        src[i] = (unsigned char)(i * 37 + i / 256);
    float got[300];
    for (int path = 2; path >= 0; path--) {
        if (vector_path(path) != path)
            continue;
        for (size_t si = 0; si < sizeof scales / sizeof *scales; si++)
            for (int off = 0; off < 17; off++)
                for (int n = 0; off + n <= 300; n += n < 40 ? 1 : 37) {
                    memset(got, 0xff, sizeof got);
                    u8_to_f32(src + off, n, scales[si], got);
                    for (int i = 0; i < n; i++) {
                        float want = (float)((double)src[off + i] * scales[si]);
                        if (memcmp(&got[i], &want, sizeof want) != 0)
                            fail_msg("path %d, scale %g, offset %d, n %d: [%d] = %a, want %a", path,
                                     scales[si], off, n, i, (double)got[i], (double)want);
                    }
                    /* nothing past n is written */
                    uint32_t bits;
                    memcpy(&bits, &got[n < 300 ? n : 299], sizeof bits);
                    if (n < 300)
                        assert_int_equal(bits, 0xffffffffu);
                }
    }
    vector_path(2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round),  cmocka_unit_test(test_f32_own),
        cmocka_unit_test(test_native), cmocka_unit_test(test_emulated),
        cmocka_unit_test(test_split),  cmocka_unit_test(test_u8_to_f32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
