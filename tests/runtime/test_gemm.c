/* Matrix products split across the pool: nnd_gemm_f32 and nnd_gemm_f64 against a
 * naive triple loop in double, for every transpose pair, beta 0 and 1, shapes on both
 * sides of the split threshold in both split directions, padded leading dimensions,
 * batches with strides, k = 0, and 1 to 4 threads; the same thread count gives the
 * same bits every call.
 *
 * nnd_gemm_*_ep: the product, then its epilogue (bias, relu, both, or relu's mask),
 * against the plain product with the epilogue applied after it as the step's loop
 * computes it, bit for bit, in every split, f32, bf16 and f64.
 *
 * Inputs are multiples of 1/64 in [-1, 1], exact in float, so the f32 and f64 runs
 * multiply the same numbers and one double reference serves both.  Every element the
 * product must not read is NaN (padding of A and B, gaps between matrices), and every
 * element of C it must not write holds a sentinel. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include "helpers.h"

/* In blas.c: multiply-adds below which a product is not split. */
enum { MIN_SPLIT_WORK = 1 << 18 }; /* as runtime/blas.c */

static const double SENTINEL = 1234.5;

typedef struct Shape {
    int64_t m, n, k, batch;
    int pad; /* leading dimensions larger than the minimum, and gaps between matrices */
} Shape;

/* One problem, in double, with its layout. */
typedef struct Problem {
    Shape s;
    int ta, tb;
    double beta;
    int64_t lda, ldb, ldc, sa, sb, sc;
    size_t na, nb, nc; /* elements in each buffer */
    double *a, *b, *c0; /* c0: C before the product (NaN where beta is 0) */
    double *ref, *bound; /* expected C, and sum |a||b| + |beta c| per element */
} Problem;

static uint64_t lcg(uint64_t *x)
{
    *x = *x * 6364136223846793005u + 1442695040888963407u;
    return *x >> 33;
}

/* A multiple of 1/64 in [-1, 1]: exact in float, products exact in double. */
static double draw(uint64_t *x) { return (double)((int64_t)(lcg(x) % 129) - 64) / 64.0; }

static int c_is_element(const Problem *p, size_t idx)
{
    int64_t bi = (int64_t)idx / p->sc, r = (int64_t)idx % p->sc;
    return bi < p->s.batch && r / p->ldc < p->s.m && r % p->ldc < p->s.n;
}

static void problem_init(Problem *p, Shape s, int ta, int tb, double beta, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    p->s = s;
    p->ta = ta;
    p->tb = tb;
    p->beta = beta;
    int64_t m = s.m, n = s.n, k = s.k;
    /* stored A is [k, m] when transposed, else [m, k]; B is [n, k] or [k, n] */
    int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
    int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
    p->lda = (a_cols > 0 ? a_cols : 1) + (s.pad ? 3 : 0);
    p->ldb = (b_cols > 0 ? b_cols : 1) + (s.pad ? 5 : 0);
    p->ldc = (n > 0 ? n : 1) + (s.pad ? 2 : 0);
    p->sa = a_rows * p->lda + (s.pad ? 7 : 0);
    p->sb = b_rows * p->ldb + (s.pad ? 1 : 0);
    p->sc = m * p->ldc + (s.pad ? 4 : 0);
    p->na = (size_t)(p->sa * s.batch) + 1;
    p->nb = (size_t)(p->sb * s.batch) + 1;
    p->nc = (size_t)(p->sc * s.batch) + 1;
    p->a = malloc(p->na * sizeof(double));
    p->b = malloc(p->nb * sizeof(double));
    p->c0 = malloc(p->nc * sizeof(double));
    p->ref = malloc(p->nc * sizeof(double));
    p->bound = malloc(p->nc * sizeof(double));
    assert_true(p->a && p->b && p->c0 && p->ref && p->bound);
    uint64_t x = seed;
    for (size_t i = 0; i < p->na; i++)
        p->a[i] = NAN;
    for (size_t i = 0; i < p->nb; i++)
        p->b[i] = NAN;
    for (int64_t bi = 0; bi < s.batch; bi++) {
        for (int64_t r = 0; r < a_rows; r++)
            for (int64_t j = 0; j < a_cols; j++)
                p->a[bi * p->sa + r * p->lda + j] = draw(&x);
        for (int64_t r = 0; r < b_rows; r++)
            for (int64_t j = 0; j < b_cols; j++)
                p->b[bi * p->sb + r * p->ldb + j] = draw(&x);
    }
    for (size_t i = 0; i < p->nc; i++)
        p->c0[i] = !c_is_element(p, i) ? SENTINEL : beta == 0 ? NAN : draw(&x);
    for (size_t i = 0; i < p->nc; i++) {
        p->ref[i] = p->c0[i];
        p->bound[i] = 0;
    }
    for (int64_t bi = 0; bi < s.batch; bi++) {
        const double *a = p->a + bi * p->sa, *b = p->b + bi * p->sb;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double sum = 0, mag = 0;
                for (int64_t q = 0; q < k; q++) {
                    double av = ta ? a[q * p->lda + i] : a[i * p->lda + q];
                    double bv = tb ? b[j * p->ldb + q] : b[q * p->ldb + j];
                    sum += av * bv;
                    mag += fabs(av * bv);
                }
                size_t ci = (size_t)(bi * p->sc + i * p->ldc + j);
                double cv = beta == 0 ? 0 : beta * p->c0[ci];
                p->ref[ci] = sum + cv;
                p->bound[ci] = mag + fabs(cv);
            }
    }
}

