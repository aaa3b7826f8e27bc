/* rng: counter-based random numbers.
 *
 * Philox4x32-10 as published with Random123 (Salmon, Moraes, Dror, Shaw, "Parallel
 * random numbers: as easy as 1, 2, 3", SC 2011).  Every value is a pure function of
 * (seed, stream, index), so results do not depend on threads or call order. */
#include "nnd_runtime.h"

#include "clones.h"

#include <math.h>
#include <string.h>

/* Round multipliers and Weyl key increments from the paper. */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* One round: (hi0, lo0) = M0 * c0, (hi1, lo1) = M1 * c2,
 * c' = {hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0}. */
static void philox_round(uint32_t c[4], const uint32_t k[2])
{
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c[0] = hi1 ^ c[1] ^ k[0];
    c[1] = lo1;
    c[2] = hi0 ^ c[3] ^ k[1];
    c[3] = lo0;
}

void nnd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k[2] = {key[0], key[1]};
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k[0] += PHILOX_W0;
            k[1] += PHILOX_W1;
        }
        philox_round(c, k);
    }
    for (int i = 0; i < 4; i++)
        out[i] = c[i];
}

/* key = seed, counter = (index, stream), low words first. */
static void philox_block(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4])
{
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t ctr[4] = {(uint32_t)index, (uint32_t)(index >> 32), (uint32_t)stream,
                       (uint32_t)(stream >> 32)};
    nnd_philox4x32_10(ctr, key, out);
}

static uint64_t words_u64(uint32_t lo, uint32_t hi) { return (uint64_t)lo | (uint64_t)hi << 32; }

/* The top 53 bits scaled into [0, 1): every double there is a multiple of 2^-53. */
static double u64_to_unit(uint64_t x) { return (double)(x >> 11) * 0x1.0p-53; }

uint64_t nnd_random_u64(uint64_t seed, uint64_t stream, uint64_t index)
{
    uint32_t out[4];
    philox_block(seed, stream, index, out);
    return words_u64(out[0], out[1]);
}

double nnd_random_uniform(uint64_t seed, uint64_t stream, uint64_t index)
{
    return u64_to_unit(nnd_random_u64(seed, stream, index));
}

enum { FILL_LANES = 8 };

typedef uint64_t U64x8 __attribute__((vector_size(64)));
typedef int64_t I64x8 __attribute__((vector_size(64)));
typedef double F64x8 __attribute__((vector_size(64)));

/* FILL_LANES consecutive counters' values at once: philox_round on vector lanes of
 * 64 bits that hold 32-bit words (the products of two such are exact), the same
 * values lane by lane. */
VECTOR_CLONES static void uniform_lanes(uint32_t k0, uint32_t k1, uint64_t stream, uint64_t first,
                                        double *out)
{
    const uint64_t low = 0xFFFFFFFFu;
    U64x8 index = {0, 1, 2, 3, 4, 5, 6, 7};
    index += first;
    U64x8 c0 = index & low, c1 = index >> 32;
    U64x8 c2 = (U64x8){0} + (stream & low), c3 = (U64x8){0} + (stream >> 32);
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        U64x8 p0 = c0 * (uint64_t)PHILOX_M0, p1 = c2 * (uint64_t)PHILOX_M1;
        U64x8 n0 = (p1 >> 32) ^ c1 ^ (uint64_t)k0, n2 = (p0 >> 32) ^ c3 ^ (uint64_t)k1;
        c1 = p1 & low;
        c3 = p0 & low;
        c0 = n0;
        c2 = n2;
    }
    /* u64_to_unit: the top 53 bits (below 2^53: exact as signed) times 2^-53 */
    I64x8 top = (I64x8)((c0 | c1 << 32) >> 11);
    F64x8 u = __builtin_convertvector(top, F64x8) * 0x1.0p-53;
    memcpy(out, &u, sizeof u);
}

void nnd_random_uniform_fill(uint64_t seed, uint64_t stream, uint64_t first, int64_t n, double *out)
{
    int64_t i = 0;
    for (; i + FILL_LANES <= n; i += FILL_LANES)
        uniform_lanes((uint32_t)seed, (uint32_t)(seed >> 32), stream, first + (uint64_t)i, out + i);
    for (; i < n; i++)
        out[i] = nnd_random_uniform(seed, stream, first + (uint64_t)i);
}

/* Box-Muller: z = sqrt(-2 ln(1 - u1)) cos(2 pi u2); 1 - u1 is in (0, 1], so the
 * logarithm is finite. */
double nnd_random_normal(uint64_t seed, uint64_t stream, uint64_t index)
{
    uint32_t out[4];
    philox_block(seed, stream, index, out);
    double u1 = u64_to_unit(words_u64(out[0], out[1]));
    double u2 = u64_to_unit(words_u64(out[2], out[3]));
    const double two_pi = 6.283185307179586476925286766559;
    return sqrt(-2.0 * log(1.0 - u1)) * cos(two_pi * u2);
}

/* x * r as a 128-bit product, for r < 2^32, without a 128-bit type. */
static void mul_u64_u32(uint64_t x, uint64_t r, uint64_t *hi, uint64_t *lo)
{
    uint64_t lo_part = (x & 0xFFFFFFFFu) * r; /* < 2^64 */
    uint64_t hi_part = (x >> 32) * r; /* < 2^64 */
    uint64_t mid = hi_part + (lo_part >> 32); /* no carry out: < 2^64 */
    *hi = mid >> 32;
    *lo = mid << 32 | (lo_part & 0xFFFFFFFFu);
}

/* Uniform in [0, bound) by Lemire's multiply-and-reject (2019): unbiased, and the
 * first 64-bit draw is rejected with probability below 2^-32.  Redraws use counter
 * indices with the high word set, which position draws (index < 2^32) never use. */
static uint32_t random_below(uint64_t seed, uint64_t stream, uint32_t pos, uint32_t bound)
{
    uint64_t hi, lo;
    mul_u64_u32(nnd_random_u64(seed, stream, pos), bound, &hi, &lo);
    if (lo < bound) {
        uint64_t threshold = (0 - (uint64_t)bound) % bound; /* 2^64 mod bound */
        for (uint64_t k = 1; lo < threshold; k++)
            mul_u64_u32(nnd_random_u64(seed, stream, k << 32 | pos), bound, &hi, &lo);
    }
    return (uint32_t)hi;
}

/* Fisher-Yates from the top: position i swaps with j uniform in [0, i], drawn from
 * counter index i. */
void nnd_random_permutation(uint32_t *perm, uint32_t n, uint64_t seed, uint64_t stream)
{
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    for (uint32_t i = n > 0 ? n - 1 : 0; i > 0; i--) {
        uint32_t j = random_below(seed, stream, i, i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* FNV-1a, 64-bit: h = (h ^ byte) * 0x100000001b3 from 0xcbf29ce484222325. */
uint64_t nnd_stream_of(const char *name)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (const unsigned char *p = (const unsigned char *)(name ? name : ""); *p; p++) {
        h ^= *p;
        h *= 0x100000001b3u;
    }
    return h;
}
