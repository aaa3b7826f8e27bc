/* histogram: the summary a TensorBoard histogram record holds, of a tensor's values.
 *
 * Two passes over blocks of BLOCK values, the blocks spread over the pool: the first
 * finds the range, the count and the sums of the finite values, the second counts
 * them into NND_HIST_BUCKETS equal buckets over that range.  Each block keeps its own
 * sums, added in block order afterwards, so the result does not depend on the thread
 * count.  The loops over a block compute in double, in branch-free lanes (non-finite
 * values masked, not skipped) that the compiler turns into vector code; target_clones
 * also builds them for AVX2 and AVX-512, chosen when the library loads.  Counting is
 * the one scalar part: the bucket indices of a block go to a byte buffer, then into
 * four partial tables so that neighbours in one bucket do not wait for each other's
 * increment.
 *
 * f32 values on a CPU with AVX-512 (BW, DQ, VL) take a path written in intrinsics:
 * the range in f32 lanes and the sums in f64 lanes; the bucket of each value estimated
 * in f32 lanes and corrected against the f32 edges of the f64 formula's buckets (so
 * the counts are the generic path's exactly), packed to bytes in registers; the
 * counting as byte compares, 64 indices and ten buckets at a time, into byte counters
 * (a block's 32 vectors cannot overflow them).  On 100k weights, 59 -> 35 us on one
 * thread, 33 -> 22 us on two. */
#include "nnd_runtime.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "histogram.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_AVX512 1
#define TARGET_512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#endif

enum {
    BLOCK = 2048, /* values: 16 KiB of doubles */
    LANES = 16,
    TRASH = NND_HIST_BUCKETS, /* the bucket index of a non-finite value */
    GRAIN = 8, /* blocks a thread takes at least: small tensors stay on the caller */
};

#if defined(__GNUC__) && defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef VECTOR_CLONES
#define VECTOR_CLONES
#endif

typedef struct BlockStats {
    double lo, hi, sum, sq;
    int64_t num;
    uint32_t count[NND_HIST_BUCKETS];
} BlockStats;

typedef struct Job {
    const void *data;
    NndDType dtype;
    int64_t n;
    BlockStats *blocks;
    double lo, scale; /* the second pass: bucket = (v - lo) * scale */
    bool vector; /* f32 on AVX-512: the intrinsics path */
    /* that path's second pass: edge[b] (1 <= b < NND_HIST_BUCKETS) is the least f32
     * whose (v - lo) * scale is at least b; edge[0] -inf, the rest +inf */
    float edge[32];
} Job;

/* block_sums_T: range, count and sums of the finite values among x[0..m);
 * block_buckets_T: the bucket of each of x[0..m) into b (TRASH for a non-finite value).
 * One pair for float and one for double data, computing in double. */
