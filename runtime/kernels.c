/* kernels: the runtime's own matrix products for AVX-512 CPUs, f32 and bf16, and its
 * 2x2 max pooling in AVX-512 lanes (at the end of the file).
 *
 * Both keep an MR x 32 block of C in 16 zmm registers over the whole of k (a step's k
 * is at most a few thousand: the operands' rows and a panel of B stay in L2), walk
 * k in order (so each element's sum does not depend on how the caller splits C), and
 * add beta * C when they store, masked at the edges.
 *
 * f32: B is copied a panel of 32 columns at a time into k rows of 32 (transposed when
 * B is); A is read where it is, one broadcast per row and k.  On the 2-core AMD EPYC
 * (Zen 5) of bench/ this runs 1.7-2x OpenBLAS's sgemm (which OPENBLAS_CORETYPE puts
 * on its AVX2 Haswell kernels there), so on a CPU with AVX-512 f32_sgemm uses it; on
 * one with AVX2 and FMA, sgemm_avx2.c's kernels for the shapes they win, OpenBLAS for
 * the rest; elsewhere OpenBLAS.
 *
 * bf16, the mixed precision of `precision = bf16` (PyTorch's autocast to bfloat16
 * on CPUs does the same): on a CPU with AVX512-BF16, VDPBF16PS multiplies 16 pairs of
 * bf16 values and adds both products of each pair to an f32 lane.  So both operands
 * are packed as pairs along k (one 32-bit word: the value at k = 2q in the low half,
 * 2q + 1 in the high half), rounded to nearest even by VCVTNE2PS2BF16 on the way:
 *     A: row r's pairs, q = 0 .. k/2 (from a row-major A), or pair q's rows (from a
 *        transposed one): the kernel broadcasts one word per row and step q;
 *     B: a panel of 32 columns at a time (as f32), k/2 rows of 32 words (pair q,
 *        column j), zeros past n; all of B at once where C's blocks go along the rows.
 * Elsewhere the same product is emulated: both operands rounded to bf16 (in f32),
 * then the f32 product (the own kernels on AVX-512, else OpenBLAS's sgemm), which
 * gives nearly the same values at f32 speed.
 *
 * Packing buffers are per thread and kept; without memory, a product runs in plain
 * f32 (OpenBLAS). */
#define _POSIX_C_SOURCE 200809L
#include "kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "clones.h"
#include "lanes.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_KERNELS 1
#define TARGET_F32 __attribute__((target("avx512f,avx512vl")))
#define TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#endif

enum { MR = 8, NR = 32 };

/* The loops over a block's rows and a tile's registers, unrolled whatever the
 * optimization level: rolled, at -O2 (CMake's RelWithDebInfo), the accumulators
 * live in memory and the products run at half speed (GPT step 76 ms against 52). */
#define UNROLL _Pragma("GCC unroll 16")
/* and the kernels inlined into their callers, whose row counts are constants */
#define ALWAYS_INLINE __attribute__((always_inline))

static int f32_path(void);

/* ---- per-thread buffers, kept from one call to the next ---- */

typedef struct Scratch {
    void *p[SCRATCH_SLOTS];
    size_t cap[SCRATCH_SLOTS];
} Scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *v)
{
    Scratch *s = v;
    for (int i = 0; i < SCRATCH_SLOTS; i++)
        free(s->p[i]);
    free(s);
}

static void scratch_init(void) { (void)pthread_key_create(&scratch_key, scratch_free); }

static atomic_bool scratch_failing;

void thread_scratch_fail(bool on) { atomic_store(&scratch_failing, on); }

void *thread_scratch(ScratchSlot slot, size_t bytes)
{
    if (atomic_load_explicit(&scratch_failing, memory_order_relaxed))
        return NULL;
    pthread_once(&scratch_once, scratch_init);
    Scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->cap[slot] < bytes) {
        size_t cap = (bytes + (bytes >> 2) + 63) & ~(size_t)63;
        void *p = aligned_alloc(64, cap);
        if (!p)
            return NULL;
        free(s->p[slot]);
        s->p[slot] = p;
        s->cap[slot] = cap;
    }
    return s->p[slot];
}

/* This thread's packing buffer of at least bytes (64-byte aligned), or NULL. */
static void *scratch(size_t bytes) { return thread_scratch(SCRATCH_PACK, bytes); }

/* -1 with a message when $name is set to something other than 0 or 1 (what0 and what1
 * say what each means). */
static int check_flag(const char *name, const char *what0, const char *what1, NndErr *err)
{
    const char *v = getenv(name);
    if (v && strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
        return nnd_err(err, "%s='%.40s' must be 0 (%s) or 1 (%s)", name, v, what0, what1);
    return 0;
}

int nnd_check_env(NndErr *err)
{
    if (check_flag("NND_OWN_SGEMM", "OpenBLAS's sgemm",
                   "nnd's AVX-512 kernels where the CPU has them, the default", err) != 0)
        return -1;
    return check_flag("NND_WINOGRAD", "5x5 and 3x3 convolutions by im2col products",
                      "by Winograd's minimal filtering where the CPU has AVX-512, the default",
                      err);
}

int nnd_own_sgemm(void)
{
#ifdef HAVE_KERNELS
    const char *e = getenv("NND_OWN_SGEMM"); /* 0: OpenBLAS, to compare (bench/run.py) */
    if (e && strcmp(e, "0") == 0)
        return 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
        return 2;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
#else
    return 0;
#endif
}

int nnd_bf16_native(void)
{
#ifdef HAVE_KERNELS
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

/* The bits of x (as u) rounded to bf16, to nearest even; a NaN stays one (a quiet
 * one).  Without a branch, so that loops over it vectorize. */
static inline uint32_t bf16_bits(uint32_t u)
{
    uint32_t r = (u & 0x7fffffffu) > 0x7f800000u ? u | 0x00400000u : u + 0x7fffu + ((u >> 16) & 1);
    return r & 0xffff0000u;
}

float nnd_bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    u = bf16_bits(u);
    memcpy(&x, &u, 4);
    return x;
}

#ifdef HAVE_KERNELS
/* The first n of 16 lanes (none for n <= 0, all for n >= 16). */
static inline __mmask16 lanes(int64_t n)
{
    return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

/* C[0..mr)[0..nr) = acc + beta * C (beta 0: C is not read; it may hold anything). */
TARGET_F32 static inline ALWAYS_INLINE void store_block(__m512 acc[MR][2], int mr, int nr,
                                                        float beta, float *c, int64_t ldc)
{
    __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
    __m512 vb = _mm512_set1_ps(beta);
    UNROLL
    for (int r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
        __m512 x0 = acc[r][0], x1 = acc[r][1];
        if (beta != 0) {
            x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), x0);
            x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), x1);
        }
        _mm512_mask_storeu_ps(cr, m0, x0);
        _mm512_mask_storeu_ps(cr + 16, m1, x1);
    }
}

