/* lanes: the mask of an AVX2 vector's first lanes, for the runtime's AVX2 paths
 * (masked loads, edges of blocks).  Private to the runtime. */
#ifndef NND_LANES_H
#define NND_LANES_H

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>

/* The first n of 8 i32 lanes, all bits set (none for n <= 0, all for n >= 8). */
__attribute__((target("avx2"))) static inline __m256i lanes8(int64_t n)
{
    int c = n <= 0 ? 0 : n >= 8 ? 8 : (int)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

#endif
