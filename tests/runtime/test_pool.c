/* The thread pool: every index exactly once, in the documented contiguous ranges (the
 * same ones every call), inline without a pool or inside a job, many short jobs with
 * workers spinning or asleep, denormals flushed on every thread that computes, and
 * OpenBLAS's own threads stopped; the default thread count from the CPUs the process
 * may use (its affinity mask, a cgroup's CPU quota).
 *
 * Range functions run on worker threads, where cmocka's asserts cannot be used: they
 * only record, and the test thread checks afterwards. */
#define _GNU_SOURCE /* sched_setaffinity */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include "helpers.h"
#include "nnd_abi.h"

enum { MAX_CALLS = 64 };

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, us % 1000000 * 1000};
    nanosleep(&ts, NULL);
}

/* What one nnd_parallel_for did: every call's range and thread, and a hit count per
 * index. */
typedef struct Call {
    int64_t begin, end;
    pthread_t thread;
} Call;

typedef struct Record {
    atomic_int *hits;
    int64_t n;
    atomic_int ncalls;
    Call calls[MAX_CALLS];
    long sleep_us; /* in ranges that do not start at 0 (workers), to make the caller wait */
} Record;

static void record_range(void *ctx, int64_t begin, int64_t end)
{
    Record *r = ctx;
    int slot = atomic_fetch_add(&r->ncalls, 1);
    if (slot < MAX_CALLS) {
        r->calls[slot].begin = begin;
        r->calls[slot].end = end;
        r->calls[slot].thread = pthread_self();
    }
    for (int64_t i = begin; i < end; i++)
        if (i >= 0 && i < r->n)
            atomic_fetch_add_explicit(&r->hits[i], 1, memory_order_relaxed);
    if (r->sleep_us && begin != 0)
        sleep_us(r->sleep_us);
}

static void record_init(Record *r, int64_t n)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    r->hits = calloc((size_t)(n > 0 ? n : 1), sizeof *r->hits);
    assert_non_null(r->hits);
}

/* Sorts the recorded calls by begin (insertion sort: there are few). */
static int record_sorted_calls(Record *r)
{
    int nc = atomic_load(&r->ncalls);
    assert_true(nc <= MAX_CALLS);
    for (int i = 1; i < nc; i++)
        for (int j = i; j > 0 && r->calls[j - 1].begin > r->calls[j].begin; j--) {
            Call t = r->calls[j];
            r->calls[j] = r->calls[j - 1];
            r->calls[j - 1] = t;
        }
    return nc;
}

/* The documented split: one call when there is no pool, one thread, or a single
 * grain's worth; else min(threads, ceil(n / grain)) ranges [n*i/c, n*(i+1)/c). */
static int expected_chunks(int threads, int64_t n, int64_t grain)
{
    if (n <= 0)
        return 0;
    if (grain < 1)
        grain = 1;
    int64_t want = n / grain + (n % grain != 0);
    if (threads <= 1 || want <= 1)
        return 1;
    return want < threads ? (int)want : threads;
}

/* Runs one parallel_for and checks coverage and ranges; leaves the calls in r sorted
 * by begin (the caller frees r->hits). */
static void run_and_check(NndPool *pool, int64_t n, int64_t grain, Record *r)
{
    record_init(r, n);
    nnd_parallel_for(pool, record_range, r, n, grain);
    for (int64_t i = 0; i < n; i++)
        if (atomic_load(&r->hits[i]) != 1)
            fail_msg("threads %d, n %lld, grain %lld: index %lld covered %d times",
                     nnd_pool_threads(pool), (long long)n, (long long)grain, (long long)i,
                     atomic_load(&r->hits[i]));
    int nc = record_sorted_calls(r);
    int chunks = expected_chunks(nnd_pool_threads(pool), n, grain);
    if (nc != chunks)
        fail_msg("threads %d, n %lld, grain %lld: %d calls, expected %d", nnd_pool_threads(pool),
                 (long long)n, (long long)grain, nc, chunks);
    for (int i = 0; i < nc; i++) {
        assert_int_equal(r->calls[i].begin, n * i / chunks);
        assert_int_equal(r->calls[i].end, n * (i + 1) / chunks);
        assert_true(r->calls[i].begin < r->calls[i].end); /* no empty calls */
    }
    /* distinct threads run distinct ranges */
    for (int i = 0; i < nc; i++)
        for (int j = i + 1; j < nc; j++)
            assert_false(pthread_equal(r->calls[i].thread, r->calls[j].thread));
}