/* ---- f32 ---- */

/* Columns [j0, j0 + 32) of op(B) (k x n) as k rows of 32 (zeros past n). */
/* r[i][j] <- r[j][i]: 4-element blocks by unpacking pairs of floats and of doubles,
 * then the 128-bit lanes of each group of four rows across the groups. */
TARGET_F32 static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    UNROLL
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[4g + j], lane l: column 4l + j of rows 4g .. 4g + 3 */
    __m512 u[16];
    UNROLL
    for (int g = 0; g < 16; g += 4) {
        __m512d a = _mm512_castps_pd(t[g]), b = _mm512_castps_pd(t[g + 1]);
        __m512d c = _mm512_castps_pd(t[g + 2]), d = _mm512_castps_pd(t[g + 3]);
        u[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* row 4l + j: lane l of u[j], u[4 + j], u[8 + j], u[12 + j] */
    UNROLL
    for (int j = 0; j < 4; j++) {
        __m512 a = _mm512_shuffle_f32x4(u[j], u[4 + j], _MM_SHUFFLE(1, 0, 1, 0));
        __m512 b = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], _MM_SHUFFLE(1, 0, 1, 0));
        __m512 c = _mm512_shuffle_f32x4(u[j], u[4 + j], _MM_SHUFFLE(3, 2, 3, 2));
        __m512 d = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], _MM_SHUFFLE(3, 2, 3, 2));
        r[j] = _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0));
        r[4 + j] = _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        r[8 + j] = _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(2, 0, 2, 0));
        r[12 + j] = _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

TARGET_F32 static void f32_panel(int tb, int64_t n, int64_t k, const float *b, int64_t ldb,
                                 int64_t j0, float *pb)
{
    int nr = n - j0 < NR ? (int)(n - j0) : NR;
    if (!tb) {
        __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
        for (int64_t q = 0; q < k; q++) {
            _mm512_storeu_ps(pb + q * NR, _mm512_maskz_loadu_ps(m0, b + q * ldb + j0));
            _mm512_storeu_ps(pb + q * NR + 16, _mm512_maskz_loadu_ps(m1, b + q * ldb + j0 + 16));
        }
        return;
    }
    /* B's columns are rows of b: 16 values of each of 16 columns at a time,
     * transposed in registers */
    for (int64_t q0 = 0; q0 < k; q0 += 16) {
        int qn = k - q0 < 16 ? (int)(k - q0) : 16;
        __mmask16 mq = lanes(qn);
        for (int half = 0; half < NR; half += 16) {
            __m512 r[16];
            UNROLL
            for (int jj = 0; jj < 16; jj++)
                r[jj] = half + jj < nr ? _mm512_maskz_loadu_ps(mq, b + (j0 + half + jj) * ldb + q0)
                                       : _mm512_setzero_ps();
            transpose16(r);
            for (int q = 0; q < qn; q++)
                _mm512_storeu_ps(pb + (q0 + q) * NR + half, r[q]);
        }
    }
}

/* C[0..mr)[0..nr) = sum over q of A(r, q) B panel (q, 0..32), + beta * C; A(r, q) is
 * a[r * ars + q * aqs].  With pack (a constant at each call), the panel pb is not read
 * but made: B's k rows at b (ldb apart, nr columns) are read where they are and
 * written to pb as f32_panel would (zeros past nr) while they are multiplied; the
 * sums are the same, in the same order. */
