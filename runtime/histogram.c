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
 * the range in f32 lanes and the sums in f64 lanes, without masks unless a block
 * holds a non-finite value; the bucket of each value estimated in f32 lanes, never
 * above the f64 formula's and at most one below it, and moved up against the f32
 * edges of the f64 formula's buckets (so the counts are the generic path's exactly);
 * each value a one-hot u32, counted by a positional popcount (count_f32_512).  On
 * 100k weights: 59 -> 35 us on one thread with byte compares, 16.5 us now.  On a CPU
 * with AVX2 but not AVX-512 the counting runs the same way in AVX2 lanes, each
 * value's bucket computed by the f64 formula itself (count_f32_256).
 *
 * nnd_histogram_ranged takes the range and sums from the caller (a training step
 * computes them beside the update) and counts in one pass, checking the range on the
 * way (the least and greatest value, and that every value was counted); where the
 * check fails, the two passes run.  100k weights: 11.6 us on one thread, 7.4 on two
 * (the two passes: 17.2 and 13.8); with AVX2 on a Zen 3, 42.9 and 25.5 (the generic
 * two passes: 244 and 120).  (On the Zen 4 of 2026-12-07, in its slower hours, the
 * one pass took 15.6 and 8.5 us, and 15.1 and 8.2 once the one-hot vectors were made
 * as the adder tree takes them.) */
#include "nnd_runtime.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "clones.h"
#include "histogram.h"
#include "lanes.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_AVX512 1
#define TARGET_512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#define TARGET_256 __attribute__((target("avx2")))
#endif

enum {
    BLOCK = 2048, /* values: 16 KiB of doubles */
    LANES = 16,
    TRASH = NND_HIST_BUCKETS, /* the bucket index of a non-finite value */
    GRAIN = 8, /* blocks a thread takes at least: small tensors stay on the caller */
};

typedef struct BlockStats {
    double lo, hi, sum, sq;
    int64_t num;
    uint64_t count[NND_HIST_BUCKETS];
} BlockStats;

typedef struct Job {
    const void *data;
    NndDType dtype;
    int64_t n;
    BlockStats *blocks;
    double lo, scale; /* the second pass: bucket = (v - lo) * scale */
    int vector; /* f32 on AVX-512 (2) or AVX2 (1): the intrinsics paths */
    /* that path's second pass: scale_down is an f32 a little below scale, so that
     * (v - lo) * scale_down in f32 never exceeds the f64 formula's (v - lo) * scale
     * nor falls a whole bucket below it; next_edge[b] is the least f32 whose f64
     * formula reaches bucket b + 1 (+inf from the last bucket on) */
    float scale_down;
    float next_edge[32];
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

/* Range, count and sums of x[0..m), with the non-finite values masked out of each. */
TARGET_512 static void block_sums_f32_masked(const float *x, int m, BlockStats *s)
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

/* The same, first as if every value were finite (no masks but the tail's); where the
 * sum of squares then is not finite, some value was not, and the masked loop runs.
 * Both add in the same order, so a block's sums do not depend on which ran. */
TARGET_512 static void block_sums_f32_512(const float *x, int m, BlockStats *s)
{
    __m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
    for (int i = 0; i < m; i += 16) {
        __mmask16 in = tail_mask(i, m);
        __m512 v = _mm512_maskz_loadu_ps(in, x + i);
        lo = _mm512_mask_min_ps(lo, in, lo, v);
        hi = _mm512_mask_max_ps(hi, in, hi, v);
        __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d d1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
        s0 = _mm512_add_pd(s0, d0);
        s1 = _mm512_add_pd(s1, d1);
        q0 = _mm512_fmadd_pd(d0, d0, q0);
        q1 = _mm512_fmadd_pd(d1, d1, q1);
    }
    double sq = _mm512_reduce_add_pd(_mm512_add_pd(q0, q1));
    if (!(sq <= DBL_MAX)) { /* an infinity or a NaN among the values */
        block_sums_f32_masked(x, m, s);
        return;
    }
    *s = (BlockStats){.lo = _mm512_reduce_min_ps(lo),
                      .hi = _mm512_reduce_max_ps(hi),
                      .sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)),
                      .sq = sq,
                      .num = m};
}