#define BLOCK_FUNCTIONS(T)                                                                         \
    VECTOR_CLONES static void block_sums_##T(const T *x, int m, BlockStats *s)                     \
    {                                                                                              \
        double lo[LANES], hi[LANES], sum[LANES], sq[LANES];                                        \
        int64_t num[LANES];                                                                        \
        for (int k = 0; k < LANES; k++) {                                                          \
            lo[k] = INFINITY;                                                                      \
            hi[k] = -INFINITY;                                                                     \
            sum[k] = sq[k] = 0;                                                                    \
            num[k] = 0;                                                                            \
        }                                                                                          \
        int i = 0;                                                                                 \
        for (; i + LANES <= m; i += LANES)                                                         \
            for (int k = 0; k < LANES; k++) {                                                      \
                double v = x[i + k];                                                               \
                int fin = fabs(v) <= DBL_MAX; /* false for infinities and NaN */                   \
                double vl = fin ? v : INFINITY, vh = fin ? v : -INFINITY, v0 = fin ? v : 0;        \
                lo[k] = vl < lo[k] ? vl : lo[k];                                                   \
                hi[k] = vh > hi[k] ? vh : hi[k];                                                   \
                sum[k] += v0;                                                                      \
                sq[k] += v0 * v0;                                                                  \
                num[k] += fin;                                                                     \
            }                                                                                      \
        for (; i < m; i++) { /* the tail into lane 0 */                                            \
            double v = x[i];                                                                       \
            if (fabs(v) <= DBL_MAX) {                                                              \
                lo[0] = v < lo[0] ? v : lo[0];                                                     \
                hi[0] = v > hi[0] ? v : hi[0];                                                     \
                sum[0] += v;                                                                       \
                sq[0] += v * v;                                                                    \
                num[0]++;                                                                          \
            }                                                                                      \
        }                                                                                          \
        *s = (BlockStats){.lo = INFINITY, .hi = -INFINITY};                                        \
        for (int k = 0; k < LANES; k++) {                                                          \
            s->lo = lo[k] < s->lo ? lo[k] : s->lo;                                                 \
            s->hi = hi[k] > s->hi ? hi[k] : s->hi;                                                 \
            s->sum += sum[k];                                                                      \
            s->sq += sq[k];                                                                        \
            s->num += num[k];                                                                      \
        }                                                                                          \
    }                                                                                              \
    VECTOR_CLONES static void block_buckets_##T(const T *x, int m, double lo, double scale,        \
                                                unsigned char *b)                                  \
    {                                                                                              \
        for (int i = 0; i < m; i++) {                                                              \
            double v = x[i];                                                                       \
            double t = (v - lo) * scale; /* >= 0 for a finite v, as lo is the least */             \
            t = t < NND_HIST_BUCKETS - 1 ? t : NND_HIST_BUCKETS - 1;                               \
            t = fabs(v) <= DBL_MAX ? t : TRASH;                                                    \
            b[i] = (unsigned char)(int)t;                                                          \
        }                                                                                          \
    }

BLOCK_FUNCTIONS(float)
BLOCK_FUNCTIONS(double)

#ifdef HAVE_AVX512
/* The f32 lanes of x[i..i+16) below m, as a mask. */
TARGET_512 static __mmask16 tail_mask(int i, int m)
{
    return m - i >= 16 ? (__mmask16)0xffff : m <= i ? 0 : (__mmask16)((1u << (m - i)) - 1);
}

TARGET_512 static void block_sums_f32_512(const float *x, int m, BlockStats *s)
{
    const __m512 big = _mm512_set1_ps(FLT_MAX);
    __m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
    int64_t num = 0;
    for (int i = 0; i < m; i += 16) {
        __mmask16 in = tail_mask(i, m);
        __m512 v = _mm512_maskz_loadu_ps(in, x + i);
        /* finite: |v| <= FLT_MAX, false for infinities and NaN */
        __mmask16 f = _mm512_mask_cmp_ps_mask(in, _mm512_abs_ps(v), big, _CMP_LE_OQ);
        lo = _mm512_mask_min_ps(lo, f, lo, v);
        hi = _mm512_mask_max_ps(hi, f, hi, v);
        __m512d d0 = _mm512_maskz_cvtps_pd((__mmask8)f, _mm512_castps512_ps256(v));
        __m512d d1 = _mm512_maskz_cvtps_pd((__mmask8)(f >> 8), _mm512_extractf32x8_ps(v, 1));
        s0 = _mm512_add_pd(s0, d0);
        s1 = _mm512_add_pd(s1, d1);
        q0 = _mm512_fmadd_pd(d0, d0, q0);
        q1 = _mm512_fmadd_pd(d1, d1, q1);
        num += __builtin_popcount(f);
    }
    *s = (BlockStats){.lo = _mm512_reduce_min_ps(lo),
                      .hi = _mm512_reduce_max_ps(hi),
                      .sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)),
                      .sq = _mm512_reduce_add_pd(_mm512_add_pd(q0, q1)),
                      .num = num};
}

