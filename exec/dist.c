#define _POSIX_C_SOURCE 200809L
#include "dist.h"

#include "nnd_runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool dist_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMIX_RANK") != NULL;
}

#ifdef NND_HAVE_MPI
#include <mpi.h>

/* Consecutive gradient sums below this size share one all-reduce (a bucket, copied
 * into one buffer and back), as PyTorch DDP's buckets do: one call's latency for many
 * biases.  A larger sum is reduced alone, in place, as soon as it is finished. */
enum { BUCKET_BYTES = 256 << 10 };

/* $NND_DIST_BUCKET_BYTES into *bytes, else BUCKET_BYTES (0: every sum alone); false
 * when it is set but not a whole number >= 0. */
static bool bucket_bytes(size_t *bytes)
{
    const char *e = getenv("NND_DIST_BUCKET_BYTES");
    *bytes = BUCKET_BYTES;
    if (!e)
        return true;
    char *end;
    errno = 0;
    long long v = strtoll(e, &end, 10);
    if (!*e || *end || v < 0 || errno == ERANGE)
        return false;
    *bytes = (size_t)v;
    return true;
}

typedef struct Bucket {
    int first, n; /* gradient sums [first, first + n) of the order */
    int64_t count; /* their values */
    char *buf; /* n > 1: the values gathered; else NULL (in place) */
} Bucket;

struct Dist {
    int rank, ranks, local;
    NndDType dtype;
    VEC(void *) bufs; /* the gradient sums, in the order their all-reduces start */
    VEC(int64_t) counts;
    VEC(int) state; /* their state indices */
    VEC(Bucket) buckets; /* the all-reduces, in order */
    VEC(MPI_Request) reqs; /* one per bucket */
    int ready; /* gradient sums finished this step (bufs[0..ready)) */
    int started; /* buckets whose all-reduce started this step */
    int64_t total;
    size_t bucket_cap; /* bytes: $NND_DIST_BUCKET_BYTES, read once */
    double seconds; /* in all-reduce */
    int64_t calls;
    const bool *early_at; /* per gradient sum: finished before the step's last product */
    int64_t early, sums; /* gradient sums whose all-reduce started during the backward
                            pass (before its last product), all */
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void free_buckets(Dist *d)
{
    for (int b = 0; b < d->buckets.n; b++)
        free(d->buckets.v[b].buf);
    d->buckets.n = 0;
}

Dist *dist_init(char *err, size_t errlen)
{
    size_t cap;
    if (!bucket_bytes(&cap)) {
        snprintf(err, errlen,
                 "NND_DIST_BUCKET_BYTES='%.40s' is not a byte count (a whole number >= 0)",
                 getenv("NND_DIST_BUCKET_BYTES"));
        return NULL;
    }
    MPI_Init(NULL, NULL);
    Dist *d = xcalloc(1, sizeof *d);
    d->bucket_cap = cap;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->ranks);
    const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    d->local = ls && atoi(ls) > 0 ? atoi(ls) : d->ranks;
    return d;
}

void dist_finish(Dist *d, FILE *out)
{
    if (!d)
        return;
    if (out && d->rank == 0 && d->calls > 0)
        fprintf(out,
                "all-reduce: %lld steps, %.3f s waiting (%d ranks, %lld values each, %d "
                "all-reduce%s a step); %lld of %lld gradient sums started during the backward "
                "pass\n",
                (long long)d->calls, d->seconds, d->ranks, (long long)d->total, d->buckets.n,
                d->buckets.n == 1 ? "" : "s", (long long)d->early, (long long)d->sums);
    vec_free(&d->bufs);
    vec_free(&d->counts);
    vec_free(&d->state);
    vec_free(&d->reqs);
    free_buckets(d);
    vec_free(&d->buckets);
    free(d);
    MPI_Finalize();
}

void dist_abort(Dist *d, int rc)
{
    (void)d;
    MPI_Abort(MPI_COMM_WORLD, rc);
}

int dist_rank(const Dist *d) { return d->rank; }
int dist_ranks(const Dist *d) { return d->ranks; }

