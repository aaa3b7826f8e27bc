/* nnd_histogram against a plain loop: f32 and f64, lengths around the block and lane
 * sizes, infinities and NaN left out, a constant tensor, values on and beside the
 * bucket edges, nothing finite at all, and the same bits with no pool, one thread and
 * two; f32 through every path the CPU has (AVX-512 intrinsics, AVX2 ones, and the
 * generic one).  nnd_histogram_ranged the same, given the range, and given a wrong
 * one.  And the CRC-32C of the log records, and their buffering. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "../../runtime/histogram.h"
#include "nnd_runtime.h"

const char *tmp_path(const char *name); /* helpers.c: a path under the tests' tmp/ */

/* The histogram the plain way: one pass for the range and sums, one for the buckets. */
static void naive(const double *x, int64_t n, NndHistogram *h)
{
    memset(h, 0, sizeof *h);
    h->min = INFINITY;
    h->max = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i]))
            continue;
        h->min = fmin(h->min, x[i]);
        h->max = fmax(h->max, x[i]);
        h->num++;
        h->sum += x[i];
        h->sum_squares += x[i] * x[i];
    }
    if (h->num == 0)
        h->min = h->max = 0;
    double width = h->max > h->min ? (h->max - h->min) / NND_HIST_BUCKETS : 1;
    double scale = h->max > h->min ? 1 / width : 0;
    for (int b = 0; b < NND_HIST_BUCKETS; b++)
        h->limit[b] = b == NND_HIST_BUCKETS - 1 ? h->max : h->min + width * (b + 1);
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i]))
            continue;
        int b = (int)((x[i] - h->min) * scale);
        h->count[b < NND_HIST_BUCKETS ? b : NND_HIST_BUCKETS - 1]++;
    }
}

static void expect_same(const NndHistogram *got, const NndHistogram *want)
{
    assert_true(got->min == want->min);
    assert_true(got->max == want->max);
    assert_true(got->num == want->num);
    /* sums are added in another order: equal to rounding, against the sum of the
     * magnitudes (at most sqrt(num * sum_squares)) */
    assert_true(fabs(got->sum - want->sum) <= 1e-12 * sqrt(want->num * want->sum_squares));
    assert_true(fabs(got->sum_squares - want->sum_squares) <= 1e-12 * want->sum_squares);
    for (int b = 0; b < NND_HIST_BUCKETS; b++) {
        assert_true(got->limit[b] == want->limit[b]);
        assert_true(got->count[b] == want->count[b]);
    }
}

static int one_pass_runs; /* check_ranged calls that took nnd_histogram_ranged's one pass */
static bool all_finite_f32; /* check's values are finite f32 in a range the one pass takes */

/* nnd_histograms_plan with want's range and a wider one, in three parts counted on
 * this thread last to first: the first as nnd_histogram_ranged gave it (ranged), the
 * second want (the two passes, the range being wrong). */
static void check_plan(NndPool *pool, const void *x, NndDType dt, int64_t n,
                       const NndHistogram *want, const NndHistogram *ranged)
{
    NndErr e;
    double wider = (fabs(want->min) + fabs(want->max)) * 1e-3 + 1e-3;
    NndHistRequest q[2] = {
        {.data = x, .dtype = dt, .n = n, .min = want->min, .max = want->max},
        {.data = x, .dtype = dt, .n = n, .min = want->min - wider, .max = want->max}};
    q[0].sum = q[1].sum = 1234.5;
    q[0].sum_squares = q[1].sum_squares = 6789.25;
    NndHistPlan *plan = nnd_histograms_plan(2, q, 3, &e);
    assert_non_null(plan);
    for (int t = 2; t >= 0; t--)
        nnd_histograms_count(plan, t);
    NndHistogram got[2];
    assert_int_equal(nnd_histograms_finish(plan, pool, got, &e), 0);
    assert_memory_equal(&got[0], ranged, sizeof *ranged);
    if (want->num > 0)
        expect_same(&got[1], want);
}

/* nnd_histogram_ranged given want's range (the values' own: all of them where want
 * counts n) and sums that are not the values' (so the result shows which path ran):
 * want's histogram, with the sums given where the one pass ran, else with the values'
 * own sums.  Then ranges a little narrower and wider than the values': still want,
 * from the two passes. */