/* Counting by positional popcount.  Each value becomes a one-hot u32, bit b for bucket
 * b (0 for a non-finite value), 16 to a vector; the vectors go through a carry-save
 * adder tree (Harley and Seal's, as in fast popcounts), 16 at a time, so that ones,
 * twos, fours and eights hold the counts below 16 of each lane and bit, bit-sliced,
 * and each group of 16 vectors carries one vector of sixteens into a bit-sliced
 * counter of SLICES planes.  The planes become counts (an AND test and a popcount per
 * bucket) only when the counter is full and at the end: two logic instructions per
 * 16 values, where comparing each value's byte against every bucket took 30. */
enum { SLICES = 8, GROUPS = (1 << SLICES) - 1 }; /* groups of 16 vectors a counter holds */

typedef struct Counter {
    __m512i ones, twos, fours, eights, sixteens[SLICES];
    int groups;
} Counter;

#define CSA(high, low, a, b, c)                                                                    \
    do {                                                                                           \
        __m512i a_ = (a), b_ = (b), c_ = (c);                                                      \
        (high) = _mm512_ternarylogic_epi32(a_, b_, c_, 0xe8); /* majority */                       \
        (low) = _mm512_ternarylogic_epi32(a_, b_, c_, 0x96); /* xor */                             \
    } while (0)

/* count[b] += weight * (how many lanes of p have bit b). */
TARGET_512 static void add_plane(__m512i p, uint64_t weight, uint64_t *count)
{
    if (!_mm512_test_epi32_mask(p, p))
        return;
    for (int b = 0; b < NND_HIST_BUCKETS; b++)
        count[b] += weight * (uint64_t)__builtin_popcount(
                                 _mm512_test_epi32_mask(p, _mm512_set1_epi32((int)(1u << b))));
}

TARGET_512 static void flush_sixteens(Counter *c, uint64_t *count)
{
    for (int k = 0; k < SLICES; k++) {
        add_plane(c->sixteens[k], (uint64_t)16 << k, count);
        c->sixteens[k] = _mm512_setzero_si512();
    }
    c->groups = 0;
}

/* The one-hot buckets of the 16 values at x (the lanes of in; the others 0).  The
 * bucket is estimated in f32 lanes with a scale made smaller than the f64 formula's
 * (Job.scale_down), so that the estimate is the bucket or the one below, then moved
 * up where the value reaches the next edge (Job.next_edge).  With check, a
 * non-finite value counts nowhere; without, every value must be finite. */
TARGET_512 static inline __attribute__((always_inline)) __m512i
onehot16(const float *x, __mmask16 in, bool check, const Job *j)
{
    const __m512 lo = _mm512_set1_ps((float)j->lo), scale = _mm512_set1_ps(j->scale_down),
                 top = _mm512_set1_ps(NND_HIST_BUCKETS - 1);
    const __m512 e0 = _mm512_loadu_ps(j->next_edge), e1 = _mm512_loadu_ps(j->next_edge + 16);
    const __m512i one = _mm512_set1_epi32(1);
    __m512 v = _mm512_maskz_loadu_ps(in, x);
    __mmask16 f = in;
    if (check) /* finite: |v| <= FLT_MAX, false for infinities and NaN */
        f = _mm512_mask_cmp_ps_mask(in, _mm512_abs_ps(v), _mm512_set1_ps(FLT_MAX), _CMP_LE_OQ);
    /* min(top, t) keeps a NaN t (an unchecked NaN value): it and a value more than a
     * bucket below lo convert to a shift of 32 or more, which leaves no bit */
    __m512 t = _mm512_min_ps(top, _mm512_mul_ps(_mm512_sub_ps(v, lo), scale));
    __m512i k = _mm512_cvttps_epi32(t);
    __mmask16 up = _mm512_cmp_ps_mask(v, _mm512_permutex2var_ps(e0, k, e1), _CMP_GE_OQ);
    __m512i hot = _mm512_maskz_sllv_epi32(f, one, k);
    return _mm512_mask_add_epi32(hot, up, hot, hot);
}

/* The one-hot vectors of a group of 256 values at x (the first `left` where tail),
 * made as the adder tree takes them: made all first, 16 of them and the counter did
 * not fit in the 32 registers (100k weights: 15.6 -> 15.1 us on one Zen 4 thread).
 * With range, the least and greatest value go to lo and hi on the way. */