/* The buckets of 16 values of x from i (those at m or beyond: TRASH) in i32 lanes.
 * The bucket is first estimated in f32 lanes, within one of the f64 formula's, then
 * moved to the neighbour where the value lies across edge[] (Job.edge). */
TARGET_512 static __m512i buckets16(const float *x, int i, int m, const Job *j)
{
    const __m512 lo = _mm512_set1_ps((float)j->lo), scale = _mm512_set1_ps((float)j->scale),
                 top = _mm512_set1_ps(NND_HIST_BUCKETS - 1);
    const __m512 e0 = _mm512_loadu_ps(j->edge), e1 = _mm512_loadu_ps(j->edge + 16);
    const __m512i one = _mm512_set1_epi32(1);
    __mmask16 in = tail_mask(i, m);
    __m512 v = _mm512_maskz_loadu_ps(in, x + i);
    /* finite (|v| <= FLT_MAX: false for infinities and NaN) and in the block */
    __mmask16 f =
        _mm512_mask_cmp_ps_mask(in, _mm512_abs_ps(v), _mm512_set1_ps(FLT_MAX), _CMP_LE_OQ);
    __m512 t = _mm512_min_ps(_mm512_mul_ps(_mm512_sub_ps(v, lo), scale), top);
    __m512i k = _mm512_cvttps_epi32(t), k1 = _mm512_add_epi32(k, one);
    __mmask16 down = _mm512_cmp_ps_mask(v, _mm512_permutex2var_ps(e0, k, e1), _CMP_LT_OQ);
    __mmask16 up = _mm512_cmp_ps_mask(v, _mm512_permutex2var_ps(e0, k1, e1), _CMP_GE_OQ);
    k = _mm512_mask_sub_epi32(k, down, k, one);
    k = _mm512_mask_add_epi32(k, up, k, one);
    return _mm512_mask_mov_epi32(_mm512_set1_epi32(TRASH), f, k);
}

/* The buckets of x[0..m) as bytes into b, 64 a vector (their order within a vector
 * is the packing instructions', which counting does not mind), TRASH for a
 * non-finite value and for the padding of the last vector; returns the vectors.
 * (Packed in registers: VPMOVDB to memory is slow on AMD's cores.) */
TARGET_512 static int block_buckets_f32_512(const float *x, int m, const Job *j, unsigned char *b)
{
    int vectors = (m + 63) / 64;
    for (int q = 0; q < vectors; q++) {
        int i = 64 * q;
        __m512i w0 = _mm512_packus_epi32(buckets16(x, i, m, j), buckets16(x, i + 16, m, j));
        __m512i w1 = _mm512_packus_epi32(buckets16(x, i + 32, m, j), buckets16(x, i + 48, m, j));
        _mm512_store_si512(b + i, _mm512_packus_epi16(w0, w1));
    }
    return vectors;
}

/* Counts the indices of b (vectors of 64) into count: for ten buckets at a time, a
 * byte counter per lane and bucket, summed across lanes at the end. */
TARGET_512 static void count_buckets_512(const unsigned char *b, int vectors, uint32_t *count)
{
    enum { GROUP = 10 };
    _Static_assert(NND_HIST_BUCKETS % GROUP == 0, "buckets in whole groups");
    _Static_assert(BLOCK / 64 < 256, "byte counters");
    const __m512i one = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
    for (int g = 0; g < NND_HIST_BUCKETS; g += GROUP) {
        __m512i acc[GROUP], key[GROUP];
        _Pragma("GCC unroll 16") for (int k = 0; k < GROUP; k++)
        {
            acc[k] = zero;
            key[k] = _mm512_set1_epi8((char)(g + k));
        }
        for (int i = 0; i < vectors; i++) {
            __m512i v = _mm512_loadu_si512(b + 64 * i);
            _Pragma("GCC unroll 16") for (int k = 0; k < GROUP; k++) acc[k] =
                _mm512_mask_add_epi8(acc[k], _mm512_cmpeq_epi8_mask(v, key[k]), acc[k], one);
        }
        _Pragma("GCC unroll 16") for (int k = 0; k < GROUP; k++) count[g + k] =
            (uint32_t)_mm512_reduce_add_epi64(_mm512_sad_epu8(acc[k], zero));
    }
}
#endif