static void check_ranged(NndPool *pool, const void *x, NndDType dt, int64_t n,
                         const NndHistogram *want, bool one_pass)
{
    NndErr e;
    NndHistogram got;
    const double sum = 1234.5, sq = 6789.25;
    assert_int_equal(nnd_histogram_ranged(pool, x, dt, n, want->min, want->max, sum, sq, &got, &e),
                     0);
    check_plan(pool, x, dt, n, want, &got);
    assert_true(!one_pass || n == 0 || got.sum == sum);
    if (got.sum == sum) {
        one_pass_runs++;
        assert_true(want->num == n && got.sum_squares == sq);
        got.sum = want->sum;
        got.sum_squares = want->sum_squares;
    }
    expect_same(&got, want);
    if (want->num == 0)
        return;
    double up = dt == NND_F32 ? nextafterf((float)want->min, INFINITY)
                              : nextafter(want->min, INFINITY),
           down = dt == NND_F32 ? nextafterf((float)want->max, -INFINITY)
                                : nextafter(want->max, -INFINITY);
    double wider = (fabs(want->min) + fabs(want->max)) * 1e-3 + 1e-3;
    const double wrong[4][2] = {{up, want->max},
                                {want->min, down},
                                {want->min - wider, want->max},
                                {want->min, want->max + wider}};
    for (int k = 0; k < 4; k++) {
        if (wrong[k][0] == want->min && wrong[k][1] == want->max)
            continue; /* the next f32 after 0 is 0 under flush-to-zero (the pool sets it) */
        assert_int_equal(
            nnd_histogram_ranged(pool, x, dt, n, wrong[k][0], wrong[k][1], sum, sq, &got, &e), 0);
        expect_same(&got, want);
    }
}

/* x (n values, as doubles) as f32 and as f64, through no pool, one thread and two. */
static void check(const double *x, int64_t n, NndPool *one, NndPool *two)
{
    float *xf = malloc((size_t)(n ? n : 1) * sizeof *xf);
    double *xr = malloc((size_t)(n ? n : 1) * sizeof *xr); /* x rounded to f32 */
    for (int64_t i = 0; i < n; i++)
        xr[i] = xf[i] = (float)x[i];
    NndErr e;
    NndHistogram want, got[3];
    NndPool *pools[3] = {NULL, one, two};
    naive(xr, n, &want);
    for (int widest = 0; widest <= 2; widest++) {
        int path = histogram_vector_path(widest);
        if (path < widest)
            continue; /* the CPU has no such path: the narrower one ran already */
        bool vec = path > 0;
        for (int p = 0; p < 3; p++) {
            assert_int_equal(nnd_histogram(pools[p], xf, NND_F32, n, &got[p], &e), 0);
            expect_same(&got[p], &want);
            assert_memory_equal(&got[p], &got[0], sizeof got[0]); /* bits: any thread count */
            check_ranged(pools[p], xf, NND_F32, n, &want, vec && all_finite_f32);
        }
    }
    naive(x, n, &want);
    for (int p = 0; p < 3; p++) {
        assert_int_equal(nnd_histogram(pools[p], x, NND_F64, n, &got[p], &e), 0);
        expect_same(&got[p], &want);
        assert_memory_equal(&got[p], &got[0], sizeof got[0]);
        check_ranged(pools[p], x, NND_F64, n, &want, false);
    }
    free(xf);
    free(xr);
}