typedef struct Hot {
    const float *x;
    const Job *j;
    int left;
    bool tail, check, range;
    __m512 lo, hi;
} Hot;

TARGET_512 static inline __attribute__((always_inline)) __m512i hot_at(Hot *h, int k)
{
    __mmask16 in = h->tail ? tail_mask(16 * k, h->left) : (__mmask16)0xffff;
    __m512i d = onehot16(h->x + 16 * k, in, h->check, h->j);
    if (h->range) {
        __m512 v = _mm512_maskz_loadu_ps(in, h->x + 16 * k);
        h->lo = _mm512_mask_min_ps(h->lo, in, h->lo, v);
        h->hi = _mm512_mask_max_ps(h->hi, in, h->hi, v);
    }
    return d;
}

/* Adds the one-hot vectors first .. first + 7 of h to ones, twos and fours; returns
 * what carries into eights. */
TARGET_512 static inline __attribute__((always_inline)) __m512i count8(Counter *c, Hot *h,
                                                                       int first)
{
    __m512i twos_a, twos_b, fours_a, fours_b, eights, d0, d1;
    d0 = hot_at(h, first), d1 = hot_at(h, first + 1);
    CSA(twos_a, c->ones, c->ones, d0, d1);
    d0 = hot_at(h, first + 2), d1 = hot_at(h, first + 3);
    CSA(twos_b, c->ones, c->ones, d0, d1);
    CSA(fours_a, c->twos, c->twos, twos_a, twos_b);
    d0 = hot_at(h, first + 4), d1 = hot_at(h, first + 5);
    CSA(twos_a, c->ones, c->ones, d0, d1);
    d0 = hot_at(h, first + 6), d1 = hot_at(h, first + 7);
    CSA(twos_b, c->ones, c->ones, d0, d1);
    CSA(fours_b, c->twos, c->twos, twos_a, twos_b);
    CSA(eights, c->fours, c->fours, fours_a, fours_b);
    return eights;
}

/* Adds the 16 one-hot vectors of h's group to the counter. */
TARGET_512 static inline __attribute__((always_inline)) void count16(Counter *c, Hot *h,
                                                                     uint64_t *count)
{
    __m512i eights_a = count8(c, h, 0), eights_b = count8(c, h, 8), sixteens;
    CSA(sixteens, c->eights, c->eights, eights_a, eights_b);
    for (int k = 0; k < SLICES; k++) { /* a ripple add into the bit-sliced counter */
        __m512i carry = _mm512_and_si512(c->sixteens[k], sixteens);
        c->sixteens[k] = _mm512_xor_si512(c->sixteens[k], sixteens);
        sixteens = carry;
    }
    if (++c->groups == GROUPS)
        flush_sixteens(c, count);
}

/* Counts the m values at x into count (adding to it); finite: all of them are.  With
 * range (nnd_histogram_ranged: finite assumed), also the least and the greatest value
 * into *lo and *hi, to check the range it was given.  (A NaN, though, drops out of
 * both the counts and the min and max: the check is that the counts add up to m.) */
TARGET_512 static inline __attribute__((always_inline)) void
count_f32_512_(const float *x, int64_t m, bool finite, bool range, const Job *j, uint64_t *count,
               float *lo, float *hi)
{
    Counter c = {.groups = 0};
    c.ones = c.twos = c.fours = c.eights = _mm512_setzero_si512();
    for (int k = 0; k < SLICES; k++)
        c.sixteens[k] = c.ones;
    Hot h = {.j = j,
             .left = 256,
             .range = range,
             .lo = _mm512_set1_ps(INFINITY),
             .hi = _mm512_set1_ps(-INFINITY)};
    int64_t i = 0;
    if (finite)
        for (; i + 256 <= m; i += 256) {
            h.x = x + i;
            h.check = false;
            count16(&c, &h, count);
        }
    for (; i + 256 <= m; i += 256) {
        h.x = x + i;
        h.check = true;
        count16(&c, &h, count);
    }
    if (i < m) {
        h.x = x + i;
        h.left = (int)(m - i);
        h.tail = h.check = true;
        count16(&c, &h, count);
    }
    if (range) {
        *lo = _mm512_reduce_min_ps(h.lo);
        *hi = _mm512_reduce_max_ps(h.hi);
    }
    flush_sixteens(&c, count);
    add_plane(c.ones, 1, count);
    add_plane(c.twos, 2, count);
    add_plane(c.fours, 4, count);
    add_plane(c.eights, 8, count);
}

