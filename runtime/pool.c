#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
/* pool: the thread pool that owns the cores.
 *
 * Workers wait for a job by spinning briefly (a step launches many short parallel
 * loops, and waking a sleeping thread costs more than the loop) and then sleeping on
 * a condition variable; in a pool with more threads than the process has CPUs, they
 * sleep at once (a spinning thread would hold the CPU the others wait for).  Job i
 * always gets the same contiguous range, so results do not depend on timing. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nnd_abi.h"
#include "nnd_runtime.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

void openblas_set_num_threads(int num_threads);
/* OpenBLAS's pthreads build has it (its fork handler stops its threads with it); its
 * other builds do not: a weak reference, NULL there. */
int blas_thread_shutdown_(void) __attribute__((weak));

/* Set once OpenBLAS's threads are stopped: setting its thread count again would
 * start them again (0.3.21 restarts a stopped server there, as after a fork), to
 * spin beside the pool's. */
static atomic_bool blas_stopped;

void nnd_blas_one_thread(void)
{
    if (atomic_load(&blas_stopped))
        return;
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_) {
        blas_thread_shutdown_();
        atomic_store(&blas_stopped, true);
    }
}

/* A waiting thread spins SPIN_ROUNDS pauses (about 0.35 ms on the machines we measure)
 * before it sleeps.  While the pool looks contended (the caller waited for the workers
 * longer than LONG_WAIT_NS and than its own part of the job took: a worker that was
 * not running, its CPU taken by another process's threads), a waiting thread also
 * yields its CPU every YIELD_EVERY pauses once it has spun YIELD_AFTER, so that the
 * threads it waits for get to run; CALM_JOBS jobs without such a wait end that. */
enum {
    SPIN_ROUNDS = 20000,
    YIELD_AFTER = 500,
    YIELD_EVERY = 64,
    LONG_WAIT_NS = 200000,
    CALM_JOBS = 1024,
    WARM_JOBS = 256
};

struct NndPool {
    int n; /* threads, the caller included */
    int spin; /* rounds a waiting thread spins before it sleeps */
    /* jobs left before the pool counts as calm again; on a line of its own, away
     * from the fields a waiting worker reads */
    _Alignas(64) atomic_int contended;
    int64_t jobs; /* run so far, up to WARM_JOBS (the caller's alone) */
    char pad[48];
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    NndRangeFn fn;
    void *ctx;
    int64_t items;
    int chunks;
    atomic_uint_fast64_t generation; /* bumped once per job */
    atomic_int pending; /* workers still running the current job */
    bool stop;
    bool posted; /* a job of nnd_pool_post may still run (the caller's view) */
    bool post_shared; /* the caller runs it too when it waits */
    NndRangeFn post_fn;
    void *post_ctx;
    void *scratch; /* nnd_pool_scratch: grown by the caller, between jobs */
    size_t scratch_bytes;
};

static _Thread_local bool in_pool_job;

void nnd_flush_denormals(void)
{
#if defined(__x86_64__) || defined(__i386__)
    /* FTZ (bit 15) and DAZ (bit 6) */
    _mm_setcsr(_mm_getcsr() | 0x8040);
#elif defined(__aarch64__)
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ volatile("msr fpcr, %0" ::"r"(fpcr | (1ull << 24)));
#endif
}

unsigned nnd_fp_enter(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned mode = _mm_getcsr();
    nnd_flush_denormals();
    return mode;
#else
    nnd_flush_denormals();
    return 0;
#endif
}

void nnd_fp_leave(unsigned mode)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr(mode);
#else
    (void)mode;
#endif
}

static void run_chunk(NndPool *p, int i)
{
    int64_t begin = p->items * i / p->chunks, end = p->items * (i + 1) / p->chunks;
    if (begin < end)
        p->fn(p->ctx, begin, end);
}

typedef struct Worker {
    NndPool *pool;
    int index;
} Worker;

/* While the pool looks contended, a thread that has spun a while gives its CPU up now
 * and then (NndPool.contended). */
static inline void maybe_yield(NndPool *p, int spins)
{
    if (spins >= YIELD_AFTER && spins % YIELD_EVERY == 0 &&
        atomic_load_explicit(&p->contended, memory_order_relaxed) > 0)
        sched_yield();
}

static void *worker_main(void *arg)
{
    Worker w = *(Worker *)arg;
    free(arg);
    NndPool *p = w.pool;
    nnd_flush_denormals();
    in_pool_job = true;
    uint_fast64_t seen = 0;
    for (;;) {
        uint_fast64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               spins < p->spin) {
            CPU_RELAX();
            spins++;
            maybe_yield(p, spins);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->generation)) == seen && !p->stop)
                pthread_cond_wait(&p->wake, &p->mu);
            bool stop = p->stop;
            pthread_mutex_unlock(&p->mu);
            if (stop)
                return NULL;
        }
        seen = g;
        if (w.index < p->chunks)
            run_chunk(p, w.index);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