static void test_against_loop(void **state)
{
    (void)state;
    NndErr e;
    NndPool *one = nnd_pool_create(1, &e), *two = nnd_pool_create(2, &e);
    assert_non_null(one);
    assert_non_null(two);
    static const int64_t lengths[] = {0, 1, 15, 16, 17, 2047, 2048, 2049, 16 * 2048 + 5, 100352};
    uint64_t r = 88172645463325252u;
    for (size_t k = 0; k < sizeof lengths / sizeof *lengths; k++) {
        int64_t n = lengths[k];
        double *x = malloc((size_t)(n ? n : 1) * sizeof *x);
        for (int64_t i = 0; i < n; i++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17; /* xorshift64 */
            x[i] = ((double)(r >> 11) / 9007199254740992.0 - 0.3) * 0.2;
        }
        all_finite_f32 = true;
        check(x, n, one, two);
        all_finite_f32 = false;
        /* one NaN (the first value: in a vector where the min and max pass it by), NaN
         * alone, then infinities too, anywhere: the lanes' tails, the extremes */
        if (n > 0) {
            double keep = x[0];
            x[0] = NAN;
            check(x, n, one, two);
            x[0] = keep;
        }
        for (int64_t i = 0; i < n; i += 5)
            x[i] = NAN;
        check(x, n, one, two);
        for (int64_t i = 0; i < n; i += 7)
            x[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY;
        check(x, n, one, two);
        /* on the edges of the buckets and one f32 to either side (the f32 path
         * estimates a bucket in f32 and corrects it at the edges) */
        for (int range = 0; range < 8; range++) {
            double lo = -0.3 + 0.0137 * range, width = 0.0123 + 1e-5 * range;
            for (int64_t i = 0; i < n; i++) {
                float v = (float)(lo + width * (double)(i / 7 % (NND_HIST_BUCKETS + 1)));
                for (int64_t step = i % 7 - 3; step != 0; step += step < 0 ? 1 : -1)
                    v = nextafterf(v, step < 0 ? -INFINITY : INFINITY); /* 0-3 f32 away */
                x[i] = v;
            }
            check(x, n, one, two);
        }
        /* symmetric about 0, an edge at 0 where f32 are dense (the f32 path's edge
         * search starts far from it in f32 steps), values beside 0 included */
        for (int64_t i = 0; i < n; i++)
            x[i] = i % 5 == 4 ? (i % 2 ? 1e-30 : -1e-30) : (double)(i % 61 - 30) * 1e-3;
        check(x, n, one, two);
        /* a range wider than FLT_MAX (v - lo overflows f32: the f32 path must not
         * take it) and one so narrow that its values are subnormal */
        for (int64_t i = 0; i < n; i++)
            x[i] = ((double)(i % 101) / 50 - 1) * 3e38;
        check(x, n, one, two);
        for (int64_t i = 0; i < n; i++)
            x[i] = (double)(i % 97) * 1e-45;
        check(x, n, one, two);
        /* a constant: every value in the first bucket, the range one point */
        for (int64_t i = 0; i < n; i++)
            x[i] = 0.25;
        check(x, n, one, two);
        free(x);
    }
    /* the one pass ran wherever it can (f32 on AVX-512 or AVX2, every value finite) */
    if (histogram_vector_path(2) > 0)
        assert_true(one_pass_runs > 0);
    nnd_pool_destroy(one);
    nnd_pool_destroy(two);
}

static void test_nothing_finite(void **state)
{
    (void)state;
    double x[40];
    for (int i = 0; i < 40; i++)
        x[i] = i % 2 ? NAN : -INFINITY;
    NndHistogram h;
    NndErr e;
    assert_int_equal(nnd_histogram(NULL, x, NND_F64, 40, &h, &e), 0);
    assert_true(h.num == 0 && h.min == 0 && h.max == 0 && h.sum == 0);
    for (int b = 0; b < NND_HIST_BUCKETS; b++)
        assert_true(h.count[b] == 0);
    int32_t ints[4] = {1, 2, 3, 4};
    assert_int_equal(nnd_histogram(NULL, ints, NND_I32, 4, &h, &e), -1);
    assert_non_null(strstr(e.msg, "f32 or f64"));
}

/* A host that embeds libnnd may run with flush-to-zero: a range so narrow that the
 * differences v - lo are subnormal (flushed to 0 in f32) while its buckets are not
 * (scale still an f32) must not take the f32 path's estimate. */
static void test_flush_to_zero(void **state)
{
    (void)state;
#if defined(__x86_64__)
    enum { N = 4096 };
    static double x[N];
    for (int i = 0; i < N; i++)
        x[i] = (double)(float)(1e-36 + (i % 97) * 1.1e-39);
    unsigned mode = _MM_GET_FLUSH_ZERO_MODE();
    _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
    check(x, N, NULL, NULL);
    _MM_SET_FLUSH_ZERO_MODE(mode);
#endif
}

/* CRC-32C, one bit at a time. */
static uint32_t crc_bits(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return c ^ 0xffffffffu;
}

/* The check value of the CRC's catalogue, then every length to 40 (the 8-byte steps
 * of the crc32 instruction and their tails) at every alignment. */
static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(nnd_crc32c("123456789", 9), 0xe3069283u);
    assert_int_equal(nnd_crc32c("", 0), 0);
    unsigned char buf[48];
    for (int i = 0; i < 48; i++)
        buf[i] = (unsigned char)(i * 37 + 11);
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n <= 40; n++)
            assert_int_equal(nnd_crc32c(buf + off, n), crc_bits(buf + off, n));
}