TARGET_512 static void count_f32_512(const float *x, int64_t m, bool finite, const Job *j,
                                     uint64_t *count)
{
    count_f32_512_(x, m, finite, false, j, count, NULL, NULL);
}
#endif

#ifdef HAVE_AVX512
/* The same counting in AVX2 lanes (a CPU without AVX-512: Zen 1-3, Haswell to Alder
 * Lake), 8 values a vector, the adders' majority and xor in five logic instructions
 * instead of two ternary ones.  The bucket is the f64 formula itself, in f64 lanes
 * (the generic path's arithmetic, so the same counts, with no f32 estimate to
 * correct).  100k weights on a Zen 3, in nnd_histogram_ranged's one pass: 42.9 us on
 * one thread, 25.5 on two, where the generic two passes took 244 and 120. */
typedef struct Counter8 {
    __m256i ones, twos, fours, eights, sixteens[SLICES];
    int groups;
} Counter8;

#define CSA8(high, low, a, b, c)                                                                   \
    do {                                                                                           \
        __m256i a_ = (a), b_ = (b), c_ = (c), u_ = _mm256_xor_si256(a_, b_);                       \
        (high) = _mm256_or_si256(_mm256_and_si256(a_, b_), _mm256_and_si256(u_, c_));              \
        (low) = _mm256_xor_si256(u_, c_);                                                          \
    } while (0)

/* count[b] += weight * (how many lanes of p have bit b). */
TARGET_256 static void add_plane8(__m256i p, uint64_t weight, uint64_t *count)
{
    if (_mm256_testz_si256(p, p))
        return;
    for (int b = 0; b < NND_HIST_BUCKETS; b++) {
        __m256i top = _mm256_sllv_epi32(p, _mm256_set1_epi32(31 - b)); /* bit b to the sign */
        count[b] += weight * (uint64_t)__builtin_popcount(
                                 (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(top)));
    }
}

TARGET_256 static void flush_sixteens8(Counter8 *c, uint64_t *count)
{
    for (int k = 0; k < SLICES; k++) {
        add_plane8(c->sixteens[k], (uint64_t)16 << k, count);
        c->sixteens[k] = _mm256_setzero_si256();
    }
    c->groups = 0;
}

/* Adds 16 one-hot vectors d to the counter (as count16). */
TARGET_256 static inline __attribute__((always_inline)) void
count16_8(Counter8 *c, const __m256i *d, uint64_t *count)
{
    __m256i eights[2], sixteens;
    for (int h = 0; h < 2; h++) {
        const __m256i *e = d + 8 * h;
        __m256i twos_a, twos_b, fours_a, fours_b;
        CSA8(twos_a, c->ones, c->ones, e[0], e[1]);
        CSA8(twos_b, c->ones, c->ones, e[2], e[3]);
        CSA8(fours_a, c->twos, c->twos, twos_a, twos_b);
        CSA8(twos_a, c->ones, c->ones, e[4], e[5]);
        CSA8(twos_b, c->ones, c->ones, e[6], e[7]);
        CSA8(fours_b, c->twos, c->twos, twos_a, twos_b);
        CSA8(eights[h], c->fours, c->fours, fours_a, fours_b);
    }
    CSA8(sixteens, c->eights, c->eights, eights[0], eights[1]);
    for (int k = 0; k < SLICES; k++) {
        __m256i carry = _mm256_and_si256(c->sixteens[k], sixteens);
        c->sixteens[k] = _mm256_xor_si256(c->sixteens[k], sixteens);
        sixteens = carry;
    }
    if (++c->groups == GROUPS)
        flush_sixteens8(c, count);
}

/* The one-hot buckets of the first n (at most 8) values at x, the others 0: bucket
 * min((v - lo) * scale, 29) in f64, truncated.  With check, a non-finite value counts
 * nowhere; without, every value must be finite (a NaN then converts to a shift of
 * 2^31, which leaves no bit; a value a bucket or more below lo, to a negative one). */