/* The CPUs of the affinity mask, or 0 where it cannot be read. */
static int affinity_cpus(void)
{
    for (int size = CPU_SETSIZE; size <= (1 << 16); size *= 2) {
        cpu_set_t *set = CPU_ALLOC(size);
        if (!set)
            return 0;
        size_t bytes = CPU_ALLOC_SIZE(size);
        CPU_ZERO_S(bytes, set);
        int rc = sched_getaffinity(0, bytes, set), n = rc == 0 ? CPU_COUNT_S(bytes, set) : 0;
        CPU_FREE(set);
        if (rc == 0 || errno != EINVAL)
            return n;
    }
    return 0;
}

/* A number from the file dir/name, or -1. */
static double read_number(const char *dir, const char *name)
{
    char file[4400];
    snprintf(file, sizeof file, "%s/%s", dir, name);
    FILE *f = fopen(file, "r");
    double v = -1;
    if (f) {
        if (fscanf(f, "%lf", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

/* The CPUs the quota of the cgroup at dir allows, rounded up (cgroup v2: cpu.max,
 * "QUOTA PERIOD" or "max PERIOD"; v1: cpu.cfs_quota_us, -1 for none, and
 * cpu.cfs_period_us); 0 for none. */
static int dir_quota(const char *dir)
{
    char file[4400], q[32];
    double quota = -1, period = 0;
    snprintf(file, sizeof file, "%s/cpu.max", dir);
    FILE *f = fopen(file, "r");
    if (f) {
        if (fscanf(f, "%31s %lf", q, &period) == 2 && strcmp(q, "max") != 0)
            quota = strtod(q, NULL);
        fclose(f);
    } else {
        quota = read_number(dir, "cpu.cfs_quota_us");
        period = read_number(dir, "cpu.cfs_period_us");
    }
    if (!(quota > 0 && period > 0))
        return 0;
    double n = ceil(quota / period - 1e-9);
    return n < 1 ? 1 : n > (1 << 20) ? 1 << 20 : (int)n;
}

int nnd_cgroup_cpus(const char *root, const char *path)
{
    /* path and each cgroup above it, up to root itself: in a container, /proc names
     * the cgroup as the host sees it, while root is the container's own */
    char rel[4096];
    snprintf(rel, sizeof rel, "%s", path);
    int least = 0;
    for (;;) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s%s%s", root, rel[0] == '/' ? "" : "/", rel);
        int n = dir_quota(dir);
        least = n > 0 && (least == 0 || n < least) ? n : least;
        char *slash = strrchr(rel, '/');
        if (!slash || !strcmp(rel, "/") || !rel[0])
            return least;
        slash[slash == rel] = 0; /* "/a/b" -> "/a", "/a" -> "/" */
    }
}

/* The least quota of the process's cgroups (/proc/self/cgroup: "0::/path" for cgroup
 * v2, "N:cpu,cpuacct:/path" for v1's cpu controller), 0 for none. */
static int quota_cpus(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f)
        return 0;
    char line[4400];
    int least = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *ctl = strchr(line, ':'), *path = ctl ? strchr(ctl + 1, ':') : NULL;
        if (!path)
            continue;
        *path++ = 0;
        ctl++;
        char roots[2][4200];
        int nroots = 0;
        if (!ctl[0]) {
            snprintf(roots[nroots++], sizeof roots[0], "/sys/fs/cgroup");
        } else {
            char list[256];
            snprintf(list, sizeof list, ",%s,", ctl);
            if (!strstr(list, ",cpu,"))
                continue;
            snprintf(roots[nroots++], sizeof roots[0], "/sys/fs/cgroup/%s", ctl);
            snprintf(roots[nroots++], sizeof roots[0], "/sys/fs/cgroup/cpu");
        }
        for (int r = 0; r < nroots; r++) {
            int n = nnd_cgroup_cpus(roots[r], path);
            least = n > 0 && (least == 0 || n < least) ? n : least;
        }
    }
    fclose(f);
    return least;
}

int nnd_cpu_count(void)
{
    int n = affinity_cpus();
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 && c < (1 << 20) ? (int)c : 1;
    }
    int q = quota_cpus();
    return q > 0 && q < n ? q : n;
}