int dist_default_threads(const Dist *d)
{
    /* the CPUs this rank may use (mpirun binds each rank to a core by default: one),
     * shared with the other ranks on the node where they are not bound */
    long t = nnd_cpu_count() / (d->local > 0 ? d->local : 1);
    return t > 0 ? (int)t : 1;
}

/* The index of the first value that is not the same on every rank, or -1. */
static int first_difference(const uint64_t *v, int n)
{
    uint64_t *lo = xcalloc((size_t)n + 1, sizeof(uint64_t));
    uint64_t *hi = xcalloc((size_t)n + 1, sizeof(uint64_t));
    MPI_Allreduce(v, lo, n, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(v, hi, n, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    int at = -1;
    for (int i = 0; i < n && at < 0; i++)
        if (lo[i] != hi[i])
            at = i;
    free(lo);
    free(hi);
    return at;
}

static uint64_t hash_str(const char *s) { return s ? fnv1a(FNV_OFFSET, s, strlen(s)) : 0; }

/* The ranks that get 1 sample of a batch of m (rank r takes [m·r/N, m·(r+1)/N)),
 * named into b ("ranks 0 and 1 get", "rank 1 gets"); their count. */
static int ranks_with_one(int64_t m, int ranks, StrBuf *b)
{
    enum { SHOWN = 4 };
    int n = 0;
    for (int r = 0; r < ranks; r++)
        n += m * (r + 1) / ranks - m * r / ranks == 1;
    sb_printf(b, "rank%s ", n == 1 ? "" : "s");
    for (int r = 0, k = 0; r < ranks && k < SHOWN; r++) {
        if (m * (r + 1) / ranks - m * r / ranks != 1)
            continue;
        k++;
        sb_printf(b, "%s%d", k == 1 ? "" : k == n ? " and " : ", ", r);
    }
    if (n > SHOWN)
        sb_printf(b, " and %d more", n - SHOWN);
    sb_printf(b, " get%s", n == 1 ? "s" : "");
    return n;
}

/* How a batch of m is split over the ranks: "1 + 2", or "1 or 2 per rank" for many
 * ranks. */
static void split_text(int64_t m, int ranks, StrBuf *b)
{
    if (ranks > 8) {
        sb_printf(b, "%lld or %lld per rank", (long long)(m / ranks), (long long)(m / ranks + 1));
        return;
    }
    for (int r = 0; r < ranks; r++)
        sb_printf(b, "%s%lld", r ? " + " : "", (long long)(m * (r + 1) / ranks - m * r / ranks));
}

/* Batch statistics need two samples (elab_train.c's check_batch_of_one, for one
 * process): batch norm is not synchronized, each rank normalizes its part of a
 * batch and moves its running statistics from it, so a part of one sample makes
 * them NaN.  False, with a message, when some rank's part of a full batch or of
 * the epoch's last batch holds one sample. */
static bool check_parts(const Dist *d, const Program *p, char *err, size_t errlen)
{
    const char *state = program_batch_statistic(p);
    if (!state || d->ranks < 2)
        return true;
    int64_t n = p->data.v[p->train_data].n;
    int64_t used = nnd_train_samples_per_epoch(n, p->batch, p->drop_last);
    int64_t sizes[2] = {p->batch < used ? p->batch : used, p->batch < used ? used % p->batch : 0};
    for (int i = 0; i < 2; i++) {
        int64_t m = sizes[i];
        StrBuf who = {0}, split = {0};
        if (m == 0 || ranks_with_one(m, d->ranks, &who) == 0) {
            sb_free(&who);
            continue;
        }
        split_text(m, d->ranks, &split);
        if (i == 0)
            snprintf(err, errlen,
                     "batch = %lld on %d ranks: each batch is split %s, %s 1 sample, and "
                     "'%s' is updated from statistics over each rank's part of the batch "
                     "(batch norm), which need at least 2 samples: use a larger batch or "
                     "fewer ranks",
                     (long long)p->batch, d->ranks, split.s, who.s, state);
        else
            snprintf(err, errlen,
                     "the last batch of each epoch holds %lld samples (%lld samples, batch "
                     "%lld), split %s on %d ranks: %s 1 sample, and '%s' is updated from "
                     "statistics over each rank's part of the batch (batch norm), which need "
                     "at least 2: set drop_last = true, or another batch size or number of "
                     "ranks",
                     (long long)m, (long long)n, (long long)p->batch, split.s, d->ranks, who.s,
                     state);
        sb_free(&who);
        sb_free(&split);
        return false;
    }
    return true;
}

bool dist_check_same(Dist *d, const Program *p, char *err, size_t errlen)
{
    static const char *const what[] = {
        ("the program (its models, loss, update rules, float type, seed, batch, accumulate "
         "or training set)"), /* (parenthesized: one element, for clang's
                                 -Wstring-concatenation) */
        "the hyper-parameters",
        "the number of steps (steps or epochs)",
        "the evaluations",
        "the save path",
        "the checkpoint directory or its interval",
    };
    uint64_t facts[] = {
        program_fingerprint(p),           (uint64_t)p->hypers.n,
        (uint64_t)program_total_steps(p), (uint64_t)p->evals.n,
        hash_str(p->save_path),           hash_str(p->ckpt_dir) ^ (uint64_t)p->ckpt_every};
    int at = first_difference(facts, (int)(sizeof facts / sizeof facts[0]));
    if (at < 0) {
        uint64_t *h = xcalloc((size_t)p->hypers.n + 1, sizeof(uint64_t));
        for (int i = 0; i < p->hypers.n; i++)
            memcpy(&h[i], &p->hypers.v[i].value, sizeof(double));
        int hi = first_difference(h, p->hypers.n);
        free(h);
        if (hi < 0)
            return check_parts(d, p, err, errlen);
        snprintf(err, errlen,
                 "the ranks differ in the value of '%s' (%g on rank %d): every rank must run "
                 "the same file with the same --set",
                 p->hypers.v[hi].name, p->hypers.v[hi].value, d->rank);
        return false;
    }
    snprintf(err, errlen,
             "the ranks differ in %s: every rank must run the same file with the same --set",
             what[at]);
    return false;
}

void dist_attach(Dist *d, const Program *p, void *const *states, const IntVec *order,
                 const bool *early)
{
    d->early_at = early;
    d->dtype = p->float_dtype;
    d->bufs.n = d->counts.n = d->state.n = d->reqs.n = 0;
    free_buckets(d);
    d->total = 0;
    d->ready = d->started = 0;
    size_t es = nnd_dtype_size(d->dtype), cap = d->bucket_cap;
    for (int k = 0; k < order->n; k++) {
        int i = order->v[k];
        bool sym;
        int64_t count = shape_static_numel(&p->g.nodes.v[p->states.v[i].node].shape, &sym);
        vec_push(&d->bufs, states[i]);
        vec_push(&d->counts, count);
        vec_push(&d->state, i);
        d->total += count;
        Bucket *last = d->buckets.n ? &d->buckets.v[d->buckets.n - 1] : NULL;
        if (last && (size_t)(last->count + count) * es <= cap) {
            last->n++;
            last->count += count;
        } else {
            Bucket b = {k, 1, count, NULL};
            vec_push(&d->buckets, b);
            MPI_Request none = MPI_REQUEST_NULL;
            vec_push(&d->reqs, none);
        }
    }
    for (int b = 0; b < d->buckets.n; b++)
        if (d->buckets.v[b].n > 1)
            d->buckets.v[b].buf = xmalloc((size_t)d->buckets.v[b].count * es);
}

/* Copies bucket b's gradient sums into its buffer (in) or back out of it. */
static void bucket_copy(Dist *d, const Bucket *b, bool in)
{
    size_t es = nnd_dtype_size(d->dtype), at = 0;
    for (int k = b->first; k < b->first + b->n; k++) {
        size_t bytes = (size_t)d->counts.v[k] * es;
        if (in)
            memcpy(b->buf + at, d->bufs.v[k], bytes);
        else
            memcpy(d->bufs.v[k], b->buf + at, bytes);
        at += bytes;
    }
}

/* Starts the all-reduces of the buckets whose gradient sums are all among the first
 * `ready`, in order (the same on every rank). */
static void start_ready(Dist *d, int ready)
{
    MPI_Datatype t = d->dtype == NND_F64 ? MPI_DOUBLE : MPI_FLOAT;
    d->ready = ready;
    for (; d->started < d->buckets.n; d->started++) {
        Bucket *b = &d->buckets.v[d->started];
        if (b->first + b->n > ready)
            break;
        if (b->buf)
            bucket_copy(d, b, true);
        MPI_Iallreduce(MPI_IN_PLACE, b->buf ? (void *)b->buf : d->bufs.v[b->first], (int)b->count,
                       t, MPI_SUM, MPI_COMM_WORLD, &d->reqs.v[d->started]);
    }
}

void dist_ready(NndStepArgs *args, int32_t state)
{
    Dist *d = args->ready_ctx;
    double t0 = now();
    int k = d->ready;
    while (k < d->state.n && d->state.v[k] != state)
        k++;
    if (k < d->state.n) {
        int from = d->started;
        start_ready(d, k + 1);
        for (int b = from; b < d->started; b++) {
            const Bucket *bk = &d->buckets.v[b];
            if (d->early_at && d->early_at[bk->first + bk->n - 1])
                d->early += bk->n;
        }
    }
    /* Open MPI moves non-blocking collectives on inside MPI calls: one now */
    int flag;
    MPI_Testall(d->started, d->reqs.v, &flag, MPI_STATUSES_IGNORE);
    d->seconds += now() - t0;
}

int dist_reduce(void *ctx, double *vals, int n, NndErr *err)
{
    (void)err;
    Dist *d = ctx;
    double t0 = now();
    start_ready(d, d->state.n); /* what the step did not start: all of it on a rank with
                                   no samples in the last micro-batch, or interpreted */
    MPI_Waitall(d->started, d->reqs.v, MPI_STATUSES_IGNORE);
    for (int b = 0; b < d->buckets.n; b++)
        if (d->buckets.v[b].buf)
            bucket_copy(d, &d->buckets.v[b], false);
    d->sums += d->state.n;
    d->ready = d->started = 0;
    MPI_Allreduce(MPI_IN_PLACE, vals, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    d->seconds += now() - t0;
    d->calls++;
    return 0;
}

#else /* without MPI */

Dist *dist_init(char *err, size_t errlen)
{
    snprintf(err, errlen,
             "started by mpirun, but this nnd was built without MPI: install Open MPI "
             "(apt-get install libopenmpi-dev openmpi-bin, or scripts/setup.sh) and "
             "configure again (cmake -S . -B build)");
    return NULL;
}

void dist_finish(Dist *d, FILE *out)
{
    (void)d;
    (void)out;
}
void dist_abort(Dist *d, int rc)
{
    (void)d;
    exit(rc);
}
int dist_rank(const Dist *d) { return d ? 0 : 0; }
int dist_ranks(const Dist *d) { return d ? 1 : 1; }
int dist_default_threads(const Dist *d) { return d ? 1 : 1; }
bool dist_check_same(Dist *d, const Program *p, char *err, size_t errlen)
{
    (void)d;
    (void)p;
    (void)err;
    (void)errlen;
    return true;
}
void dist_attach(Dist *d, const Program *p, void *const *states, const IntVec *order,
                 const bool *early)
{
    (void)early;
    (void)d;
    (void)p;
    (void)states;
    (void)order;
}
void dist_ready(NndStepArgs *args, int32_t state)
{
    (void)args;
    (void)state;
}
int dist_reduce(void *ctx, double *vals, int n, NndErr *err)
{
    (void)ctx;
    (void)vals;
    (void)n;
    return nnd_err(err, "no MPI");
}
#endif