TARGET_256 static inline __attribute__((always_inline)) __m256i onehot8(const float *x, int n,
                                                                        bool check, const Job *j)
{
    __m256i in = lanes8(n);
    __m256 v = n >= 8 ? _mm256_loadu_ps(x) : _mm256_maskload_ps(x, in);
    const __m256d lo = _mm256_set1_pd(j->lo), scale = _mm256_set1_pd(j->scale),
                  top = _mm256_set1_pd(NND_HIST_BUCKETS - 1);
    __m256d t0 =
        _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), lo), scale);
    __m256d t1 =
        _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), lo), scale);
    __m256i k = _mm256_set_m128i(_mm256_cvttpd_epi32(_mm256_min_pd(top, t1)),
                                 _mm256_cvttpd_epi32(_mm256_min_pd(top, t0)));
    if (check || n < 8) {
        /* finite: |v| <= FLT_MAX, false for infinities and NaN */
        __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
        __m256i f = _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(FLT_MAX), _CMP_LE_OQ));
        if (!check)
            f = _mm256_set1_epi32(-1);
        k = _mm256_blendv_epi8(_mm256_set1_epi32(32), k, _mm256_and_si256(f, in));
    }
    return _mm256_sllv_epi32(_mm256_set1_epi32(1), k);
}

/* count_f32_512_ in AVX2 lanes. */
TARGET_256 static inline __attribute__((always_inline)) void
count_f32_256_(const float *x, int64_t m, bool finite, bool range, const Job *j, uint64_t *count,
               float *lo, float *hi)
{
    Counter8 c = {.groups = 0};
    c.ones = c.twos = c.fours = c.eights = _mm256_setzero_si256();
    for (int k = 0; k < SLICES; k++)
        c.sixteens[k] = c.ones;
    __m256i d[16];
    __m256 vlo = _mm256_set1_ps(INFINITY), vhi = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    if (finite)
        for (; i + 128 <= m; i += 128) {
            for (int k = 0; k < 16; k++) {
                d[k] = onehot8(x + i + 8 * k, 8, false, j);
                if (range) {
                    __m256 v = _mm256_loadu_ps(x + i + 8 * k);
                    vlo = _mm256_min_ps(vlo, v);
                    vhi = _mm256_max_ps(vhi, v);
                }
            }
            count16_8(&c, d, count);
        }
    for (; i + 128 <= m; i += 128) {
        for (int k = 0; k < 16; k++)
            d[k] = onehot8(x + i + 8 * k, 8, true, j);
        count16_8(&c, d, count);
    }
    if (i < m) {
        for (int k = 0; k < 16; k++) {
            int64_t left = m - i - 8 * k;
            int nk = left >= 8 ? 8 : left <= 0 ? 0 : (int)left;
            d[k] = onehot8(x + i + 8 * k, nk, true, j);
            if (range && nk > 0) {
                __m256i in = lanes8(nk);
                __m256 v = _mm256_maskload_ps(x + i + 8 * k, in);
                __m256 inf = _mm256_set1_ps(INFINITY), in_f = _mm256_castsi256_ps(in);
                vlo = _mm256_min_ps(vlo, _mm256_blendv_ps(inf, v, in_f));
                vhi = _mm256_max_ps(
                    vhi, _mm256_blendv_ps(_mm256_xor_ps(inf, _mm256_set1_ps(-0.0f)), v, in_f));
            }
        }
        count16_8(&c, d, count);
    }
    if (range) {
        float l[8], h[8];
        _mm256_storeu_ps(l, vlo);
        _mm256_storeu_ps(h, vhi);
        *lo = INFINITY, *hi = -INFINITY;
        for (int k = 0; k < 8; k++) {
            *lo = l[k] < *lo ? l[k] : *lo;
            *hi = h[k] > *hi ? h[k] : *hi;
        }
    }
    flush_sixteens8(&c, count);
    add_plane8(c.ones, 1, count);
    add_plane8(c.twos, 2, count);
    add_plane8(c.fours, 4, count);
    add_plane8(c.eights, 8, count);
}

TARGET_256 static void count_f32_256(const float *x, int64_t m, bool finite, const Job *j,
                                     uint64_t *count)
{
    count_f32_256_(x, m, finite, false, j, count, NULL, NULL);
}
#endif

static int widest_path = 2; /* histogram_vector_path: for tests */