NndPool *nnd_pool_create(int nthreads, NndErr *err)
{
    int cpus = nnd_cpu_count();
    if (nthreads <= 0)
        nthreads = cpus;
    if (nthreads > 256)
        nthreads = 256;
    if (!atomic_load(&blas_stopped))
        openblas_set_num_threads(1);
    nnd_flush_denormals();
    NndPool *p = aligned_alloc(64, (sizeof *p + 63) & ~(size_t)63); /* NndPool.contended */
    if (p)
        memset(p, 0, sizeof *p);
    if (!p) {
        nnd_err(err, "thread pool: out of memory");
        return NULL;
    }
    p->n = nthreads;
    p->spin = nthreads <= cpus ? SPIN_ROUNDS : 0;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    if (!p->threads) {
        nnd_pool_destroy(p);
        nnd_err(err, "thread pool: out of memory");
        return NULL;
    }
    for (int i = 1; i < nthreads; i++) {
        Worker *w = malloc(sizeof *w);
        if (w)
            *w = (Worker){p, i};
        int rc = w ? pthread_create(&p->threads[i], NULL, worker_main, w) : ENOMEM;
        if (rc != 0) {
            free(w);
            p->n = i;
            nnd_pool_destroy(p);
            nnd_err(err, "thread pool: cannot start thread %d: %s", i, strerror(rc));
            return NULL;
        }
    }
    return p;
}

void nnd_pool_destroy(NndPool *p)
{
    if (!p)
        return;
    nnd_pool_wait_posted(p);
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n && p->threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p->scratch);
    free(p);
}

int nnd_pool_threads(const NndPool *p) { return p ? p->n : 1; }

void nnd_pool_note_wait(NndPool *p, int64_t own_ns, int64_t waited_ns)
{
    /* a wait longer than the caller's own part (and than LONG_WAIT_NS): more than
     * an uneven split explains; not in the first WARM_JOBS jobs, where the workers
     * touch memory for the first time (a page fault each page) */
    int calm = atomic_load_explicit(&p->contended, memory_order_relaxed);
    bool warm = p->jobs >= WARM_JOBS;
    if (!warm)
        p->jobs++;
    if (warm && waited_ns > LONG_WAIT_NS && waited_ns > 4 * own_ns)
        atomic_store_explicit(&p->contended, CALM_JOBS, memory_order_relaxed);
    else if (calm > 0)
        atomic_store_explicit(&p->contended, calm - 1, memory_order_relaxed);
}

int nnd_pool_contended(const NndPool *p)
{
    return p && atomic_load_explicit(&((NndPool *)p)->contended, memory_order_relaxed) > 0;
}

void *nnd_pool_scratch(NndPool *p, size_t bytes)
{
    if (!p || in_pool_job)
        return NULL;
    if (bytes > p->scratch_bytes) {
        void *m = NULL;
        if (posix_memalign(&m, 64, bytes) != 0)
            return NULL;
        free(p->scratch);
        p->scratch = m;
        p->scratch_bytes = bytes;
    }
    return p->scratch;
}

/* Hands the job set up in p (fn, ctx, items, chunks) to the workers. */
static void start_job(NndPool *p)
{
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
}

/* Waits until every worker is done with the current job. */
static void finish_job(NndPool *p)
{
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0 && spins < p->spin) {
        CPU_RELAX();
        spins++;
        maybe_yield(p, spins);
    }
    if (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

void nnd_parallel_for(NndPool *p, NndRangeFn fn, void *ctx, int64_t n, int64_t grain)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    int64_t want = n / grain + (n % grain != 0); /* ceil(n / grain) without overflow */
    if (!p || p->n == 1 || want <= 1 || in_pool_job) {
        fn(ctx, 0, n);
        return;
    }
    nnd_pool_wait_posted(p);
    p->fn = fn;
    p->ctx = ctx;
    p->items = n;
    p->chunks = (int)(want < p->n ? want : p->n);
    start_job(p);
    in_pool_job = true;
    int64_t t0 = nnd_clock_ns();
    run_chunk(p, 0);
    int64_t t1 = nnd_clock_ns();
    in_pool_job = false;
    finish_job(p);
    nnd_pool_note_wait(p, t1 - t0, nnd_clock_ns() - t1);
}

/* Worker i's part of a posted job (chunk i of items = chunks): fn(ctx, i, i + 1) on
 * worker 1 alone (chunks 0 and 1 of 2) or, for a shared job, on every worker. */
static void run_posted(void *ctx, int64_t begin, int64_t end)
{
    NndPool *p = ctx;
    (void)end;
    if (begin >= 1)
        p->post_fn(p->post_ctx, begin, begin + 1);
}

int nnd_pool_post(NndPool *p, NndRangeFn fn, void *ctx, int shared)
{
    if (!p || p->n == 1 || in_pool_job || p->posted) {
        fn(ctx, 0, 1);
        return 0;
    }
    p->post_fn = fn;
    p->post_ctx = ctx;
    p->fn = run_posted;
    p->ctx = p;
    p->items = p->chunks = shared ? p->n : 2;
    p->posted = true;
    p->post_shared = shared != 0;
    start_job(p);
    return 1;
}

void nnd_pool_wait_posted(NndPool *p)
{
    if (!p || !p->posted)
        return;
    if (p->post_shared) { /* what the worker has not taken yet, shared out */
        in_pool_job = true;
        p->post_fn(p->post_ctx, 0, 1);
        in_pool_job = false;
    }
    finish_job(p);
    p->posted = false;
}
