/* Philox4x32-10 known answers, and the derived uniform, normal and permutation draws. */
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

/* Random123's kat_vectors, the philox4x32 10 lines: counter, key, expected output. */
static const struct {
    uint32_t ctr[4], key[2], out[4];
} philox_kat[] = {
    {{0x00000000, 0x00000000, 0x00000000, 0x00000000},
     {0x00000000, 0x00000000},
     {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

static void test_philox_known_answers(void **state)
{
    for (size_t i = 0; i < sizeof philox_kat / sizeof philox_kat[0]; i++) {
        uint32_t out[4];
        nnd_philox4x32_10(philox_kat[i].ctr, philox_kat[i].key, out);
        for (int j = 0; j < 4; j++)
            assert_int_equal(out[j], philox_kat[i].out[j]);
    }
}

/* key = {seed lo, seed hi}; ctr = {index lo, index hi, stream lo, stream hi}. */
static void block(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4])
{
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t ctr[4] = {(uint32_t)index, (uint32_t)(index >> 32), (uint32_t)stream,
                       (uint32_t)(stream >> 32)};
    nnd_philox4x32_10(ctr, key, out);
}

static void test_u64_layout(void **state)
{
    /* The zero vector: out[0] | out[1] << 32. */
    assert_true(nnd_random_u64(0, 0, 0) == 0xe169c58d6627e8d5u);
    /* The pi vector through the (seed, stream, index) mapping. */
    assert_true(nnd_random_u64(0x299f31d0a4093822u, 0x0370734413198a2eu, 0x85a308d3243f6a88u) ==
                0x94fdccebd16cfe09u);
    uint64_t seeds[] = {0, 1, 42, 0xdeadbeefcafef00du};
    for (int s = 0; s < 4; s++) {
        for (uint64_t i = 0; i < 50; i++) {
            uint64_t stream = i * 0x9e3779b97f4a7c15u;
            uint64_t index = i << 33 | i;
            uint32_t out[4];
            block(seeds[s], stream, index, out);
            uint64_t u = nnd_random_u64(seeds[s], stream, index);
            assert_true(u == ((uint64_t)out[0] | (uint64_t)out[1] << 32));
            assert_true(nnd_random_uniform(seeds[s], stream, index) ==
                        (double)(u >> 11) * 0x1.0p-53);
            double u1 = (double)(u >> 11) * 0x1.0p-53;
            double u2 = (double)(((uint64_t)out[2] | (uint64_t)out[3] << 32) >> 11) * 0x1.0p-53;
            double z = sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
            assert_true(nnd_random_normal(seeds[s], stream, index) == z);
        }
    }
}

static void test_determinism(void **state)
{
    for (uint64_t i = 0; i < 1000; i++) {
        assert_true(nnd_random_u64(7, 3, i) == nnd_random_u64(7, 3, i));
        assert_true(nnd_random_normal(7, 3, i) == nnd_random_normal(7, 3, i));
    }
    /* Seed, stream and index each change the value. */
    uint64_t base = nnd_random_u64(7, 3, 11);
    assert_true(nnd_random_u64(8, 3, 11) != base);
    assert_true(nnd_random_u64(7, 4, 11) != base);
    assert_true(nnd_random_u64(7, 3, 12) != base);
    assert_true(nnd_random_u64(7, 3 + (1ull << 32), 11) != base);
    assert_true(nnd_random_u64(7 + (1ull << 32), 3, 11) != base);
    assert_true(nnd_random_u64(7, 3, 11 + (1ull << 32)) != base);
}

/* The batched fill gives nnd_random_uniform's values bit for bit: lengths around
 * the 16-lane blocks, a first index whose low word wraps inside a block, seeds and
 * streams with both words set. */
static void test_uniform_fill(void **state)
{
    const uint64_t seeds[] = {0, 42, 0xFEDCBA9876543210ull};
    const uint64_t streams[] = {0, 7, 0x9E3779B97F4A7C15ull};
    const uint64_t firsts[] = {0, 5, 0xFFFFFFF8ull, 0x123456789ull};
    const int64_t lens[] = {0, 1, 15, 16, 17, 33, 1000};
    double got[1000];
    for (size_t a = 0; a < sizeof seeds / sizeof *seeds; a++)
        for (size_t b = 0; b < sizeof streams / sizeof *streams; b++)
            for (size_t c = 0; c < sizeof firsts / sizeof *firsts; c++)
                for (size_t d = 0; d < sizeof lens / sizeof *lens; d++) {
                    nnd_random_uniform_fill(seeds[a], streams[b], firsts[c], lens[d], got);
                    for (int64_t i = 0; i < lens[d]; i++) {
                        double want =
                            nnd_random_uniform(seeds[a], streams[b], firsts[c] + (uint64_t)i);
                        if (got[i] != want)
                            fail_msg("seed %zu stream %zu first %zu: value %lld is %.17g, "
                                     "not %.17g",
                                     a, b, c, (long long)i, got[i], want);
                    }
                }
}

static void test_uniform_distribution(void **state)
{
    enum { N = 200000, BINS = 20 };
    int bins[BINS] = {0};
    double sum = 0, sum2 = 0;
    for (uint64_t i = 0; i < N; i++) {
        double u = nnd_random_uniform(123, 5, i);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
        sum2 += u * u;
        bins[(int)(u * BINS)]++;
    }
    double mean = sum / N, var = sum2 / N - mean * mean;
    assert_true(fabs(mean - 0.5) < 0.005);
    assert_true(fabs(var - 1.0 / 12) < 0.002);
    /* Chi-square with 19 degrees of freedom: 43.8 is the 0.999 quantile. */
    double chi2 = 0, expect = (double)N / BINS;
    for (int b = 0; b < BINS; b++)
        chi2 += (bins[b] - expect) * (bins[b] - expect) / expect;
    assert_true(chi2 < 43.8);
}

static void test_normal_distribution(void **state)
{
    enum { N = 200000 };
    double sum = 0, sum2 = 0, sum4 = 0;
    int within1 = 0;
    for (uint64_t i = 0; i < N; i++) {
        double z = nnd_random_normal(99, nnd_stream_of("w"), i);
        assert_true(isfinite(z));
        sum += z;
        sum2 += z * z;
        sum4 += z * z * z * z;
        within1 += fabs(z) < 1.0;
    }
    double mean = sum / N, var = sum2 / N - mean * mean;
    assert_true(fabs(mean) < 0.01);
    assert_true(fabs(var - 1.0) < 0.02);
    assert_true(fabs(sum4 / N - 3.0) < 0.1); /* kurtosis of a normal */
    assert_true(fabs((double)within1 / N - 0.682689) < 0.005);
}

static void check_permutation(const uint32_t *perm, uint32_t n)
{
    unsigned char *seen = calloc(n ? n : 1, 1);
    assert_non_null(seen);
    for (uint32_t i = 0; i < n; i++) {
        assert_true(perm[i] < n);
        assert_false(seen[perm[i]]);
        seen[perm[i]] = 1;
    }
    free(seen);
}

static void test_permutation_valid(void **state)
{
    uint32_t sizes[] = {0, 1, 2, 3, 10, 1000, 60000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uint32_t n = sizes[s];
        uint32_t *a = malloc(sizeof *a * (n ? n : 1));
        uint32_t *b = malloc(sizeof *b * (n ? n : 1));
        nnd_random_permutation(a, n, 5, 17);
        nnd_random_permutation(b, n, 5, 17);
        check_permutation(a, n);
        assert_memory_equal(a, b, sizeof *a * n);
        if (n >= 10) {
            nnd_random_permutation(b, n, 6, 17);
            check_permutation(b, n);
            assert_true(memcmp(a, b, sizeof *a * n) != 0);
            nnd_random_permutation(b, n, 5, 18);
            assert_true(memcmp(a, b, sizeof *a * n) != 0);
        }
        free(a);
        free(b);
    }
    nnd_random_permutation(NULL, 0, 1, 2);
}

/* Every permutation of 3 about equally often over many seeds; every position of 10
 * equally likely to hold each value. */
static void test_permutation_uniform(void **state)
{
    enum { SEEDS = 60000 };
    int counts[6] = {0};
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        uint32_t p[3];
        nnd_random_permutation(p, 3, seed, 0);
        counts[p[0] * 2 + (p[1] > p[2])]++;
    }
    for (int i = 0; i < 6; i++)
        assert_true(abs(counts[i] - SEEDS / 6) < 500); /* about 5 sigma */
    int pos[10][10] = {{0}};
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        uint32_t p[10];
        nnd_random_permutation(p, 10, seed, 1);
        for (int i = 0; i < 10; i++)
            pos[i][p[i]]++;
    }
    for (int i = 0; i < 10; i++)
        for (int v = 0; v < 10; v++)
            assert_true(abs(pos[i][v] - SEEDS / 10) < 400);
}