/* The path f32 values take: 2 on a CPU with AVX-512 F, BW, DQ and VL (the first one
 * above), 1 on one with AVX2 (the second), 0 the generic one; at most widest_path. */
static int vector_path_f32(void)
{
    int have = 0;
#ifdef HAVE_AVX512
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        have = 2;
    else if (__builtin_cpu_supports("avx2"))
        have = 1;
#endif
    return have < widest_path ? have : widest_path;
}

int histogram_vector_path(int widest)
{
    widest_path = widest;
    return vector_path_f32();
}

static void count_buckets(const unsigned char *b, int m, uint64_t *count)
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
        else if (j->vector == 2)
            block_sums_f32_512((const float *)j->data + i0, m, &j->blocks[k]);
#endif
        else
            block_sums_float((const float *)j->data + i0, m, &j->blocks[k]);
    }
}

static void second_pass(void *ctx, int64_t begin, int64_t end)
{
    Job *j = ctx;
#ifdef HAVE_AVX512
    if (j->vector) { /* the blocks' counts go to the first block of the range */
        int64_t i0 = begin * BLOCK, i1 = end * BLOCK < j->n ? end * BLOCK : j->n;
        bool finite = true;
        for (int64_t k = begin; k < end; k++) {
            finite = finite && j->blocks[k].num == (k + 1 < end ? BLOCK : i1 - k * BLOCK);
            memset(j->blocks[k].count, 0, sizeof j->blocks[k].count);
        }
        if (j->vector == 2)
            count_f32_512((const float *)j->data + i0, i1 - i0, finite, j, j->blocks[begin].count);
        else
            count_f32_256((const float *)j->data + i0, i1 - i0, finite, j, j->blocks[begin].count);
        return;
    }
#endif
    _Alignas(64) unsigned char b[BLOCK];
    for (int64_t k = begin; k < end; k++) {
        int64_t i0 = k * BLOCK;
        int m = (int)(j->n - i0 < BLOCK ? j->n - i0 : BLOCK);
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

/* Job.scale_down and Job.next_edge for the f32 path.  False where f32 lanes cannot
 * hold the estimate: a range wider than FLT_MAX (v - lo would overflow) or so narrow
 * that a difference of subnormals could span buckets (scale above 2^100); the
 * generic path then.
 *
 * Why the estimate is the bucket or the one below: v - lo and the product are each
 * rounded to f32 (a relative error of at most 2^-24 each), scale_down is scale less
 * 16 * 2^-24 of it, rounded (another 2^-25): the estimate t' lies between
 * t (1 - 19 * 2^-24) and t, where t, the f64 formula's value, is at most 30.5 or so,
 * so t - 1 < t' <= t. */
static bool find_edges(Job *j, double hi)
{
    if (!(j->scale <= 0x1p100) || !(hi - j->lo <= FLT_MAX))
        return false;
    j->scale_down = (float)(j->scale * (1 - 16 * 0x1p-24));
    for (int b = 0; b < 32; b++)
        j->next_edge[b] =
            b + 1 < NND_HIST_BUCKETS && j->scale > 0 ? edge_of(j, b + 1, (float)hi) : INFINITY;
    return true;
}

/* h's limits, and j's lo and scale, from h's min and max. */
static void set_buckets(NndHistogram *h, Job *j)
{
    double width = h->max > h->min ? (h->max - h->min) / NND_HIST_BUCKETS : 1;
    j->lo = h->min;
    j->scale = h->max > h->min ? 1 / width : 0;
    for (int b = 0; b < NND_HIST_BUCKETS; b++)
        h->limit[b] = b == NND_HIST_BUCKETS - 1 ? h->max : h->min + width * (b + 1);
}

int nnd_histogram(NndPool *pool, const void *data, NndDType dtype, int64_t n, NndHistogram *h,
                  NndErr *err)
{
    if (dtype != NND_F32 && dtype != NND_F64)
        return nnd_err(err, "histogram: the values must be f32 or f64");
    int64_t nb = (n + BLOCK - 1) / BLOCK;
    Job j = {
        .data = data, .dtype = dtype, .n = n, .vector = dtype == NND_F32 ? vector_path_f32() : 0};
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
    set_buckets(h, &j);
    if (h->num > 0) {
        if (j.vector == 2 && !find_edges(&j, h->max))
            j.vector = 0;
        nnd_parallel_for(pool, second_pass, &j, nb, GRAIN);
        for (int64_t k = 0; k < nb; k++)
            for (int b = 0; b < NND_HIST_BUCKETS; b++)
                h->count[b] += j.blocks[k].count[b];
    }
    if (j.blocks != &one)
        free(j.blocks);
    return 0;
}

#ifdef HAVE_AVX512
/* The counting of a ranged pass on each path (the least and greatest value too). */
TARGET_512 static void count_ranged_512(const float *x, int64_t m, const Job *j, uint64_t *count,
                                        float *lo, float *hi)
{
    count_f32_512_(x, m, true, true, j, count, lo, hi);
}

TARGET_256 static void count_ranged_256(const float *x, int64_t m, const Job *j, uint64_t *count,
                                        float *lo, float *hi)
{
    count_f32_256_(x, m, true, true, j, count, lo, hi);
}

/* The one pass over blocks [begin, end) of j (a part): counted, the least and greatest
 * value kept in the part's first block's lo and hi. */
static void ranged_pass(void *ctx, int64_t begin, int64_t end)
{
    Job *j = ctx;
    int64_t i0 = begin * BLOCK, i1 = end * BLOCK < j->n ? end * BLOCK : j->n;
    BlockStats *s = &j->blocks[begin];
    memset(s->count, 0, sizeof s->count);
    float lo, hi;
    (j->vector == 2 ? count_ranged_512 : count_ranged_256)((const float *)j->data + i0, i1 - i0, j,
                                                           s->count, &lo, &hi);
    s->lo = lo;
    s->hi = hi;
    s->num = 1; /* marks the range's first block */
    for (int64_t k = begin + 1; k < end; k++)
        j->blocks[k].num = 0;
}
#endif

/* Below this many values, the AVX2 path counts faster than the AVX-512 one, which
 * first searches for its 29 f32 edges (Zen 4, one thread: 10 values 0.34 -> 0.22 us,
 * 128 0.36 -> 0.24, 512 0.44 -> 0.41; 1280 values 0.67 against 1.11). */
enum { EDGES_MIN_N = 512 };

struct NndHistPlan {
    int count, parts;
    Job *jobs; /* one per request; blocks NULL: the one pass cannot take it */
    NndHistRequest *req;
    NndHistogram *h; /* the sums and limits the one pass starts from */
    BlockStats *blocks;
};

/* Sets up j's one pass for q's values with q's range and sums: h's sums and limits,
 * j's buckets and edges.  False where the one pass cannot take them (a path without
 * it, a value not finite, a range the f32 lanes cannot hold). */
static bool ranged_setup(Job *j, const NndHistRequest *q, NndHistogram *h)
{
    *j = (Job){.data = q->data, .dtype = q->dtype, .n = q->n};
#ifdef HAVE_AVX512
    /* all finite: min <= max and the sums finite (a NaN or an infinity among the
     * values makes the step's sum so) */
    int path = q->dtype == NND_F32 ? vector_path_f32() : 0;
    if (path == 2 && q->n <= EDGES_MIN_N)
        path = 1;
    j->vector = path;
    if (path > 0 && q->n > 0 && q->min <= q->max && q->min >= -FLT_MAX && q->max <= FLT_MAX &&
        fabs(q->sum) <= DBL_MAX && q->sum_squares <= DBL_MAX) {
        *h = (NndHistogram){.min = q->min,
                            .max = q->max,
                            .num = (double)q->n,
                            .sum = q->sum,
                            .sum_squares = q->sum_squares};
        set_buckets(h, j);
        return path == 1 || find_edges(j, q->max); /* (the AVX2 path needs no edges) */
    }
#else
    (void)h;
#endif
    return false;
}

NndHistPlan *nnd_histograms_plan(int count, const NndHistRequest *req, int parts, NndErr *err)
{
    /* one allocation: the plan, then its jobs, requests, histograms and blocks */
    size_t n = (size_t)(count > 0 ? count : 0), blocks = 0;
    for (size_t i = 0; i < n; i++)
        blocks += (size_t)((req[i].n + BLOCK - 1) / BLOCK);
    size_t at_jobs = (sizeof(NndHistPlan) + 63) & ~(size_t)63, at_req = at_jobs + n * sizeof(Job),
           at_h = at_req + n * sizeof(NndHistRequest), at_blocks = at_h + n * sizeof(NndHistogram);
    char *m = malloc(at_blocks + blocks * sizeof(BlockStats));
    if (!m) {
        nnd_err(err, "out of memory");
        return NULL;
    }
    NndHistPlan *p = (NndHistPlan *)m;
    *p = (NndHistPlan){.count = (int)n,
                       .parts = parts > 0 ? parts : 1,
                       .jobs = (Job *)(m + at_jobs),
                       .req = (NndHistRequest *)(m + at_req),
                       .h = (NndHistogram *)(m + at_h),
                       .blocks = (BlockStats *)(m + at_blocks)};
    BlockStats *next = p->blocks;
    for (size_t i = 0; i < n; i++) {
        p->req[i] = req[i];
        bool one = ranged_setup(&p->jobs[i], &req[i], &p->h[i]);
        p->jobs[i].blocks = one ? next : NULL;
        next += one ? (req[i].n + BLOCK - 1) / BLOCK : 0;
    }
    /* no block starts a counted part yet: a part left uncounted leaves its values
     * out, and the check at the finish then counts the tensor in two passes */
    for (BlockStats *b = p->blocks; b < next; b++)
        b->num = 0;
    return p;
}

void nnd_histograms_count(NndHistPlan *p, int part)
{
    for (int i = 0; i < p->count; i++) {
        Job *j = &p->jobs[i];
        int64_t nb = (j->n + BLOCK - 1) / BLOCK, b0 = nb * part / p->parts,
                b1 = nb * (part + 1) / p->parts;
#ifdef HAVE_AVX512
        if (j->blocks && b0 < b1)
            ranged_pass(j, b0, b1);
#else
        (void)b0, (void)b1;
#endif
    }
}

/* h's counts from j's pass (h holds the sums and limits); false where the range was
 * not the values' own or a value was not finite (a count short). */
static bool ranged_collect(const Job *j, const NndHistRequest *q, NndHistogram *h)
{
    double lo = INFINITY, hi = -INFINITY, num = 0;
    for (int64_t k = 0; k < (j->n + BLOCK - 1) / BLOCK; k++) {
        const BlockStats *s = &j->blocks[k];
        if (!s->num)
            continue;
        lo = s->lo < lo ? s->lo : lo;
        hi = s->hi > hi ? s->hi : hi;
        for (int b = 0; b < NND_HIST_BUCKETS; b++) {
            h->count[b] += s->count[b];
            num += s->count[b];
        }
    }
    return lo == q->min && hi == q->max && num == q->n;
}

int nnd_histograms_finish(NndHistPlan *p, NndPool *pool, NndHistogram *h, NndErr *err)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < p->count; i++) {
        const NndHistRequest *q = &p->req[i];
        if (p->jobs[i].blocks && ranged_collect(&p->jobs[i], q, &p->h[i]))
            h[i] = p->h[i];
        else
            rc = nnd_histogram(pool, q->data, q->dtype, q->n, &h[i], err);
    }
    free(p);
    return rc;
}

static void count_parts(void *ctx, int64_t begin, int64_t end)
{
    for (int64_t t = begin; t < end; t++)
        nnd_histograms_count(ctx, (int)t);
}

int nnd_histogram_ranged(NndPool *pool, const void *data, NndDType dtype, int64_t n, double min,
                         double max, double sum, double sum_squares, NndHistogram *h, NndErr *err)
{
    NndHistRequest q = {.data = data,
                        .dtype = dtype,
                        .n = n,
                        .min = min,
                        .max = max,
                        .sum = sum,
                        .sum_squares = sum_squares};
    /* a part a thread, GRAIN blocks a part at least (smaller: the caller alone) */
    int64_t nb = (n + BLOCK - 1) / BLOCK, want = (nb + GRAIN - 1) / GRAIN;
    int threads = nnd_pool_threads(pool);
    int parts = want < threads ? (int)(want > 1 ? want : 1) : threads;
    NndHistPlan *plan = nnd_histograms_plan(1, &q, parts, err);
    if (!plan)
        return -1;
    nnd_parallel_for(pool, count_parts, plan, parts, 1);
    return nnd_histograms_finish(plan, pool, h, err);
}