TARGET_F32 static inline ALWAYS_INLINE void f32_kernel_(int mr, int nr, int64_t k, const float *a,
                                                        int64_t ars, int64_t aqs, float *pb,
                                                        bool pack, const float *b, int64_t ldb,
                                                        float beta, float *c, int64_t ldc)
{
    __m512 acc[MR][2];
    UNROLL
    for (int r = 0; r < MR; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
    for (int64_t q = 0; q < k; q++) {
        __m512 b0, b1;
        if (pack) {
            b0 = _mm512_maskz_loadu_ps(m0, b + q * ldb);
            b1 = _mm512_maskz_loadu_ps(m1, b + q * ldb + 16);
            _mm512_storeu_ps(pb + q * NR, b0);
            _mm512_storeu_ps(pb + q * NR + 16, b1);
        } else {
            b0 = _mm512_loadu_ps(pb + q * NR);
            b1 = _mm512_loadu_ps(pb + q * NR + 16);
        }
        UNROLL
        for (int r = 0; r < MR; r++)
            if (r < mr) {
                __m512 x = _mm512_set1_ps(a[r * ars + q * aqs]);
                acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
            }
    }
    store_block(acc, mr, nr, beta, c, ldc);
}

TARGET_F32 static inline ALWAYS_INLINE void f32_kernel(int mr, int nr, int64_t k, const float *a,
                                                       int64_t ars, int64_t aqs, float *pb,
                                                       float beta, float *c, int64_t ldc)
{
    f32_kernel_(mr, nr, k, a, ars, aqs, pb, false, NULL, 0, beta, c, ldc);
}

/* The first block of rows of a panel of a B in rows (not transposed) packs the panel
 * as it multiplies (f32_kernel_ with pack; bf16_kernel_ likewise), so that no pass of
 * loads and stores packs it before the blocks read it.  One thread on a Zen 4: x W1
 * of 784-128-10, [64 x 784] [784 x 128], 118.7 -> 111.5 us; [32 x 784] [784 x 32]
 * 15.5 -> 14.1 us.  Only for a B of at most PACKING_MAX_B values, which is likely in
 * cache: a bigger one's rows come from memory 4 KiB apart and the first block's
 * multiply-adds wait on them ([64 x 3136] [3136 x 1024]: 4.7 -> 5.0-5.4 ms). */
enum { PACKING_MAX_B = (1 << 20) / sizeof(float) };

TARGET_F32 static void f32_kernel_packing_full(int nr, int64_t k, const float *a, int64_t ars,
                                               int64_t aqs, float *pb, const float *b, int64_t ldb,
                                               float beta, float *c, int64_t ldc)
{
    f32_kernel_(MR, nr, k, a, ars, aqs, pb, true, b, ldb, beta, c, ldc);
}

/* The whole block, with the row count known: the loop over rows unrolled. */
TARGET_F32 static void f32_kernel_full(int64_t k, const float *a, int64_t ars, int64_t aqs,
                                       float *pb, float beta, float *c, int64_t ldc)
{
    f32_kernel(MR, NR, k, a, ars, aqs, pb, beta, c, ldc);
}

/* With A transposed (its k strided: one cache line per k for a block of rows), k runs
 * in blocks of KC when it is longer than K_WHOLE, so that a block's lines of A and
 * its panel of B stay in L1; C takes each block's sums in turn.  (The weight
 * gradients x^T dY of a GPT, k = batch x positions: 1.36x -> 2x OpenBLAS; with A
 * in rows, blocking made the products 4% slower.) */
enum { KC = 256, K_WHOLE = 384 };

/* A short k (dY W^T through a 10-wide layer: k = 10) makes each block of C mostly
 * stores.  Block after block down a panel, the stores go 32 columns wide down the
 * rows, and where a row is a multiple of 2 KiB long (n = 512, 1024, ...) they fall
 * into a few sets of L1 and evict each other: [256 x 1024] = [256 x 10] [10 x 1024]
 * took 115 us on one thread, 3.4x what a row stride of 1040 floats took.  There, B
 * is packed whole first and the blocks go along the rows (115 -> 28 us; n = 512
 * 18.7 -> 14.0 us).  Elsewhere this order gains nothing and with n = 128 loses 13%. */
enum { ROWS_MAX_K = 16, ROWS_MAX_B = 256 << 10 };

/* Whether C's blocks go along the rows (the f32 and bf16 kernels alike). */
static bool rows_first(int64_t n, int64_t k, int64_t ldc)
{
    return n > NR && k <= ROWS_MAX_K && ldc * (int64_t)sizeof(float) % 2048 == 0;
}

TARGET_F32 static void f32_gemm_rows(int ta, int tb, int64_t m, int64_t n, int64_t k,
                                     const float *a, int64_t lda, const float *b, int64_t ldb,
                                     float beta, float *c, int64_t ldc, float *pb)
{
    int64_t ars = ta ? 1 : lda, aqs = ta ? lda : 1;
    for (int64_t j = 0; j < n; j += NR)
        f32_panel(tb, n, k, b, ldb, j, pb + j * k);
    for (int64_t i = 0; i < m; i += MR) {
        int mr = m - i < MR ? (int)(m - i) : MR;
        for (int64_t j = 0; j < n; j += NR) {
            int nr = n - j < NR ? (int)(n - j) : NR;
            if (mr == MR && nr == NR)
                f32_kernel_full(k, a + i * ars, ars, aqs, pb + j * k, beta, c + i * ldc + j, ldc);
            else
                f32_kernel(mr, nr, k, a + i * ars, ars, aqs, pb + j * k, beta, c + i * ldc + j,
                           ldc);
        }
    }
}

TARGET_F32 static void f32_gemm_panels(int ta, int tb, int64_t m, int64_t n, int64_t k,
                                       const float *a, int64_t lda, const float *b, int64_t ldb,
                                       float beta, float *c, int64_t ldc, float *pb)
{
    int64_t ars = ta ? 1 : lda, aqs = ta ? lda : 1;
    int64_t kc = ta && k > K_WHOLE ? KC : k;
    int64_t q0 = 0;
    do { /* once with k = 0: C = beta C */
        int64_t kn = k - q0 < kc ? k - q0 : kc;
        float bq = q0 == 0 ? beta : 1; /* later blocks add to what the first wrote */
        const float *aq = a + q0 * aqs;
        const float *bk = b + (tb ? q0 : q0 * ldb);
        for (int64_t j = 0; j < n; j += NR) {
            int nr = n - j < NR ? (int)(n - j) : NR;
            int64_t i = 0;
            if (tb || m == 0 || kn * n > PACKING_MAX_B) {
                f32_panel(tb, n, kn, bk, ldb, j, pb);
            } else { /* the first block of rows packs the panel */
                int mr = m < MR ? (int)m : MR;
                if (mr == MR)
                    f32_kernel_packing_full(nr, kn, aq, ars, aqs, pb, bk + j, ldb, bq, c + j, ldc);
                else
                    f32_kernel_(mr, nr, kn, aq, ars, aqs, pb, true, bk + j, ldb, bq, c + j, ldc);
                i = MR;
            }
            for (; i < m; i += MR) {
                int mr = m - i < MR ? (int)(m - i) : MR;
                if (mr == MR && nr == NR)
                    f32_kernel_full(kn, aq + i * ars, ars, aqs, pb, bq, c + i * ldc + j, ldc);
                else
                    f32_kernel(mr, nr, kn, aq + i * ars, ars, aqs, pb, bq, c + i * ldc + j, ldc);
            }
        }
        q0 += kc;
    } while (q0 < k);
}

/* ---- bf16: the AVX512-BF16 kernels ---- */

/* Lanes m of rows r0 and r1 (r1 NULL: zeros) as 16 pairs, r0[j] in the low half of word
 * j and r1[j] in its high half (zeros outside m): VCVTNE2PS2BF16 gives r0's 16 halves,
 * then r1's, and the permutation puts them in pair order. */
TARGET_BF16 static inline ALWAYS_INLINE __m512i pairs16(const float *r0, const float *r1,
                                                        __mmask16 m)
{
    const __m512i order =
        _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __m512 lo = _mm512_maskz_loadu_ps(m, r0);
    __m512 hi = r1 ? _mm512_maskz_loadu_ps(m, r1) : _mm512_setzero_ps();
    return _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

/* Rows r0 and r1 (n floats each; r1 NULL: zeros) as n pairs (r0 in the low half). */
TARGET_BF16 static void pack_interleaved(const float *r0, const float *r1, int64_t n, uint32_t *out)
{
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 m = lanes(n - j);
        _mm512_mask_storeu_epi32(out + j, m, pairs16(r0 + j, r1 ? r1 + j : NULL, m));
    }
}

/* n consecutive floats as (n + 1) / 2 pairs (an odd n's last high half 0). */
TARGET_BF16 static void pack_pairs(const float *x, int64_t n, uint32_t *out)
{
    uint16_t *o = (uint16_t *)out;
    int64_t j = 0;
    for (; j + 32 <= n; j += 32)
        _mm512_storeu_si512(o + j, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + j + 16),
                                                                _mm512_loadu_ps(x + j)));
    for (; j < n; j += 16) {
        __mmask16 m = lanes(n - j);
        __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + j));
        _mm256_mask_storeu_epi16(o + j, m, h);
    }
    if (n & 1)
        o[n] = 0;
}