static void test_threads_count(void **state)
{
    assert_int_equal(nnd_pool_threads(NULL), 1);
    for (int k = 1; k <= TEST_THREADS; k++)
        assert_int_equal(nnd_pool_threads(pools[k]), k);
    NndErr err;
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    int cpus = nnd_cpu_count();
    assert_true(cpus >= 1 && cpus <= CPU_COUNT(&set));
    for (int req = -1; req <= 0; req++) {
        NndPool *p = nnd_pool_create(req, &err);
        assert_non_null(p);
        assert_int_equal(nnd_pool_threads(p), cpus);
        nnd_pool_destroy(p);
    }
}

/* One CPU in the affinity mask (taskset -c 0, a container's cpuset): one thread by
 * default, and a pool asked for more threads than that still runs every range (its
 * threads sleep rather than spin while they wait, so they do not hold the one CPU). */
static void test_affinity(void **state)
{
    cpu_set_t all, one;
    assert_int_equal(sched_getaffinity(0, sizeof all, &all), 0);
    int first = 0;
    while (!CPU_ISSET(first, &all))
        first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    assert_int_equal(nnd_cpu_count(), 1);
    NndErr err;
    NndPool *p = nnd_pool_create(0, &err);
    assert_non_null(p);
    assert_int_equal(nnd_pool_threads(p), 1);
    nnd_pool_destroy(p);
    p = nnd_pool_create(3, &err); /* its workers inherit the one-CPU mask */
    assert_non_null(p);
    for (int j = 0; j < 2000; j++) {
        Record r;
        run_and_check(p, 3 + j % 5, 1, &r);
        free(r.hits);
    }
    nnd_pool_destroy(p);
    assert_int_equal(sched_setaffinity(0, sizeof all, &all), 0);
    assert_int_equal(nnd_cpu_count() >= 1, 1);
}

typedef struct Slow {
    long us; /* how long the workers' parts sleep */
} Slow;

static void slow_range(void *ctx, int64_t begin, int64_t end)
{
    const Slow *s = ctx;
    (void)end;
    if (begin > 0) /* a worker's part: the caller's (begin 0) is instant */
        sleep_us(s->us);
}

/* The contention signal, from what a job's caller saw (nnd_pool_note_wait): a wait
 * over 0.2 ms and over four times the caller's own part (a worker without a CPU)
 * marks the pool contended, but not in its first 256 jobs (first touches of memory
 * are slow), and 1024 jobs without such a wait clear it.  Then the same through
 * nnd_parallel_for with a worker that sleeps, where the machine lets it show: on a
 * loaded one the caller can lose its CPU during its own part as long. */
static void test_contended(void **state)
{
    NndErr err;
    NndPool *p = nnd_pool_create(2, &err);
    assert_non_null(p);
    assert_false(nnd_pool_contended(p));
    assert_false(nnd_pool_contended(NULL));
    nnd_pool_note_wait(p, 1000, 5000000); /* job 1: still warming up */
    assert_false(nnd_pool_contended(p));
    for (int j = 1; j < 256; j++)
        nnd_pool_note_wait(p, 1000, 2000);
    assert_false(nnd_pool_contended(p));
    nnd_pool_note_wait(p, 100000, 300000); /* over 0.2 ms but under 4x its own part */
    assert_false(nnd_pool_contended(p));
    nnd_pool_note_wait(p, 1000, 150000); /* over 4x but under 0.2 ms */
    assert_false(nnd_pool_contended(p));
    nnd_pool_note_wait(p, 1000, 300000);
    assert_true(nnd_pool_contended(p));
    for (int j = 0; j < 1023; j++)
        nnd_pool_note_wait(p, 1000, 2000);
    assert_true(nnd_pool_contended(p));
    nnd_pool_note_wait(p, 1000, 2000);
    assert_false(nnd_pool_contended(p));
    /* the jobs themselves: every range still runs while contended */
    nnd_pool_note_wait(p, 1000, 300000);
    Slow slow = {2000};
    for (int j = 0; j < 20; j++) {
        Record r;
        record_init(&r, 2);
        nnd_parallel_for(p, record_range, &r, 2, 1);
        assert_int_equal(atomic_load(&r.hits[0]) + atomic_load(&r.hits[1]), 2);
        free(r.hits);
        nnd_parallel_for(p, slow_range, &slow, 2, 1);
    }
    print_message("a worker sleeping 2 ms: pool contended %d\n", nnd_pool_contended(p));
    nnd_pool_destroy(p);
}

