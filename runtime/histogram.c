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
 * increment. */
#include "nnd_runtime.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
        else
            block_sums_float((const float *)j->data + i0, m, &j->blocks[k]);
    }
}

static void second_pass(void *ctx, int64_t begin, int64_t end)
{
    Job *j = ctx;
    unsigned char b[BLOCK];
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

int nnd_histogram(NndPool *pool, const void *data, NndDType dtype, int64_t n, NndHistogram *h,
                  NndErr *err)
{
    if (dtype != NND_F32 && dtype != NND_F64)
        return nnd_err(err, "histogram: the values must be f32 or f64");
    int64_t nb = (n + BLOCK - 1) / BLOCK;
    Job j = {.data = data, .dtype = dtype, .n = n};
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
        nnd_parallel_for(pool, second_pass, &j, nb, GRAIN);
        for (int64_t k = 0; k < nb; k++)
            for (int b = 0; b < NND_HIST_BUCKETS; b++)
                h->count[b] += j.blocks[k].count[b];
    }
    if (j.blocks != &one)
        free(j.blocks);
    return 0;
}