/* C[0..mr)[0..nr) = sum over q of A pair (r, q) . B pairs (q, 0..32), + beta * C.
 * A's pair (r, q) is a[r * ars + q * aqs]; B's row q starts at b + q * bqs.  With pack
 * (a constant at each call), as in f32_kernel_: B's pairs are made from its k rows of
 * floats at rows (ldb apart, nr columns) as they are multiplied, and written to b. */
TARGET_BF16 static inline ALWAYS_INLINE void
bf16_kernel_(int mr, int nr, int64_t kp, const uint32_t *a, int64_t ars, int64_t aqs, uint32_t *b,
             int64_t bqs, bool pack, const float *rows, int64_t ldb, int64_t k, float beta,
             float *c, int64_t ldc)
{
    __m512 acc[MR][2];
    UNROLL
    for (int r = 0; r < MR; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
    for (int64_t q = 0; q < kp; q++) {
        __m512bh b0, b1;
        if (pack) {
            const float *r0 = rows + 2 * q * ldb, *r1 = 2 * q + 1 < k ? r0 + ldb : NULL;
            __m512i p0 = pairs16(r0, r1, m0), p1 = pairs16(r0 + 16, r1 ? r1 + 16 : NULL, m1);
            _mm512_storeu_si512(b + q * bqs, p0);
            _mm512_storeu_si512(b + q * bqs + 16, p1);
            b0 = (__m512bh)p0, b1 = (__m512bh)p1;
        } else {
            b0 = (__m512bh)_mm512_loadu_si512(b + q * bqs);
            b1 = (__m512bh)_mm512_loadu_si512(b + q * bqs + 16);
        }
        UNROLL
        for (int r = 0; r < MR; r++)
            if (r < mr) {
                __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[r * ars + q * aqs]);
                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
            }
    }
    store_block(acc, mr, nr, beta, c, ldc);
}

TARGET_BF16 static inline ALWAYS_INLINE void bf16_kernel(int mr, int nr, int64_t kp,
                                                         const uint32_t *a, int64_t ars,
                                                         int64_t aqs, uint32_t *b, int64_t bqs,
                                                         float beta, float *c, int64_t ldc)
{
    bf16_kernel_(mr, nr, kp, a, ars, aqs, b, bqs, false, NULL, 0, 0, beta, c, ldc);
}

/* The whole block, with the row count known: the loop over rows unrolled. */
TARGET_BF16 static void bf16_kernel_full(int64_t kp, const uint32_t *a, int64_t ars, int64_t aqs,
                                         uint32_t *b, int64_t bqs, float beta, float *c,
                                         int64_t ldc)
{
    bf16_kernel(MR, NR, kp, a, ars, aqs, b, bqs, beta, c, ldc);
}

/* The first block of rows of a panel of a B in rows, packing the panel (kp rows of NR
 * words at pb) as it multiplies. */
TARGET_BF16 static void bf16_kernel_packing_full(int nr, int64_t kp, const uint32_t *a, int64_t ars,
                                                 int64_t aqs, uint32_t *pb, const float *b,
                                                 int64_t ldb, int64_t k, float beta, float *c,
                                                 int64_t ldc)
{
    bf16_kernel_(MR, nr, kp, a, ars, aqs, pb, NR, true, b, ldb, k, beta, c, ldc);
}

/* B (k x n, or n x k when tb) into kp rows of np words. */
TARGET_BF16 static void bf16_pack_b(int tb, int64_t n, int64_t k, const float *b, int64_t ldb,
                                    uint32_t *pb, int64_t np)
{
    int64_t kp = (k + 1) / 2;
    if (!tb && np == NR) { /* one panel: both halves of each row inline, zeros past n by
                            * the masks (with a call and a memset of nothing per row,
                            * packing took 22% of 64 x 128 x 784's samples; 10% now) */
        __mmask16 m0 = lanes(n), m1 = lanes(n - 16);
        for (int64_t q = 0; q < kp; q++) {
            const float *r0 = b + 2 * q * ldb, *r1 = 2 * q + 1 < k ? r0 + ldb : NULL;
            _mm512_storeu_si512(pb + q * NR, pairs16(r0, r1, m0));
            _mm512_storeu_si512(pb + q * NR + 16, pairs16(r0 + 16, r1 ? r1 + 16 : NULL, m1));
        }
        return;
    }
    if (!tb) {
        for (int64_t q = 0; q < kp; q++) {
            pack_interleaved(b + 2 * q * ldb, 2 * q + 1 < k ? b + (2 * q + 1) * ldb : NULL, n,
                             pb + q * np);
            if (np > n)
                memset(pb + q * np + n, 0, (size_t)(np - n) * 4);
        }
        return;
    }
    /* columns of B are rows of b: 32 values (16 pairs) of each of 16 columns at a
     * time, transposed in registers (stored word by word, [64 x 128] by
     * [784 x 128]^T took 57 us once B went by panels, a third of it packing; 36 now) */
    for (int64_t j0 = 0; j0 < np; j0 += 16)
        for (int64_t q0 = 0; q0 < kp; q0 += 16) {
            __mmask16 lo = lanes(k - 2 * q0), hi = lanes(k - 2 * q0 - 16);
            __m512 r[16];
            UNROLL
            for (int jj = 0; jj < 16; jj++) {
                const float *x = b + (j0 + jj) * ldb + 2 * q0;
                r[jj] = j0 + jj < n ? (__m512)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, x + 16),
                                                                  _mm512_maskz_loadu_ps(lo, x))
                                    : _mm512_setzero_ps();
            }
            transpose16(r);
            int qn = kp - q0 < 16 ? (int)(kp - q0) : 16;
            for (int q = 0; q < qn; q++)
                _mm512_storeu_ps((float *)(pb + (q0 + q) * np + j0), r[q]);
        }
}

/* The block of C at row i, column j; pbj: B's pairs from column j on, rows bqs apart. */
TARGET_BF16 static inline ALWAYS_INLINE void bf16_block(int64_t m, int64_t n, int64_t i, int64_t j,
                                                        int64_t kp, const uint32_t *pa, int64_t ars,
                                                        int64_t aqs, uint32_t *pbj, int64_t bqs,
                                                        float beta, float *c, int64_t ldc)
{
    int mr = m - i < MR ? (int)(m - i) : MR, nr = n - j < NR ? (int)(n - j) : NR;
    if (mr == MR && nr == NR)
        bf16_kernel_full(kp, pa + i * ars, ars, aqs, pbj, bqs, beta, c + i * ldc + j, ldc);
    else
        bf16_kernel(mr, nr, kp, pa + i * ars, ars, aqs, pbj, bqs, beta, c + i * ldc + j, ldc);
}