static void problem_free(Problem *p)
{
    free(p->a);
    free(p->b);
    free(p->c0);
    free(p->ref);
    free(p->bound);
}

static void describe(char *buf, size_t size, const Problem *p, const char *type, int threads)
{
    snprintf(buf, size, "%s ta %d tb %d beta %g %lldx%lldx%lld batch %lld pad %d threads %d", type,
             p->ta, p->tb, p->beta, (long long)p->s.m, (long long)p->s.n, (long long)p->s.k,
             (long long)p->s.batch, p->s.pad, threads);
}

/* Checks C (converted to double) against the reference: elements within rel * bound,
 * everything else the sentinel, bit for bit. */
static void check_c(const Problem *p, const double *c, double rel, const char *what)
{
    for (size_t i = 0; i < p->nc; i++) {
        if (!c_is_element(p, i)) {
            if (c[i] != SENTINEL)
                fail_msg("%s: element %zu outside C was written (%g)", what, i, c[i]);
            continue;
        }
        double tol = rel * p->bound[i] + 1e-30;
        if (!(fabs(c[i] - p->ref[i]) <= tol))
            fail_msg("%s: C[%zu] = %.17g, expected %.17g (tolerance %g)", what, i, c[i], p->ref[i],
                     tol);
    }
}

/* Runs both dtypes on every pool; checks each result and that a second call with the
 * same thread count gives the same bits. */
static void run_problem(const Problem *p)
{
    char what[256];
    float *af = malloc(p->na * sizeof(float)), *bf = malloc(p->nb * sizeof(float));
    float *cf = malloc(p->nc * sizeof(float)), *cf2 = malloc(p->nc * sizeof(float));
    double *cd = malloc(p->nc * sizeof(double)), *cd2 = malloc(p->nc * sizeof(double));
    double *conv = malloc(p->nc * sizeof(double));
    assert_true(af && bf && cf && cf2 && cd && cd2 && conv);
    for (size_t i = 0; i < p->na; i++)
        af[i] = (float)p->a[i];
    for (size_t i = 0; i < p->nb; i++)
        bf[i] = (float)p->b[i];
    double rel_f32 = 1e-5 * sqrt((double)(p->s.k > 1 ? p->s.k : 1));
    const Shape *s = &p->s;
    for (int t = 0; t <= TEST_THREADS; t++) {
        NndPool *pool = pools[t];
        for (int rep = 0; rep < 2; rep++) {
            float *c = rep ? cf2 : cf;
            for (size_t i = 0; i < p->nc; i++)
                c[i] = (float)p->c0[i];
            nnd_gemm_f32(pool, p->ta, p->tb, s->m, s->n, s->k, af, p->lda, bf, p->ldb,
                         (float)p->beta, c, p->ldc, s->batch, p->sa, p->sb, p->sc);
        }
        describe(what, sizeof what, p, "f32", t);
        for (size_t i = 0; i < p->nc; i++)
            conv[i] = cf[i];
        check_c(p, conv, rel_f32, what);
        if (memcmp(cf, cf2, p->nc * sizeof(float)) != 0)
            fail_msg("%s: two calls differ", what);

        for (int rep = 0; rep < 2; rep++) {
            double *c = rep ? cd2 : cd;
            memcpy(c, p->c0, p->nc * sizeof(double));
            nnd_gemm_f64(pool, p->ta, p->tb, s->m, s->n, s->k, p->a, p->lda, p->b, p->ldb, p->beta,
                         c, p->ldc, s->batch, p->sa, p->sb, p->sc);
        }
        describe(what, sizeof what, p, "f64", t);
        check_c(p, cd, 1e-12, what);
        if (memcmp(cd, cd2, p->nc * sizeof(double)) != 0)
            fail_msg("%s: two calls differ", what);
    }
    free(af);
    free(bf);
    free(cf);
    free(cf2);
    free(cd);
    free(cd2);
    free(conv);
}

