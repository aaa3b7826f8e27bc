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

enum { SPIN_ROUNDS = 20000 };

struct NndPool {
    int n; /* threads, the caller included */
    int spin; /* rounds a waiting thread spins before it sleeps */
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

/* The CPUs a cgroup v2 quota of root/path/cpu.max (or of a cgroup above it) allows,
 * rounded up: "max PERIOD" is no limit; 0 for none.  root is /sys/fs/cgroup but for
 * tests. */
int nnd_cgroup_cpus(const char *root, const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int least = 0;
    for (;;) {
        char file[4200];
        snprintf(file, sizeof file, "%s%s%s/cpu.max", root, dir[0] == '/' ? "" : "/", dir);
        FILE *f = fopen(file, "r");
        if (f) {
            char quota[32];
            double period;
            if (fscanf(f, "%31s %lf", quota, &period) == 2 && strcmp(quota, "max") != 0 &&
                period > 0) {
                double q = strtod(quota, NULL) / period;
                int n = q > 0 ? (int)fmin(ceil(q - 1e-9), 1 << 20) : 1;
                n = n < 1 ? 1 : n;
                least = least == 0 || n < least ? n : least;
            }
            fclose(f);
        }
        char *slash = strrchr(dir, '/');
        if (!slash || dir[0] == 0 || !strcmp(dir, "/"))
            return least;
        *slash = 0; /* the cgroup above */
        if (!dir[0])
            snprintf(dir, sizeof dir, "/");
    }
}

/* The process's own cgroup v2 ("0::/path" in /proc/self/cgroup). */
static int quota_cpus(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f)
        return 0;
    char line[4200];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "0::", 3)) {
            line[strcspn(line, "\n")] = 0;
            n = nnd_cgroup_cpus("/sys/fs/cgroup", line + 3);
            break;
        }
    fclose(f);
    return n;
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
    NndPool *p = calloc(1, sizeof *p);
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
    p->fn = fn;
    p->ctx = ctx;
    p->items = n;
    p->chunks = (int)(want < p->n ? want : p->n);
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    in_pool_job = true;
    run_chunk(p, 0);
    in_pool_job = false;
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0 && spins < p->spin) {
        CPU_RELAX();
        spins++;
    }
    if (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