/* pb: scratch for all of B's pairs (kp x np words) where C's blocks go along the rows,
 * else for one panel of them (kp x NR). */
TARGET_BF16 static void bf16_gemm_packed(int ta, int tb, int64_t m, int64_t n, int64_t k,
                                         const float *a, int64_t lda, const float *b, int64_t ldb,
                                         float beta, float *c, int64_t ldc, uint32_t *pa,
                                         uint32_t *pb)
{
    int64_t kp = (k + 1) / 2, np = (n + NR - 1) / NR * NR, ars, aqs;
    if (!ta) {
        for (int64_t r = 0; r < m; r++)
            pack_pairs(a + r * lda, k, pa + r * kp);
        ars = kp, aqs = 1;
    } else {
        for (int64_t q = 0; q < kp; q++)
            pack_interleaved(a + 2 * q * lda, 2 * q + 1 < k ? a + (2 * q + 1) * lda : NULL, m,
                             pa + q * m);
        ars = 1, aqs = m;
    }
    /* with a short k and rows 2 KiB apart, all of B by each block of rows (see
     * rows_first) */
    if (rows_first(n, k, ldc)) {
        bf16_pack_b(tb, n, k, b, ldb, pb, np);
        for (int64_t i = 0; i < m; i += MR)
            for (int64_t j = 0; j < n; j += NR)
                bf16_block(m, n, i, j, kp, pa, ars, aqs, pb + j, np, beta, c, ldc);
        return;
    }
    /* else a panel of B (kp x 32 words) at a time, packed just before the blocks of
     * rows read it.  Packed whole first, a big B went out of L2 before its panels were
     * read: 784-1024-1024-10's [256 x 1024] by [1024 x 1024] ran at 272 GFLOP/s on one
     * thread, 340-370 by panels (by its transpose: 267-287 -> 382) */
    bool packing = !tb && k * n <= PACKING_MAX_B;
    for (int64_t j = 0; j < n; j += NR) {
        int64_t nr = n - j < NR ? n - j : NR, i = 0;
        if (packing && m > 0) { /* the first block of rows packs the panel */
            int mr = m < MR ? (int)m : MR;
            if (mr == MR)
                bf16_kernel_packing_full((int)nr, kp, pa, ars, aqs, pb, b + j, ldb, k, beta, c + j,
                                         ldc);
            else
                bf16_kernel_(mr, (int)nr, kp, pa, ars, aqs, pb, NR, true, b + j, ldb, k, beta,
                             c + j, ldc);
            i = MR;
        } else {
            bf16_pack_b(tb, nr, k, tb ? b + j * ldb : b + j, ldb, pb, NR);
        }
        for (; i < m; i += MR)
            bf16_block(m, n, i, j, kp, pa, ars, aqs, pb, NR, beta, c, ldc);
    }
}

/* C (m x n, row stride ldc) = pc^T (pc: n x m) + beta C (beta 0: C is not read). */
static void store_transposed(int64_t m, int64_t n, const float *pc, float beta, float *c,
                             int64_t ldc)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            c[i * ldc + j] = beta != 0 ? pc[j * m + i] + beta * c[i * ldc + j] : pc[j * m + i];
}

/* A narrow C (n <= NARROW_N, m >= NARROW_MIN_M: a 10-class layer's logits, its weight
 * gradient) fills a third of each block's 32 columns; its transpose C^T = op(B)^T
 * op(A)^T has n rows and m columns, 32 to a block: computed into scratch, then
 * written transposed into C (f32_gemm_own, bf16_gemm_native). */
enum { NARROW_N = 16, NARROW_MIN_M = 32 }; /* m = 16 is slower transposed (0.53 -> 0.57 us) */

/* The words of scratch bf16_gemm_packed takes for B's pairs. */
static size_t bf16_b_words(int64_t n, int64_t k, int64_t ldc)
{
    return (size_t)((k + 1) / 2 * (rows_first(n, k, ldc) ? (n + NR - 1) / NR * NR : NR));
}
#endif

static void plain_sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, 1, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void bf16_gemm_native(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
#ifdef HAVE_KERNELS
    int64_t kp = (k + 1) / 2;
    if (k > 0 && n <= NARROW_N && m >= NARROW_MIN_M) { /* see NARROW_N */
        size_t abytes = ((size_t)(n * kp) * 4 + 63) & ~(size_t)63,
               bbytes = (bf16_b_words(m, k, m) * 4 + 63) & ~(size_t)63;
        uint32_t *pa = scratch(abytes + bbytes + (size_t)(m * n) * sizeof(float));
        if (pa) {
            float *pc = (float *)((char *)pa + abytes + bbytes);
            bf16_gemm_packed(!tb, !ta, n, m, k, b, ldb, a, lda, 0, pc, m, pa,
                             (uint32_t *)((char *)pa + abytes));
            store_transposed(m, n, pc, beta, c, ldc);
            return;
        }
    }
    size_t abytes = ((size_t)(m * kp) * 4 + 63) & ~(size_t)63;
    uint32_t *pa = scratch(abytes + bf16_b_words(n, k, ldc) * 4);
    if (pa) {
        bf16_gemm_packed(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc, pa,
                         (uint32_t *)((char *)pa + abytes));
        return;
    }
#endif
    plain_sgemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

/* rows x cols floats (row stride ld) rounded into out (row stride cols), in vector
 * lanes (a scalar call per value made emulated products 3-5x slower than f32 ones). */
VECTOR_CLONES static void round_copy(const float *x, int64_t rows, int64_t cols, int64_t ld,
                                     float *out)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            uint32_t u;
            memcpy(&u, x + i * ld + j, 4);
            u = bf16_bits(u);
            memcpy(out + i * cols + j, &u, 4);
        }
}