static int64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

/* A log opened in a fresh directory NAME, its files' paths, and a histogram of 100
 * values to write into it. */
typedef struct TestLog {
    NndLog *l;
    char csv[600];
    const char *events;
    NndHistogram h;
} TestLog;

static void test_log_open(TestLog *t, const char *name)
{
    const char *dir = tmp_path(name);
    NndErr e;
    t->l = nnd_log_open(dir, 0, &e);
    assert_non_null(t->l);
    snprintf(t->csv, sizeof t->csv, "%s/metrics.csv", dir);
    t->events = nnd_log_events_path(t->l);
    double x[100];
    for (int i = 0; i < 100; i++)
        x[i] = i * 0.25 - 3;
    assert_int_equal(nnd_histogram(NULL, x, NND_F64, 100, &t->h, &e), 0);
}

/* A log's records reach its files in pieces of 64 KB, at nnd_log_flush, or at close:
 * 24 KB of histogram records and 6 KB of scalars leave both files as they were
 * (glibc's own 4 KB buffers would have written them out on the way). */
static void test_log_buffered(void **state)
{
    (void)state;
    TestLog t;
    test_log_open(&t, "log_buffered");
    NndLog *l = t.l;
    const char *events = t.events, *csv = t.csv;
    const NndHistogram h = t.h;
    NndErr e;
    int64_t ev0 = file_size(events), csv0 = file_size(csv);
    assert_true(ev0 > 0 && csv0 > 0); /* the file version and the header, flushed */
    for (int step = 1; step <= 40; step++)
        assert_int_equal(nnd_log_histogram(l, "weights/layer.W", step, &h, &e), 0);
    for (int step = 1; step <= 200; step++)
        assert_int_equal(nnd_log_scalar(l, "loss", step, 0, 1.0 / step, &e), 0);
    assert_int_equal(file_size(events), ev0);
    assert_int_equal(file_size(csv), csv0);
    assert_int_equal(nnd_log_flush(l, &e), 0);
    assert_true(file_size(events) > ev0 + 40 * 500);
    assert_true(file_size(csv) > csv0 + 200 * 10);
    nnd_log_close(l);
}

/* The files end between records whenever they are written, flushed or not: 300
 * histogram records (about 190 KB) and 5000 scalar lines (about 110 KB), unflushed,
 * leave an event file of whole TFRecords and a metrics.csv of whole lines (stdio's
 * buffer wrote 64 KB pieces, cutting a record, which a run killed then left torn). */
static void check_whole(const char *events, const char *csv)
{
    FILE *f = fopen(events, "rb");
    assert_non_null(f);
    int64_t size = file_size(events), at = 0;
    unsigned char head[12];
    while (at < size && fread(head, 1, 12, f) == 12) {
        uint64_t len = 0;
        for (int i = 7; i >= 0; i--)
            len = len << 8 | head[i];
        at += 12 + (int64_t)len + 4;
        assert_int_equal(fseek(f, at, SEEK_SET), 0);
    }
    fclose(f);
    assert_int_equal(at, size); /* no record cut */
    f = fopen(csv, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, -1, SEEK_END), 0);
    assert_int_equal(fgetc(f), '\n');
    fclose(f);
}