/* Expected values from an independent Python model of Philox, Lemire's reduction and
 * Fisher-Yates; they also pin the shuffle, which every training run depends on. */
static void test_permutation_pinned(void **state)
{
    uint32_t p[10];
    nnd_random_permutation(p, 10, 42, nnd_stream_of("shuffle"));
    static const uint32_t expected[10] = {5, 1, 6, 2, 7, 9, 0, 8, 3, 4};
    assert_memory_equal(p, expected, sizeof p);

    enum { N = 100000 };
    uint32_t *big = malloc(sizeof *big * N);
    assert_non_null(big);
    nnd_random_permutation(big, N, 7, nnd_stream_of("big"));
    uint64_t checksum = 0;
    for (uint64_t i = 0; i < N; i++)
        checksum += i * big[i];
    assert_true(checksum == 249909930048190u);
    assert_int_equal(big[0], 82524);
    assert_int_equal(big[1], 94174);
    assert_int_equal(big[N - 1], 28942);
    free(big);
}

static void test_stream_of(void **state)
{
    /* FNV-1a 64 reference values. */
    assert_true(nnd_stream_of("") == 0xcbf29ce484222325u);
    assert_true(nnd_stream_of("a") == 0xaf63dc4c8601ec8cu);
    assert_true(nnd_stream_of("foobar") == 0x85944171f73967e8u);
    assert_true(nnd_stream_of(NULL) == nnd_stream_of(""));
    assert_true(nnd_stream_of("layer1.w") != nnd_stream_of("layer1.b"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers), cmocka_unit_test(test_u64_layout),
        cmocka_unit_test(test_determinism),          cmocka_unit_test(test_uniform_fill),
        cmocka_unit_test(test_uniform_distribution), cmocka_unit_test(test_normal_distribution),
        cmocka_unit_test(test_permutation_valid),    cmocka_unit_test(test_permutation_uniform),
        cmocka_unit_test(test_permutation_pinned),   cmocka_unit_test(test_stream_of),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