/* Makes the directory dir/sub with, unless text is NULL, the file name holding it. */
static void put(const char *dir, const char *sub, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s%s", dir, sub);
    assert_true(mkdir(path, 0700) == 0 || errno == EEXIST);
    if (!text)
        return;
    snprintf(path, sizeof path, "%s%s/%s", dir, sub, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* cgroup quotas: v2's cpu.max "QUOTA PERIOD", v1's cpu.cfs_quota_us (-1: none) over
 * cpu.cfs_period_us, of the cgroup or one above it up to the root, the least, rounded
 * up; "max", -1 and missing files are no limit (0). */
static void test_cgroup_quota(void **state)
{
    char root[] = "/tmp/nnd_cgroupXXXXXX";
    assert_non_null(mkdtemp(root));
    put(root, "/a", NULL, NULL);
    put(root, "/a/b", "cpu.max", "max 100000\n");
    put(root, "/a/b/c", "cpu.max", "150000 100000\n");
    put(root, "/d", "cpu.max", "50000 100000\n");
    put(root, "/d/e", "cpu.max", "max 100000\n");
    put(root, "/f", "cpu.max", "400000 100000\n");
    put(root, "/f/g", "cpu.max", "200000 100000\n");
    put(root, "/h", "cpu.max", "garbage\n");
    put(root, "/v1", "cpu.cfs_quota_us", "250000\n");
    put(root, "/v1", "cpu.cfs_period_us", "100000\n");
    put(root, "/v1/none", "cpu.cfs_quota_us", "-1\n");
    put(root, "/v1/none", "cpu.cfs_period_us", "100000\n");
    assert_int_equal(nnd_cgroup_cpus(root, "/"), 0);
    assert_int_equal(nnd_cgroup_cpus(root, "/a"), 0);
    assert_int_equal(nnd_cgroup_cpus(root, "/a/b"), 0);
    assert_int_equal(nnd_cgroup_cpus(root, "/a/b/c"), 2); /* 1.5 CPUs: two threads */
    assert_int_equal(nnd_cgroup_cpus(root, "/d/e"), 1); /* the parent's half a CPU */
    assert_int_equal(nnd_cgroup_cpus(root, "/f/g"), 2);
    assert_int_equal(nnd_cgroup_cpus(root, "/h"), 0);
    assert_int_equal(nnd_cgroup_cpus(root, "/missing/x"), 0);
    assert_int_equal(nnd_cgroup_cpus(root, "/v1"), 3);
    assert_int_equal(nnd_cgroup_cpus(root, "/v1/none"), 3);
    /* in a container, /proc names the host's path; root is the container's cgroup */
    put(root, "/docker", NULL, NULL);
    char inner[512];
    snprintf(inner, sizeof inner, "%s/d", root);
    assert_int_equal(nnd_cgroup_cpus(inner, "/docker/0123abcd"), 1);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

static void test_coverage(void **state)
{
    static const int64_t ns[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 13, 31, 64, 100, 257, 1000, 4099};
    static const int64_t grains[] = {
        -5, 0, 1, 2, 3, 7, 8, 64, 999, 1000, 1001, 1 << 20, INT64_MAX / 2, INT64_MAX};
    int cases = 0;
    for (int k = 0; k <= TEST_THREADS; k++) {
        NndPool *pool = k == 0 ? NULL : pools[k];
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
            for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++) {
                Record r;
                run_and_check(pool, ns[i], grains[g], &r);
                free(r.hits);
                cases++;
            }
    }
    print_message("%d (threads, n, grain) cases\n", cases);
}

static void test_negative_n(void **state)
{
    for (int k = 0; k <= TEST_THREADS; k++) {
        Record r;
        record_init(&r, 0);
        nnd_parallel_for(k ? pools[k] : NULL, record_range, &r, -3, 1);
        nnd_parallel_for(k ? pools[k] : NULL, record_range, &r, INT64_MIN, 1);
        assert_int_equal(atomic_load(&r.ncalls), 0);
        free(r.hits);
    }
}

static void test_null_pool_inline(void **state)
{
    Record r;
    record_init(&r, 1000);
    nnd_parallel_for(NULL, record_range, &r, 1000, 1);
    assert_int_equal(atomic_load(&r.ncalls), 1);
    assert_int_equal(r.calls[0].begin, 0);
    assert_int_equal(r.calls[0].end, 1000);
    assert_true(pthread_equal(r.calls[0].thread, pthread_self()));
    free(r.hits);
}

/* The same thread count gives the same ranges, on the same threads, every call; the
 * caller computes the first range itself. */
static void test_deterministic_ranges(void **state)
{
    for (int k = 2; k <= TEST_THREADS; k++) {
        Record first;
        run_and_check(pools[k], 1003, 1, &first);
        assert_true(pthread_equal(first.calls[0].thread, pthread_self()));
        for (int rep = 0; rep < 50; rep++) {
            Record r;
            run_and_check(pools[k], 1003, 1, &r);
            assert_int_equal(atomic_load(&r.ncalls), atomic_load(&first.ncalls));
            for (int i = 0; i < k; i++) {
                assert_int_equal(r.calls[i].begin, first.calls[i].begin);
                assert_int_equal(r.calls[i].end, first.calls[i].end);
                assert_true(pthread_equal(r.calls[i].thread, first.calls[i].thread));
            }
            free(r.hits);
        }
        free(first.hits);
    }
}

/* Inside a job, parallel_for on the same pool runs inline (one call, the same thread)
 * instead of waiting for workers that are busy with the outer job. */
typedef struct Nested {
    NndPool *pool;
    Record inner[TEST_THREADS];
    pthread_t outer_thread[TEST_THREADS];
    atomic_int outer_calls;
} Nested;

static void nested_outer(void *ctx, int64_t begin, int64_t end)
{
    Nested *s = ctx;
    atomic_fetch_add(&s->outer_calls, 1);
    for (int64_t i = begin; i < end; i++) {
        s->outer_thread[i] = pthread_self();
        nnd_parallel_for(s->pool, record_range, &s->inner[i], s->inner[i].n, 1);
        /* and a NULL pool inside a job */
        nnd_parallel_for(NULL, record_range, &s->inner[i], 0, 1);
    }
}

static void test_nested_inline(void **state)
{
    for (int k = 1; k <= TEST_THREADS; k++) {
        for (int rep = 0; rep < 20; rep++) {
            Nested s;
            memset(&s, 0, sizeof s);
            s.pool = pools[k];
            for (int i = 0; i < k; i++)
                record_init(&s.inner[i], 37 + i);
            nnd_parallel_for(pools[k], nested_outer, &s, k, 1);
            assert_int_equal(atomic_load(&s.outer_calls), k);
            for (int i = 0; i < k; i++) {
                Record *r = &s.inner[i];
                assert_int_equal(atomic_load(&r->ncalls), 1);
                assert_int_equal(r->calls[0].begin, 0);
                assert_int_equal(r->calls[0].end, r->n);
                assert_true(pthread_equal(r->calls[0].thread, s.outer_thread[i]));
                for (int64_t j = 0; j < r->n; j++)
                    assert_int_equal(atomic_load(&r->hits[j]), 1);
                free(r->hits);
            }
        }
        /* the caller is out of the job again: the next loop is split */
        Record r;
        run_and_check(pools[k], 100, 1, &r);
        assert_int_equal(atomic_load(&r.ncalls), k);
        free(r.hits);
    }
}

/* Many tiny back-to-back jobs: workers are caught spinning, just arriving, or late. */
typedef struct Counter {
    atomic_long sum;
    atomic_long calls;
} Counter;

static void count_range(void *ctx, int64_t begin, int64_t end)
{
    Counter *c = ctx;
    atomic_fetch_add_explicit(&c->sum, end - begin, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
}

static void test_many_tiny_jobs(void **state)
{
    for (int k = 2; k <= TEST_THREADS; k++) {
        /* more threads than cores here makes each job slow; fewer jobs keep it short */
        long jobs = k == 2 ? 20000 : 500;
        Counter c = {0, 0};
        for (long j = 0; j < jobs; j++) {
            int64_t n = 1 + j % (2 * k); /* some jobs use fewer threads than the pool has */
            long before = atomic_load(&c.sum);
            nnd_parallel_for(pools[k], count_range, &c, n, 1);
            /* every range is done when parallel_for returns */
            if (atomic_load(&c.sum) != before + n)
                fail_msg("threads %d, job %ld: %ld of %lld done", k, j,
                         atomic_load(&c.sum) - before, (long long)n);
        }
        print_message("%d threads: %ld jobs, %ld ranges\n", k, jobs, atomic_load(&c.calls));
    }
}

/* Pauses between jobs long enough for the workers to stop spinning and sleep; they
 * must be woken.  Slow workers make the caller sleep waiting for them too. */
static void test_wake_after_sleep(void **state)
{
    for (int k = 2; k <= TEST_THREADS; k++) {
        for (int j = 0; j < 15; j++) {
            sleep_us(j % 3 == 0 ? 20000 : 2000);
            Record r;
            record_init(&r, 64);
            r.sleep_us = j % 2 ? 3000 : 0;
            nnd_parallel_for(pools[k], record_range, &r, 64, 1);
            assert_int_equal(atomic_load(&r.ncalls), k);
            for (int i = 0; i < 64; i++)
                assert_int_equal(atomic_load(&r.hits[i]), 1);
            free(r.hits);
        }
    }
}

static void test_create_destroy(void **state)
{
    NndErr err;
    nnd_pool_destroy(NULL);
    for (int rep = 0; rep < 25; rep++)
        for (int k = 1; k <= TEST_THREADS + 2; k++) {
            NndPool *p = nnd_pool_create(k, &err);
            assert_non_null(p);
            if (rep % 5 == 4) {
                /* one job, then destroy while the workers are still spinning */
                Counter c = {0, 0};
                nnd_parallel_for(p, count_range, &c, 10, 1);
                assert_int_equal(atomic_load(&c.sum), 10);
            }
            nnd_pool_destroy(p);
        }
}

/* nnd_pool_post: the job runs on a worker while the caller goes on, and whatever
 * comes next on the pool (a job, a wait, destroy) finds it done. */
typedef struct Posted {
    pthread_t ran_on;
    atomic_int runs;
    atomic_int release; /* the job spins until this is set */
    atomic_int seen; /* runs as a later job saw it */
    int64_t part; /* the begin it ran with: 1 on the worker, 0 inline */
} Posted;

static void posted_job(void *ctx, int64_t begin, int64_t end)
{
    Posted *p = ctx;
    assert_true((begin == 0 || begin == 1) && end == begin + 1);
    while (!atomic_load(&p->release))
        sched_yield();
    p->ran_on = pthread_self();
    p->part = begin;
    atomic_fetch_add(&p->runs, 1);
}

static void see_posted(void *ctx, int64_t begin, int64_t end)
{
    Posted *p = ctx;
    (void)begin, (void)end;
    atomic_store(&p->seen, atomic_load(&p->runs));
}

static void test_post(void **state)
{
    for (int k = 1; k <= TEST_THREADS; k++) {
        Posted p = {0};
        atomic_store(&p.release, k == 1); /* one thread: runs at once, so must not wait */
        int posted = nnd_pool_post(pools[k], posted_job, &p, 0);
        assert_int_equal(posted, k > 1);
        if (k > 1) {
            /* the caller is not held up, and a second post runs inline */
            assert_int_equal(atomic_load(&p.runs), 0);
            Posted q = {0};
            atomic_store(&q.release, 1);
            assert_int_equal(nnd_pool_post(pools[k], posted_job, &q, 0), 0);
            assert_int_equal(atomic_load(&q.runs), 1);
            assert_true(pthread_equal(q.ran_on, pthread_self()));
            atomic_store(&p.release, 1);
        }
        /* a job after it starts once it is done */
        nnd_parallel_for(pools[k], see_posted, &p, 2 * k, 1);
        assert_int_equal(atomic_load(&p.seen), 1);
        assert_int_equal(atomic_load(&p.runs), 1);
        assert_int_equal(pthread_equal(p.ran_on, pthread_self()) != 0, k == 1);
        assert_int_equal(p.part, k > 1);
        nnd_pool_wait_posted(pools[k]); /* nothing left: returns */
        /* and a wait by itself */
        Posted r = {0};
        atomic_store(&r.release, 1);
        nnd_pool_post(pools[k], posted_job, &r, 0);
        nnd_pool_wait_posted(pools[k]);
        assert_int_equal(atomic_load(&r.runs), 1);
    }
    nnd_pool_post(NULL, posted_job, &(Posted){.release = 1}, 0);
    nnd_pool_wait_posted(NULL);
    /* destroy waits for it */
    NndErr err;
    NndPool *pool = nnd_pool_create(2, &err);
    assert_non_null(pool);
    Posted d = {0};
    atomic_store(&d.release, 1);
    nnd_pool_post(pool, posted_job, &d, 0);
    nnd_pool_destroy(pool);
    assert_int_equal(atomic_load(&d.runs), 1);
}

/* A shared post: the caller, when it waits, takes its part of what is left. */
enum { SHARED_ITEMS = 4000 };
typedef struct Shared {
    pthread_t caller;
    atomic_int next, caller_in, by_caller;
    atomic_int done[SHARED_ITEMS];
    atomic_int parts[TEST_THREADS]; /* calls with begin = i: thread i's (0: the caller) */
} Shared;

static void shared_job(void *ctx, int64_t begin, int64_t end)
{
    Shared *s = ctx;
    int on_caller = pthread_equal(pthread_self(), s->caller);
    assert_true(begin >= 0 && begin < TEST_THREADS && end == begin + 1);
    assert_int_equal(begin == 0, on_caller);
    atomic_fetch_add(&s->parts[begin], 1);
    if (on_caller)
        atomic_store(&s->caller_in, 1);
    else /* the worker starts once the caller has (or after 2 s: then the test fails) */
        for (int64_t t0 = nnd_clock_ns();
             !atomic_load(&s->caller_in) && nnd_clock_ns() - t0 < 2000000000;)
            sched_yield();
    for (int i; (i = atomic_fetch_add(&s->next, 1)) < SHARED_ITEMS;) {
        atomic_fetch_add(&s->done[i], 1);
        if (on_caller)
            atomic_fetch_add(&s->by_caller, 1);
    }
}

static void test_post_shared(void **state)
{
    for (int k = 2; k <= TEST_THREADS; k++) {
        Shared *s = calloc(1, sizeof *s);
        assert_non_null(s);
        s->caller = pthread_self();
        assert_int_equal(nnd_pool_post(pools[k], shared_job, s, 1), 1);
        nnd_pool_wait_posted(pools[k]);
        for (int i = 0; i < SHARED_ITEMS; i++)
            assert_int_equal(atomic_load(&s->done[i]), 1);
        assert_true(atomic_load(&s->by_caller) >= 1);
        for (int t = 0; t < TEST_THREADS; t++) /* every worker ran it, and the caller */
            assert_int_equal(atomic_load(&s->parts[t]), t < k);
        free(s);
    }
}

/* Flush-to-zero and denormals-are-zero on every thread that computes. */
typedef struct Denormal {
    volatile float tiny, one;
    unsigned csr[TEST_THREADS];
    uint32_t product[TEST_THREADS]; /* the bits, so no comparison on this thread flushes */
    pthread_t thread[TEST_THREADS];
} Denormal;

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>

static void denormal_range(void *ctx, int64_t begin, int64_t end)
{
    Denormal *d = ctx;
    for (int64_t i = begin; i < end; i++) {
        d->csr[i] = _mm_getcsr();
        float p = d->tiny * d->one;
        memcpy(&d->product[i], &p, sizeof p);
        d->thread[i] = pthread_self();
    }
}
#endif

static void test_flush_denormals(void **state)
{
#if defined(__x86_64__) || defined(__i386__)
    for (int k = 1; k <= TEST_THREADS; k++) {
        Denormal d;
        memset(&d, 0, sizeof d);
        d.tiny = 1e-39f;
        d.one = 1.0f;
        nnd_parallel_for(pools[k], denormal_range, &d, k, 1);
        for (int i = 0; i < k; i++) {
            if ((d.csr[i] & 0x8040) != 0x8040)
                fail_msg("threads %d, range %d: MXCSR %#x lacks FTZ|DAZ", k, i, d.csr[i]);
            assert_int_equal(d.product[i], 0);
            for (int j = 0; j < i; j++)
                assert_false(pthread_equal(d.thread[i], d.thread[j]));
        }
    }
    /* and on a thread that only calls nnd_flush_denormals */
    unsigned saved = _mm_getcsr();
    _mm_setcsr(saved & ~0x8040u);
    volatile float x = 1e-39f, one = 1.0f;
    float p = x * one;
    uint32_t bits;
    memcpy(&bits, &p, sizeof bits);
    assert_int_not_equal(bits, 0); /* a denormal without FTZ/DAZ */
    nnd_flush_denormals();
    assert_int_equal(_mm_getcsr() & 0x8040, 0x8040);
    p = x * one;
    memcpy(&bits, &p, sizeof bits);
    assert_int_equal(bits, 0);
    _mm_setcsr(saved);
#else
    print_message("not x86: FTZ/DAZ check skipped\n");
    skip();
#endif
}

/* Threads a sanitizer runs in the process (ThreadSanitizer: one). */
#if defined(__SANITIZE_THREAD__)
#define SANITIZER_THREADS 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SANITIZER_THREADS 1
#endif
#endif
#ifndef SANITIZER_THREADS
#define SANITIZER_THREADS 0
#endif

/* Threads of this process (the entries of /proc/self/task), or -1 where unknown. */
static long thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Run first, before any pool: the threads OpenBLAS's pthreads build started when it
 * loaded stop, and its products still run (on the caller's thread). */
static void test_blas_one_thread(void **state)
{
    long before = thread_count();
    if (before < 0)
        skip();
    nnd_blas_one_thread();
    print_message("threads: %ld before, %ld after\n", before, thread_count());
    assert_int_equal(thread_count(), 1 + SANITIZER_THREADS);
    /* a pool does not start them again (setting OpenBLAS's thread count would) */
    NndErr err;
    NndPool *pool = nnd_pool_create(2, &err);
    assert_non_null(pool);
    nnd_pool_destroy(pool);
    assert_int_equal(thread_count(), 1 + SANITIZER_THREADS);
    const double a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
    double c[4] = {0};
    nnd_gemm_f64(NULL, 0, 0, 2, 2, 2, a, 2, b, 2, 0, c, 2, 1, 0, 0, 0);
    assert_true(c[0] == 19 && c[1] == 22 && c[2] == 43 && c[3] == 50);
}

int main(void)
{
    const struct CMUnitTest first[] = {cmocka_unit_test(test_blas_one_thread)};
    int failed = cmocka_run_group_tests(first, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_count),
        cmocka_unit_test(test_coverage),
        cmocka_unit_test(test_negative_n),
        cmocka_unit_test(test_null_pool_inline),
        cmocka_unit_test(test_deterministic_ranges),
        cmocka_unit_test(test_nested_inline),
        cmocka_unit_test(test_many_tiny_jobs),
        cmocka_unit_test(test_wake_after_sleep),
        cmocka_unit_test(test_create_destroy),
        cmocka_unit_test(test_post),
        cmocka_unit_test(test_post_shared),
        cmocka_unit_test(test_flush_denormals),
        cmocka_unit_test(test_affinity),
        cmocka_unit_test(test_cgroup_quota),
        cmocka_unit_test(test_contended),
    };
    return failed + cmocka_run_group_tests(tests, setup_pools, teardown_pools);
}