static int run_shapes(const Shape *shapes, size_t count, const double *betas, int nbetas)
{
    int problems = 0;
    for (size_t i = 0; i < count; i++)
        for (int tr = 0; tr < 4; tr++)
            for (int bi = 0; bi < nbetas; bi++) {
                Problem p;
                problem_init(&p, shapes[i], tr & 1, tr >> 1, betas[bi],
                             0x9e3779b97f4a7c15u * (i * 8 + (size_t)tr * 2 + (size_t)bi + 1));
                run_problem(&p);
                problem_free(&p);
                problems++;
            }
    return problems;
}

static const double betas01[] = {0, 1};

/* Below the split threshold: one call whatever the pool. */
static void test_small(void **state)
{
    static const Shape shapes[] = {
        {1, 1, 1, 1, 0},    {1, 1, 1, 1, 1},    {1, 5, 1, 1, 0},    {5, 1, 1, 1, 1},
        {1, 1, 9, 1, 0},    {2, 3, 4, 1, 0},    {3, 2, 4, 1, 1},    {7, 5, 3, 1, 0},
        {13, 17, 11, 1, 1}, {17, 13, 11, 1, 0}, {31, 29, 37, 1, 0}, {40, 40, 40, 1, 1},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        assert_true(shapes[i].m * shapes[i].n * shapes[i].k * shapes[i].batch < MIN_SPLIT_WORK);
    int n = run_shapes(shapes, sizeof shapes / sizeof shapes[0], betas01, 2);
    print_message("%d problems, each f32 and f64 on 5 pools\n", n);
}

/* Above it: the split follows the largest matrix (rows of C, rows or k of A, k or
 * columns of B), with k split into per-thread sums added in order; including fewer
 * rows or columns than threads, primes, one row or column, and k not a multiple of
 * the thread count. */
static void test_split(void **state)
{
    static const Shape shapes[] = {
        {41, 40, 160, 1, 0}, /* just over the threshold */
        {40, 41, 160, 1, 1}, /* just over, wider than tall */
        {64, 64, 64, 1, 0}, /* square, at the threshold: C is the largest */
        {101, 97, 103, 1, 1}, /* primes */
        {97, 101, 103, 1, 0}, /* primes, wider than tall */
        {300, 70, 130, 1, 0}, /* tall */
        {70, 300, 130, 1, 1}, /* wide */
        {3, 3, 30000, 1, 0}, /* fewer rows than threads: k split */
        {2, 3, 45000, 1, 1}, /* fewer columns than threads */
        {263, 1, 1000, 1, 0}, /* one column */
        {1, 263, 1000, 1, 1}, /* one row */
        {5, 1000, 60, 1, 0}, /* wide and short: B the largest, k too short to split */
        {33, 9, 900, 1, 1}, /* 9 columns: chunks of 8 rows for 4 threads */
        {64, 128, 784, 1, 0}, /* x @ W of a small MLP: W the largest, k split */
        {40, 20, 1000, 1, 1}, /* A the largest: rows, or k when A is transposed */
        {7, 5, 9001, 1, 0}, /* k split into unequal parts */
        /* over the own AVX-512 kernels' higher threshold (2^21): split in f32 too */
        {150, 130, 110, 1, 1}, /* C the largest */
        {3, 3, 240001, 1, 0}, /* k split, unequal parts */
        {64, 256, 200, 1, 0}, /* x @ W: W the largest, k split */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        assert_true(shapes[i].m * shapes[i].n * shapes[i].k * shapes[i].batch >= MIN_SPLIT_WORK);
    int n = run_shapes(shapes, sizeof shapes / sizeof shapes[0], betas01, 2);
    print_message("%d problems, each f32 and f64 on 5 pools\n", n);
}

/* Batches: the split covers batch * rows (or columns) items, so ranges cross from one
 * matrix to the next. */
static void test_batched(void **state)
{
    static const Shape shapes[] = {
        {2, 3, 4, 3, 0}, /* small */
        {5, 4, 3, 7, 1}, /* small, padded with gaps */
        {40, 30, 20, 6, 0}, /* by rows, 240 items */
        {30, 40, 20, 6, 1}, /* by columns */
        {3, 50, 100, 7, 1}, /* 350 column items over 7 short matrices */
        {13, 11, 97, 5, 0}, /* ranges that end mid-matrix */
        {1, 1, 1000, 70, 1}, /* one element per matrix */
    };
    static const double betas[] = {0, 1, -0.5};
    int n = run_shapes(shapes, sizeof shapes / sizeof shapes[0], betas, 3);
    print_message("%d problems, each f32 and f64 on 5 pools\n", n);
}

/* k = 0: C = beta * C (0 when beta is 0, even over NaN); nothing else is touched. */
static void test_k_zero(void **state)
{
    static const Shape shapes[] = {{1, 1, 0, 1, 0}, {7, 5, 0, 1, 1}, {300, 70, 0, 3, 1}};
    static const double betas[] = {0, 1, 0.5};
    int n = run_shapes(shapes, sizeof shapes / sizeof shapes[0], betas, 3);
    print_message("%d problems, each f32 and f64 on 5 pools\n", n);
}

/* m, n or batch of 0: nothing is read or written. */
static void test_empty(void **state)
{
    float af[4] = {NAN, NAN, NAN, NAN}, cf[4] = {1, 2, 3, 4};
    double ad[4] = {NAN, NAN, NAN, NAN}, cd[4] = {1, 2, 3, 4};
    for (int t = 0; t <= TEST_THREADS; t++) {
        nnd_gemm_f32(pools[t], 0, 0, 0, 2, 2, af, 2, af, 2, 0, cf, 2, 1, 0, 0, 0);
        nnd_gemm_f32(pools[t], 0, 0, 2, 0, 2, af, 2, af, 2, 0, cf, 2, 1, 0, 0, 0);
        nnd_gemm_f32(pools[t], 0, 0, 2, 2, 2, af, 2, af, 2, 0, cf, 2, 0, 0, 0, 0);
        nnd_gemm_f64(pools[t], 1, 1, 0, 2, 2, ad, 2, ad, 2, 0, cd, 2, 1, 0, 0, 0);
        nnd_gemm_f64(pools[t], 1, 1, 2, 0, 2, ad, 2, ad, 2, 0, cd, 2, 1, 0, 0, 0);
        nnd_gemm_f64(pools[t], 1, 1, 2, 2, 2, ad, 2, ad, 2, 0, cd, 2, 0, 0, 0, 0);
        for (int i = 0; i < 4; i++) {
            assert_true(cf[i] == (float)(i + 1));
            assert_true(cd[i] == (double)(i + 1));
        }
    }
}

/* A worked example: [[1,2],[3,4]] @ [[5,6],[7,8]] = [[19,22],[43,50]], and with
 * transposes. */
static void test_known_values(void **state)
{
    const double a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
    static const double expect[4][4] = {
        {19, 22, 43, 50}, /* A B */
        {26, 30, 38, 44}, /* A^T B */
        {17, 23, 39, 53}, /* A B^T */
        {23, 31, 34, 46}, /* A^T B^T */
    };
    for (int tr = 0; tr < 4; tr++) {
        double c[4] = {1, 1, 1, 1};
        float af[4], bf[4], cf[4] = {1, 1, 1, 1};
        for (int i = 0; i < 4; i++) {
            af[i] = (float)a[i];
            bf[i] = (float)b[i];
        }
        nnd_gemm_f64(NULL, tr & 1, tr >> 1, 2, 2, 2, a, 2, b, 2, 1, c, 2, 1, 0, 0, 0);
        nnd_gemm_f32(NULL, tr & 1, tr >> 1, 2, 2, 2, af, 2, bf, 2, 1, cf, 2, 1, 0, 0, 0);
        for (int i = 0; i < 4; i++) {
            assert_true(c[i] == expect[tr][i] + 1);
            assert_true(cf[i] == (float)(expect[tr][i] + 1));
        }
    }
}

/* The epilogue as the step's loop computes it, on C (m x n, row stride ldc). */
#define APPLY_EPILOGUE(T)                                                                          \
    static void apply_epilogue_##T(T *c, int64_t batch, int64_t m, int64_t n, int64_t ldc,         \
                                   int64_t sc, int ep, const T *bias, const T *mask)               \
    {                                                                                              \
        for (int64_t bi = 0; bi < batch; bi++)                                                     \
            for (int64_t i = 0; i < m; i++)                                                        \
                for (int64_t j = 0; j < n; j++) {                                                  \
                    T *x = c + bi * sc + i * ldc + j;                                              \
                    if (ep & NND_EP_BIAS)                                                          \
                        *x = *x + bias[j];                                                         \
                    if (ep & NND_EP_RELU)                                                          \
                        *x = *x <= 0 ? 0 : *x;                                                     \
                    if (ep & NND_EP_MASK)                                                          \
                        *x = mask[(bi * m + i) * n + j] > 0 ? *x : 0;                              \
                }                                                                                  \
    }
APPLY_EPILOGUE(float)
APPLY_EPILOGUE(double)

/* nnd_gemm_*_ep against nnd_gemm_* and the epilogue after it: the same bits, nothing
 * outside C written.  The shapes split by rows, by columns, along k (the epilogue
 * after the copies are added), not at all, a narrow C (computed transposed), a batch;
 * C and the mask hold positives, negatives, zeros and NaN. */
static void test_epilogue(void **state)
{
    static const Shape shapes[] = {
        {512, 64, 128, 1, 0}, /* A the largest: by rows */
        {64, 512, 256, 1, 0}, /* B^T the largest: by columns (tb) */
        {64, 256, 512, 1, 0}, /* B the largest: k split */
        {40, 30, 20, 1, 1}, /* small: one call */
        {128, 10, 64, 1, 0}, /* narrow */
        {30, 40, 20, 3, 1}, /* batched */
    };
    static const int eps[] = {NND_EP_BIAS, NND_EP_RELU, NND_EP_BIAS | NND_EP_RELU, NND_EP_MASK};
    int runs = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int tr = 0; tr < 4; tr++) {
            Problem p;
            problem_init(&p, shapes[si], tr & 1, tr >> 1, 0, 77 + si * 4 + (size_t)tr);
            const Shape *s = &p.s;
            size_t nm = (size_t)(s->batch * s->m * s->n);
            float *af = malloc(p.na * sizeof(float)), *bf = malloc(p.nb * sizeof(float));
            float *biasf = malloc((size_t)s->n * sizeof(float)),
                  *maskf = malloc(nm * sizeof(float));
            double *biasd = malloc((size_t)s->n * sizeof(double)),
                   *maskd = malloc(nm * sizeof(double));
            float *want = malloc(p.nc * sizeof(float)), *got = malloc(p.nc * sizeof(float));
            double *wantd = malloc(p.nc * sizeof(double)), *gotd = malloc(p.nc * sizeof(double));
            assert_true(af && bf && biasf && maskf && biasd && maskd && want && got && wantd &&
                        gotd);
            for (size_t i = 0; i < p.na; i++)
                af[i] = (float)p.a[i];
            for (size_t i = 0; i < p.nb; i++)
                bf[i] = (float)p.b[i];
            af[0] = (float)(p.a[0] = NAN); /* a row or column of C NaN: relu keeps it */
            uint64_t x = 5 + si;
            for (int64_t j = 0; j < s->n; j++)
                biasf[j] = (float)(biasd[j] = draw(&x));
            for (size_t i = 0; i < nm; i++)
                maskf[i] = (float)(maskd[i] = i % 7 == 3 ? NAN : i % 5 == 1 ? 0 : draw(&x));
            for (int t = 0; t <= TEST_THREADS; t++)
                for (int e = 0; e < 4; e++)
                    for (int bf16 = 0; bf16 < 2; bf16++) {
                        void (*gemm)(NndPool *, int, int, int64_t, int64_t, int64_t, const float *,
                                     int64_t, const float *, int64_t, float, float *, int64_t,
                                     int64_t, int64_t, int64_t, int64_t) =
                            bf16 ? nnd_gemm_bf16 : nnd_gemm_f32;
                        void (*gemm_ep)(NndPool *, int, int, int64_t, int64_t, int64_t,
                                        const float *, int64_t, const float *, int64_t, float,
                                        float *, int64_t, int64_t, int64_t, int64_t, int64_t, int,
                                        const float *, const float *) =
                            bf16 ? nnd_gemm_bf16_ep : nnd_gemm_f32_ep;
                        for (size_t i = 0; i < p.nc; i++)
                            want[i] = got[i] = (float)SENTINEL;
                        gemm(pools[t], p.ta, p.tb, s->m, s->n, s->k, af, p.lda, bf, p.ldb, 0, want,
                             p.ldc, s->batch, p.sa, p.sb, p.sc);
                        apply_epilogue_float(want, s->batch, s->m, s->n, p.ldc, p.sc, eps[e], biasf,
                                             maskf);
                        gemm_ep(pools[t], p.ta, p.tb, s->m, s->n, s->k, af, p.lda, bf, p.ldb, 0,
                                got, p.ldc, s->batch, p.sa, p.sb, p.sc, eps[e], biasf, maskf);
                        if (memcmp(want, got, p.nc * sizeof(float)) != 0)
                            fail_msg("%s epilogue %d: shape %zu, transposes %d, %d threads",
                                     bf16 ? "bf16" : "f32", eps[e], si, tr, t);
                        memcpy(wantd, p.c0, p.nc * sizeof(double));
                        memcpy(gotd, p.c0, p.nc * sizeof(double));
                        nnd_gemm_f64(pools[t], p.ta, p.tb, s->m, s->n, s->k, p.a, p.lda, p.b, p.ldb,
                                     0, wantd, p.ldc, s->batch, p.sa, p.sb, p.sc);
                        apply_epilogue_double(wantd, s->batch, s->m, s->n, p.ldc, p.sc, eps[e],
                                              biasd, maskd);
                        nnd_gemm_f64_ep(pools[t], p.ta, p.tb, s->m, s->n, s->k, p.a, p.lda, p.b,
                                        p.ldb, 0, gotd, p.ldc, s->batch, p.sa, p.sb, p.sc, eps[e],
                                        biasd, maskd);
                        if (memcmp(wantd, gotd, p.nc * sizeof(double)) != 0)
                            fail_msg("f64 epilogue %d: shape %zu, transposes %d, %d threads",
                                     eps[e], si, tr, t);
                        runs++;
                    }
            free(af);
            free(bf);
            free(biasf);
            free(maskf);
            free(biasd);
            free(maskd);
            free(want);
            free(got);
            free(wantd);
            free(gotd);
            problem_free(&p);
        }
    print_message("%d products with an epilogue, each f32, bf16 and f64\n", runs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values), cmocka_unit_test(test_small),
        cmocka_unit_test(test_split),        cmocka_unit_test(test_batched),
        cmocka_unit_test(test_k_zero),       cmocka_unit_test(test_empty),
        cmocka_unit_test(test_epilogue),
    };
    return cmocka_run_group_tests(tests, setup_pools, teardown_pools);
}