void bf16_gemm_emulated(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    float *ra = thread_scratch(SCRATCH_ROUND, (size_t)(m * k + k * n) * sizeof(float));
    if (!ra) {
        plain_sgemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    float *rb = ra + m * k;
    /* as stored: A is m x k (k x m when ta), B is k x n (n x k when tb) */
    round_copy(a, ta ? k : m, ta ? m : k, lda, ra);
    round_copy(b, tb ? n : k, tb ? k : n, ldb, rb);
    /* the f32 product of the rounded copies as precision = f32 would run it: on a CPU
     * with AVX-512 but not its BF16 instructions, the own kernels (OpenBLAS there made
     * bf16 slower than f32: ... ) */
    if (f32_own())
        f32_gemm_own(ta, tb, m, n, k, ra, ta ? m : k, rb, tb ? k : n, beta, c, ldc);
    else
        plain_sgemm(ta, tb, m, n, k, ra, ta ? m : k, rb, tb ? k : n, beta, c, ldc);
}

void f32_gemm_own(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
#ifdef HAVE_KERNELS
    int path = f32_path();
    if (path == 1 && f32_gemm_avx2(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc))
        return;
    if (path != 2) { /* none, or a product the AVX2 kernels leave to OpenBLAS */
        plain_sgemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    if (k > 0 && n <= NARROW_N && m >= NARROW_MIN_M) {
        size_t pbytes = ((size_t)k * NR * sizeof(float) + 63) & ~(size_t)63;
        float *pb = scratch(pbytes + (size_t)(m * n) * sizeof(float));
        if (pb) {
            float *pc = (float *)((char *)pb + pbytes);
            f32_gemm_panels(!tb, !ta, n, m, k, b, ldb, a, lda, 0, pc, m, pb);
            store_transposed(m, n, pc, beta, c, ldc);
            return;
        }
    }
    /* (all of B packed: a bound on the scratch it takes) */
    if (k > 0 && rows_first(n, k, ldc) &&
        k * ((n + NR - 1) / NR * NR) * (int64_t)sizeof(float) <= ROWS_MAX_B) {
        float *pb = scratch(ROWS_MAX_B);
        if (pb) {
            f32_gemm_rows(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc, pb);
            return;
        }
    }
    float *pb = scratch((size_t)(k > 0 ? k : 1) * NR * sizeof(float));
    if (pb) {
        f32_gemm_panels(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc, pb);
        return;
    }
#endif
    plain_sgemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

void f32_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
               float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c,
               int ldc)
{
    if (f32_own() && alpha == 1 && order == CblasRowMajor)
        f32_gemm_own(ta == CblasTrans, tb == CblasTrans, m, n, k, a, lda, b, ldb, beta, c, ldc);
    else
        cblas_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* nnd_bf16_native() and nnd_own_sgemm(), asked once: the answers are the same on
 * every thread, so a race is harmless */
int bf16_native(void)
{
    static int native = -1;
    if (native < 0)
        native = nnd_bf16_native();
    return native;
}

int f32_own(void)
{
    static int own = -1;
    if (own < 0)
        own = nnd_own_sgemm();
    return own;
}

void bf16_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
                float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c,
                int ldc)
{
    (void)order; /* row-major, alpha 1: how blas.c calls it */
    (void)alpha;
    if (bf16_native())
        bf16_gemm_native(ta == CblasTrans, tb == CblasTrans, m, n, k, a, lda, b, ldb, beta, c, ldc);
    else
        bf16_gemm_emulated(ta == CblasTrans, tb == CblasTrans, m, n, k, a, lda, b, ldb, beta, c,
                           ldc);
}

/* y = op(A) x as a product of one row: x^T (1 x K) @ op(A)^T. */
void bf16_sgemv(CBLAS_ORDER order, CBLAS_TRANSPOSE t, int rows, int cols, float alpha,
                const float *a, int lda, const float *x, int incx, float beta, float *y, int incy)
{
    (void)incy; /* 1: how blas.c calls it */
    int trans = t == CblasTrans;
    int n = trans ? cols : rows, k = trans ? rows : cols;
    /* x with a stride is the one column of a transposed k x 1 matrix */
    bf16_sgemm(order, incx == 1 ? CblasNoTrans : CblasTrans, trans ? CblasNoTrans : CblasTrans, 1,
               n, k, alpha, x, incx == 1 ? k : incx, a, lda, beta, y, n);
}

/* ---- the paths in AVX-512 or AVX2 lanes: 2x2 max pooling, u8 conversion ---- */

/* The widest vector path the CPU has: 2 AVX-512 (F, VL), 1 AVX2, 0 none. */
static int vector_cpu(void)
{
#ifdef HAVE_KERNELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
        return 2;
    if (__builtin_cpu_supports("avx2"))
        return 1;
#endif
    return 0;
}

static int vector_cap = 2; /* vector_path: for tests */

/* The own f32 kernels to run: 2 AVX-512, 1 AVX2, 0 none (OpenBLAS), within vector_cap. */
static int f32_path(void)
{
    int own = f32_own();
    return own < vector_cap ? own : vector_cap;
}

int vector_path(int widest)
{
    vector_cap = widest;
    int have = vector_cpu();
    return have < widest ? have : widest;
}

/* The path to take: the CPU's, asked once, within vector_cap. */
static int vector_use(void)
{
    static atomic_int have = -1;
    int h = atomic_load_explicit(&have, memory_order_relaxed);
    if (h < 0) {
        h = vector_cpu();
        atomic_store_explicit(&have, h, memory_order_relaxed);
    }
    return h < vector_cap ? h : vector_cap;
}

#ifdef HAVE_KERNELS
#define TARGET_AVX2 __attribute__((target("avx2")))

/* Sixteen values a step: bytes widened to i32, to f64 in two halves, times scale,
 * rounded to f32 (the plain loop's two roundings, so the same values). */
TARGET_F32 static void u8_to_f32_512(const unsigned char *src, int64_t n, double scale, float *dst)
{
    const __m512d sc = _mm512_set1_pd(scale);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        __m512d lo = _mm512_cvtepi32_pd(_mm512_castsi512_si256(w));
        __m512d hi = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(w, 1));
        _mm256_storeu_ps(dst + i, _mm512_cvtpd_ps(_mm512_mul_pd(lo, sc)));
        _mm256_storeu_ps(dst + i + 8, _mm512_cvtpd_ps(_mm512_mul_pd(hi, sc)));
    }
    for (; i < n; i++)
        dst[i] = (float)((double)src[i] * scale);
}

/* The same in f32 lanes, 2.9x as fast (64 Fashion-MNIST images: 7.4 -> 2.6 us on
 * Zen 4): v * lo rounded, then v * hi plus that in one fused multiply-add (hi, lo:
 * the scale as the sum of two floats), where byte_scale says that gives the plain
 * formula's values. */