static bool generic_only; /* histogram_vector_path(false): for tests */

/* f32 on a CPU with AVX-512 F, BW, DQ and VL: the path above. */
static bool avx512(void)
{
#ifdef HAVE_AVX512
    __builtin_cpu_init();
    return !generic_only && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
}

bool histogram_vector_path(bool on)
{
    generic_only = !on;
    return avx512();
}

static void count_buckets(const unsigned char *b, int m, uint32_t *count)
{
    uint32_t part[4][TRASH + 1] = {{0}};
    int i = 0;
    for (; i + 4 <= m; i += 4) {
        part[0][b[i]]++;
        part[1][b[i + 1]]++;
        part[2][b[i + 2]]++;
        part[3][b[i + 3]]++;
    }
    for (; i < m; i++)
        part[0][b[i]]++;
    for (int k = 0; k < NND_HIST_BUCKETS; k++)
        count[k] = part[0][k] + part[1][k] + part[2][k] + part[3][k];
}

static void first_pass(void *ctx, int64_t begin, int64_t end)
{
    Job *j = ctx;
    for (int64_t k = begin; k < end; k++) {
        int64_t i0 = k * BLOCK;
        int m = (int)(j->n - i0 < BLOCK ? j->n - i0 : BLOCK);
        if (j->dtype == NND_F64)
            block_sums_double((const double *)j->data + i0, m, &j->blocks[k]);
#ifdef HAVE_AVX512
        else if (j->vector)
            block_sums_f32_512((const float *)j->data + i0, m, &j->blocks[k]);
#endif
        else
            block_sums_float((const float *)j->data + i0, m, &j->blocks[k]);
    }
}

static void second_pass(void *ctx, int64_t begin, int64_t end)
{
    Job *j = ctx;
    _Alignas(64) unsigned char b[BLOCK];
    for (int64_t k = begin; k < end; k++) {
        int64_t i0 = k * BLOCK;
        int m = (int)(j->n - i0 < BLOCK ? j->n - i0 : BLOCK);
#ifdef HAVE_AVX512
        if (j->vector) {
            int vectors = block_buckets_f32_512((const float *)j->data + i0, m, j, b);
            count_buckets_512(b, vectors, j->blocks[k].count);
            continue;
        }
#endif
        if (j->dtype == NND_F64)
            block_buckets_double((const double *)j->data + i0, m, j->lo, j->scale, b);
        else
            block_buckets_float((const float *)j->data + i0, m, j->lo, j->scale, b);
        count_buckets(b, m, j->blocks[k].count);
    }
}

/* Whether v's bucket in the f64 formula reaches b. */
static bool reaches(const Job *j, float v, int b) { return ((double)v - j->lo) * j->scale >= b; }

/* f32 values in the order of their bits as integers (-0 just before +0). */
static int64_t order_key(float f)
{
    int32_t i;
    memcpy(&i, &f, 4);
    return i < 0 ? -(int64_t)(i & 0x7fffffff) - 1 : i;
}

static float from_key(int64_t k)
{
    int32_t i = k < 0 ? (int32_t)((-(k + 1)) | INT32_MIN) : (int32_t)k;
    float f;
    memcpy(&f, &i, 4);
    return f;
}

/* The least f32 in (lo, hi] that reaches bucket b ((v - lo) * scale, each step
 * rounded, never decreases as v grows), or +inf: from the estimate lo + b / scale,
 * steps of 1, 2, 4, ... f32 away until the edge is bracketed, then bisection.  (The
 * estimate is usually one f32 off; near 0, where f32 are dense, it can be far.) */