static void test_log_whole_records(void **state)
{
    (void)state;
    TestLog t;
    test_log_open(&t, "log_whole");
    NndLog *l = t.l;
    const char *events = t.events, *csv = t.csv;
    const NndHistogram h = t.h;
    NndErr e;
    int64_t ev0 = file_size(events), csv0 = file_size(csv);
    for (int step = 1; step <= 300; step++)
        assert_int_equal(nnd_log_histogram(l, "weights/layer.W", step, &h, &e), 0);
    for (int step = 1; step <= 5000; step++)
        assert_int_equal(nnd_log_scalar(l, "loss", step, 0, 1.0 / step, &e), 0);
    assert_true(file_size(events) > ev0 && file_size(csv) > csv0); /* some went out */
    check_whole(events, csv);
    assert_int_equal(nnd_log_flush(l, &e), 0);
    check_whole(events, csv);
    nnd_log_close(l);
}

/* metrics.csv's lines, which nnd_log_scalar puts together itself, against printf's
 * "%lld,%lld,%s,%.9g\n": values of every magnitude and both signs, their f32
 * roundings, powers of ten and their neighbours, values a hair from a half in the
 * ninth digit, zeros, infinities, NaN, the extremes; a tag too long for the line
 * buffer. */
static double next_value(uint64_t *s, int k)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    double u = (double)(*s >> 11) * 0x1p-53, sign = (*s & 1) ? -1 : 1;
    int x = (int)(*s >> 3 & 63) - 31; /* a decimal exponent in [-31, 32] */
    switch (k % 6) {
    case 0: return sign * (1 + 9 * u) * pow(10, x);
    case 1: return (double)(float)(sign * (1 + 9 * u) * pow(10, x));
    case 2: return sign * pow(10, x % 26);
    case 3: return nextafter(pow(10, x % 26), (*s & 2) ? INFINITY : 0);
    case 4: /* a 9-digit mantissa and a half: printf's rounding decides */
        return sign * ((double)(100000000 + (*s >> 20) % 900000000) + 0.5) * pow(10, x % 20 - 8);
    default: return sign * (9.999999995 + (u - 0.5) * 1e-14) * pow(10, x % 20);
    }
}

static void test_log_csv_values(void **state)
{
    (void)state;
    const char *dir = tmp_path("log_csv");
    NndErr e;
    NndLog *l = nnd_log_open(dir, 0, &e);
    assert_non_null(l);
    static const double special[] = {
        0.0,    -0.0,  INFINITY, -INFINITY, NAN,       DBL_MAX,    -DBL_MAX, DBL_MIN, 5e-324,
        1e-300, 1e300, 1,        0.1,       123456789, 1234567895, 0.0001,   1e-5,    999999999.5};
    enum { N = 120000, SPECIAL = sizeof special / sizeof special[0] };
    char long_tag[600];
    memset(long_tag, 'x', sizeof long_tag - 1);
    long_tag[sizeof long_tag - 1] = 0;
    double *v = malloc((N + SPECIAL) * sizeof *v);
    assert_non_null(v);
    uint64_t seed = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < N + SPECIAL; i++) {
        v[i] = i < SPECIAL ? special[i] : next_value(&seed, i);
        const char *tag = i % 1000 == 7 ? long_tag : "grad_norm/fc1.W";
        assert_int_equal(nnd_log_scalar(l, tag, i - 5, i / 7, v[i], &e), 0);
    }
    nnd_log_close(l);
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char got[1024], want[1024];
    assert_non_null(fgets(got, sizeof got, f)); /* the header */
    for (int i = 0; i < N + SPECIAL; i++) {
        const char *tag = i % 1000 == 7 ? long_tag : "grad_norm/fc1.W";
        snprintf(want, sizeof want, "%lld,%lld,%s,%.9g\n", (long long)(i - 5), (long long)(i / 7),
                 tag, v[i]);
        assert_non_null(fgets(got, sizeof got, f));
        if (strcmp(got, want))
            fail_msg("value %d (%a): %s against printf's %s", i, v[i], got, want);
    }
    fclose(f);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_loop),   cmocka_unit_test(test_nothing_finite),
        cmocka_unit_test(test_flush_to_zero),  cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_log_buffered),   cmocka_unit_test(test_log_whole_records),
        cmocka_unit_test(test_log_csv_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