TARGET_F32 static void u8_to_f32_512_fma(const unsigned char *src, int64_t n, float hi, float lo,
                                         double scale, float *dst)
{
    const __m512 h = _mm512_set1_ps(hi), l = _mm512_set1_ps(lo);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        __m512 v = _mm512_cvtepi32_ps(w);
        _mm512_storeu_ps(dst + i, _mm512_fmadd_ps(v, h, _mm512_mul_ps(v, l)));
    }
    for (; i < n; i++)
        dst[i] = (float)((double)src[i] * scale);
}

/* Eight values a step, the same way in AVX2 lanes. */
TARGET_AVX2 static void u8_to_f32_avx2(const unsigned char *src, int64_t n, double scale,
                                       float *dst)
{
    const __m256d sc = _mm256_set1_pd(scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(src + i)));
        __m256d lo = _mm256_cvtepi32_pd(_mm256_castsi256_si128(w));
        __m256d hi = _mm256_cvtepi32_pd(_mm256_extracti128_si256(w, 1));
        _mm_storeu_ps(dst + i, _mm256_cvtpd_ps(_mm256_mul_pd(lo, sc)));
        _mm_storeu_ps(dst + i + 4, _mm256_cvtpd_ps(_mm256_mul_pd(hi, sc)));
    }
    for (; i < n; i++)
        dst[i] = (float)((double)src[i] * scale);
}

/* u8_to_f32_512_fma in AVX2 lanes, where the CPU has FMA too. */
__attribute__((target("avx2,fma"))) static void u8_to_f32_avx2_fma(const unsigned char *src,
                                                                   int64_t n, float hi, float lo,
                                                                   double scale, float *dst)
{
    const __m256 h = _mm256_set1_ps(hi), l = _mm256_set1_ps(lo);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(src + i)));
        __m256 v = _mm256_cvtepi32_ps(w);
        _mm256_storeu_ps(dst + i, _mm256_fmadd_ps(v, h, _mm256_mul_ps(v, l)));
    }
    for (; i < n; i++)
        dst[i] = (float)((double)src[i] * scale);
}

/* Whether fl(v * hi + fl(v * lo)) equals (float)((double)v * scale) for every byte
 * v, with hi = (float)scale and lo = (float)(scale - hi) (set here): true for 1/255,
 * 1/3, 0.1 and nearly every other scale (1 in 2 million random ones is not), so
 * u8_to_f32 checks the 256 values once per scale and thread and computes in f32
 * where they all agree. */
static bool byte_scale(double scale, float *hi, float *lo)
{
    static _Thread_local double last = NAN;
    static _Thread_local float last_hi, last_lo;
    static _Thread_local bool last_ok;
    if (scale != last) {
        float h = (float)scale, l = (float)(scale - (double)h);
        bool ok = isfinite(scale);
        for (int v = 0; v < 256 && ok; v++)
            ok = fmaf((float)v, h, (float)v * l) == (float)((double)v * scale);
        last = scale, last_hi = h, last_lo = l, last_ok = ok;
    }
    *hi = last_hi, *lo = last_lo;
    return last_ok;
}
#endif

void u8_to_f32(const unsigned char *src, int64_t n, double scale, float *dst)
{
    int use = vector_use();
#ifdef HAVE_KERNELS
    if (use == 2) {
        float hi, lo;
        if (byte_scale(scale, &hi, &lo))
            u8_to_f32_512_fma(src, n, hi, lo, scale, dst);
        else
            u8_to_f32_512(src, n, scale, dst);
        return;
    }
    if (use == 1) {
        float hi, lo;
        if (__builtin_cpu_supports("fma") && byte_scale(scale, &hi, &lo))
            u8_to_f32_avx2_fma(src, n, hi, lo, scale, dst);
        else
            u8_to_f32_avx2(src, n, scale, dst);
        return;
    }
#endif
    (void)use;
    for (int64_t i = 0; i < n; i++)
        dst[i] = (float)((double)src[i] * scale);
}

/* ---- 2x2 max pooling, stride 2, no padding, in AVX-512 (or AVX2) lanes ----
 * Sixteen windows at a time: the two rows' 32 values are split into the windows'
 * four corners a, b (row 0) and c, d (row 1) by permutes, and the picks are masks.
 * The same picks as conv.c's maxpool_2x2 (its pick4): the first maximum in the order
 * a, b, c, d, a NaN beating every number and the first NaN winning; a later corner
 * wins when !(v <= m) and m is not NaN. */

#ifdef HAVE_KERNELS
/* The windows' corners from two rows of 32 values: evens and odds. */
TARGET_F32 static void split_pairs(const float *row, __mmask16 m0, __mmask16 m1, __m512 *even,
                                   __m512 *odd)
{
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
    __m512 lo = _mm512_maskz_loadu_ps(m0, row), hi = _mm512_maskz_loadu_ps(m1, row + 16);
    *even = _mm512_permutex2var_ps(lo, ie, hi);
    *odd = _mm512_permutex2var_ps(lo, io, hi);
}

/* Whether corner v beats the maximum m so far. */
TARGET_F32 static __mmask16 beats(__m512 v, __m512 m)
{
    return _mm512_cmp_ps_mask(v, m, _CMP_NLE_UQ) & _mm512_cmp_ps_mask(m, m, _CMP_ORD_Q);
}

/* Stores e (evens) and o (odds) interleaved to row[0..32), as the masks allow. */
TARGET_F32 static void store_pairs(float *row, __mmask16 m0, __mmask16 m1, __m512 e, __m512 o)
{
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    _mm512_mask_storeu_ps(row, m0, _mm512_permutex2var_ps(e, lo, o));
    _mm512_mask_storeu_ps(row + 16, m1, _mm512_permutex2var_ps(e, hi, o));
}