static float edge_of(const Job *j, int b, float hi)
{
    int64_t lo_k = order_key((float)j->lo), hi_k = order_key(hi);
    int64_t k = order_key((float)(j->lo + b / j->scale));
    k = k < lo_k ? lo_k : k > hi_k ? hi_k : k;
    int64_t a, z, step = 1; /* a does not reach b (or is below lo), z does */
    if (reaches(j, from_key(k), b)) {
        z = k;
        for (a = k - 1; a > lo_k && reaches(j, from_key(a), b); step *= 2) {
            z = a;
            a = z - step > lo_k ? z - step : lo_k;
        }
    } else {
        a = k;
        for (z = k + 1; z <= hi_k && !reaches(j, from_key(z), b); step *= 2) {
            a = z;
            z = a + step < hi_k ? a + step : hi_k;
            if (a == hi_k)
                return INFINITY;
        }
        if (z > hi_k)
            return INFINITY;
    }
    while (z - a > 1) {
        int64_t mid = a + (z - a) / 2;
        if (reaches(j, from_key(mid), b))
            z = mid;
        else
            a = mid;
    }
    return from_key(z);
}

/* Job.edge for the f32 path.  False where f32 lanes cannot hold the estimate (a
 * range so small that scale is not an f32): the generic path then. */
static bool find_edges(Job *j, double hi)
{
    if (!(j->scale <= FLT_MAX))
        return false;
    j->edge[0] = -INFINITY;
    for (int b = 1; b < 32; b++)
        j->edge[b] = b < NND_HIST_BUCKETS && j->scale > 0 ? edge_of(j, b, (float)hi) : INFINITY;
    return true;
}

int nnd_histogram(NndPool *pool, const void *data, NndDType dtype, int64_t n, NndHistogram *h,
                  NndErr *err)
{
    if (dtype != NND_F32 && dtype != NND_F64)
        return nnd_err(err, "histogram: the values must be f32 or f64");
    int64_t nb = (n + BLOCK - 1) / BLOCK;
    Job j = {.data = data, .dtype = dtype, .n = n, .vector = dtype == NND_F32 && avx512()};
    BlockStats one;
    j.blocks = nb <= 1 ? &one : malloc((size_t)nb * sizeof *j.blocks);
    if (!j.blocks)
        return nnd_err(err, "out of memory");
    memset(h, 0, sizeof *h);
    h->min = INFINITY;
    h->max = -INFINITY;
    nnd_parallel_for(pool, first_pass, &j, nb, GRAIN);
    for (int64_t k = 0; k < nb; k++) {
        const BlockStats *s = &j.blocks[k];
        h->min = s->lo < h->min ? s->lo : h->min;
        h->max = s->hi > h->max ? s->hi : h->max;
        h->num += (double)s->num;
        h->sum += s->sum;
        h->sum_squares += s->sq;
    }
    if (h->num == 0)
        h->min = h->max = 0;
    double width = h->max > h->min ? (h->max - h->min) / NND_HIST_BUCKETS : 1;
    j.lo = h->min;
    j.scale = h->max > h->min ? 1 / width : 0;
    for (int b = 0; b < NND_HIST_BUCKETS; b++)
        h->limit[b] = b == NND_HIST_BUCKETS - 1 ? h->max : h->min + width * (b + 1);
    if (h->num > 0) {
        j.vector = j.vector && find_edges(&j, h->max);
        nnd_parallel_for(pool, second_pass, &j, nb, GRAIN);
        for (int64_t k = 0; k < nb; k++)
            for (int b = 0; b < NND_HIST_BUCKETS; b++)
                h->count[b] += j.blocks[k].count[b];
    }
    if (j.blocks != &one)
        free(j.blocks);
    return 0;
}