TARGET_F32 static void maxpool_2x2_512(const NndPoolShape *s, const float *xp, const float *in,
                                       float *out, int scatter)
{
    const int64_t w = s->w, ow = s->ow;
    if (scatter && (s->h % 2 || w % 2))
        memset(out, 0, (size_t)(s->h * w) * sizeof(float)); /* an odd edge is never picked */
    for (int64_t i = 0; i < s->oh; i++) {
        const float *x0 = xp + 2 * i * w, *x1 = x0 + w;
        for (int64_t j = 0; j < ow; j += 16) {
            int64_t n = ow - j < 16 ? ow - j : 16; /* windows */
            __mmask16 mw = (__mmask16)((1u << n) - 1);
            __mmask16 m0 = (__mmask16)(n >= 8 ? 0xffff : (1u << (2 * n)) - 1);
            __mmask16 m1 = (__mmask16)(n <= 8 ? 0 : (1u << (2 * (n - 8))) - 1);
            __m512 a, b, c, d;
            split_pairs(x0 + 2 * j, m0, m1, &a, &b);
            split_pairs(x1 + 2 * j, m0, m1, &c, &d);
            __mmask16 tb = beats(b, a);
            __m512 m = _mm512_mask_mov_ps(a, tb, b);
            __mmask16 tc = beats(c, m);
            m = _mm512_mask_mov_ps(m, tc, c);
            __mmask16 td = beats(d, m);
            m = _mm512_mask_mov_ps(m, td, d);
            /* the picked corner: d if td, else c if tc, else b if tb, else a */
            __mmask16 pd = td, pc = tc & ~td, pb = tb & ~tc & ~td, pa = ~(tb | tc | td);
            if (scatter) {
                __m512 v = _mm512_maskz_loadu_ps(mw, in + i * ow + j);
                float *o0 = out + 2 * i * w + 2 * j;
                store_pairs(o0, m0, m1, _mm512_maskz_mov_ps(pa, v), _mm512_maskz_mov_ps(pb, v));
                store_pairs(o0 + w, m0, m1, _mm512_maskz_mov_ps(pc, v), _mm512_maskz_mov_ps(pd, v));
            } else if (in == xp) { /* max_pool2d itself: the maximum */
                _mm512_mask_storeu_ps(out + i * ow + j, mw, m);
            } else {
                __m512 va, vb, vc, vd;
                split_pairs(in + 2 * i * w + 2 * j, m0, m1, &va, &vb);
                split_pairs(in + (2 * i + 1) * w + 2 * j, m0, m1, &vc, &vd);
                __m512 r = _mm512_mask_mov_ps(va, pb, vb);
                r = _mm512_mask_mov_ps(r, pc, vc);
                r = _mm512_mask_mov_ps(r, pd, vd);
                _mm512_mask_storeu_ps(out + i * ow + j, mw, r);
            }
        }
    }
}
#endif

/* The same in AVX2 lanes, eight windows at a time (CPUs without AVX-512). */
#ifdef HAVE_KERNELS

/* The 16 floats at row (the lanes of masks m0 and m1) as their even and odd ones. */
TARGET_AVX2 static void split_pairs8(const float *row, __m256i m0, __m256i m1, __m256 *even,
                                     __m256 *odd)
{
    __m256 lo = _mm256_maskload_ps(row, m0), hi = _mm256_maskload_ps(row + 8, m1);
    /* per 128-bit lane [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6]; then the 64-bit blocks in
     * the order 0 2 1 3 */
    __m256 e = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    __m256 o = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

TARGET_AVX2 static __m256 beats8(__m256 v, __m256 m)
{
    return _mm256_and_ps(_mm256_cmp_ps(v, m, _CMP_NLE_UQ), _mm256_cmp_ps(m, m, _CMP_ORD_Q));
}

TARGET_AVX2 static void store_pairs8(float *row, __m256i m0, __m256i m1, __m256 e, __m256 o)
{
    __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);
    _mm256_maskstore_ps(row, m0, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_maskstore_ps(row + 8, m1, _mm256_permute2f128_ps(lo, hi, 0x31));
}

TARGET_AVX2 static void maxpool_2x2_avx2(const NndPoolShape *s, const float *xp, const float *in,
                                         float *out, int scatter)
{
    const int64_t w = s->w, ow = s->ow;
    if (scatter && (s->h % 2 || w % 2))
        memset(out, 0, (size_t)(s->h * w) * sizeof(float)); /* an odd edge is never picked */
    for (int64_t i = 0; i < s->oh; i++) {
        const float *x0 = xp + 2 * i * w, *x1 = x0 + w;
        for (int64_t j = 0; j < ow; j += 8) {
            int64_t n = ow - j < 8 ? ow - j : 8; /* windows */
            __m256i mw = lanes8(n), m0 = lanes8(2 * n), m1 = lanes8(2 * n - 8);
            __m256 a, b, c, d;
            split_pairs8(x0 + 2 * j, m0, m1, &a, &b);
            split_pairs8(x1 + 2 * j, m0, m1, &c, &d);
            __m256 tb = beats8(b, a);
            __m256 m = _mm256_blendv_ps(a, b, tb);
            __m256 tc = beats8(c, m);
            m = _mm256_blendv_ps(m, c, tc);
            __m256 td = beats8(d, m);
            m = _mm256_blendv_ps(m, d, td);
            __m256 pd = td, pc = _mm256_andnot_ps(td, tc);
            __m256 pb = _mm256_andnot_ps(_mm256_or_ps(tc, td), tb);
            if (scatter) {
                __m256 v = _mm256_maskload_ps(in + i * ow + j, mw);
                __m256 pa = _mm256_andnot_ps(_mm256_or_ps(tb, _mm256_or_ps(tc, td)), v);
                float *o0 = out + 2 * i * w + 2 * j;
                store_pairs8(o0, m0, m1, pa, _mm256_and_ps(pb, v));
                store_pairs8(o0 + w, m0, m1, _mm256_and_ps(pc, v), _mm256_and_ps(pd, v));
            } else if (in == xp) { /* max_pool2d itself: the maximum */
                _mm256_maskstore_ps(out + i * ow + j, mw, m);
            } else {
                __m256 va, vb, vc, vd;
                split_pairs8(in + 2 * i * w + 2 * j, m0, m1, &va, &vb);
                split_pairs8(in + (2 * i + 1) * w + 2 * j, m0, m1, &vc, &vd);
                __m256 r = _mm256_blendv_ps(va, vb, pb);
                r = _mm256_blendv_ps(r, vc, pc);
                r = _mm256_blendv_ps(r, vd, pd);
                _mm256_maskstore_ps(out + i * ow + j, mw, r);
            }
        }
    }
}
#endif

bool maxpool_2x2_own(const NndPoolShape *s, const float *xp, const float *in, float *out,
                     int scatter)
{
    int use = vector_use();
#ifdef HAVE_KERNELS
    if (use == 2) {
        maxpool_2x2_512(s, xp, in, out, scatter);
        return true;
    }
    if (use == 1) {
        maxpool_2x2_avx2(s, xp, in, out, scatter);
        return true;
    }
#endif
    (void)use, (void)s, (void)xp, (void)in, (void)out, (void)scatter;
    return false;
}
