#define _POSIX_C_SOURCE 200809L
#include "dist.h"

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

struct Dist {
    int rank, ranks, local;
    NndDType dtype;
    VEC(void *) bufs; /* the gradient sums */
    VEC(int64_t) counts;
    int64_t total;
    void *pack;
    double seconds; /* in all-reduce */
    int64_t calls;
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

Dist *dist_init(char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    MPI_Init(NULL, NULL);
    Dist *d = xcalloc(1, sizeof *d);
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
        fprintf(out, "all-reduce: %lld calls, %.3f s (%d ranks, %lld values each)\n",
                (long long)d->calls, d->seconds, d->ranks, (long long)d->total);
    vec_free(&d->bufs);
    vec_free(&d->counts);
    free(d->pack);
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
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long t = cores / (d->local > 0 ? d->local : 1);
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

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return s ? h : 0;
}

bool dist_check_same(Dist *d, const Program *p, char *err, size_t errlen)
{
    (void)d;
    static const char *const what[] = {
        "the program (its models, loss, update rules, float type, seed, batch, accumulate "
        "or training set)",
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
            return true;
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

void dist_attach(Dist *d, const Program *p, void *const *states)
{
    d->dtype = p->float_dtype;
    d->bufs.n = d->counts.n = 0;
    d->total = 0;
    for (int i = 0; i < p->states.n; i++) {
        const StateInfo *s = &p->states.v[i];
        size_t len = strlen(s->name);
        if (s->param < 0 || len < 9 || strcmp(s->name + len - 9, ".grad_sum") != 0)
            continue;
        const Node *n = &p->g.nodes.v[s->node];
        bool sym;
        int64_t count = shape_static_numel(&n->shape, &sym);
        vec_push(&d->bufs, states[i]);
        vec_push(&d->counts, count);
        d->total += count;
    }
    free(d->pack);
    d->pack = xcalloc((size_t)d->total + 1, nnd_dtype_size(d->dtype));
}

int dist_reduce(void *ctx, double *vals, int n, NndErr *err)
{
    (void)err;
    Dist *d = ctx;
    double t0 = now();
    size_t es = nnd_dtype_size(d->dtype);
    size_t off = 0;
    for (int i = 0; i < d->bufs.n; i++) {
        memcpy((char *)d->pack + off, d->bufs.v[i], (size_t)d->counts.v[i] * es);
        off += (size_t)d->counts.v[i] * es;
    }
    MPI_Allreduce(MPI_IN_PLACE, d->pack, (int)d->total,
                  d->dtype == NND_F64 ? MPI_DOUBLE : MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    off = 0;
    for (int i = 0; i < d->bufs.n; i++) {
        memcpy(d->bufs.v[i], (char *)d->pack + off, (size_t)d->counts.v[i] * es);
        off += (size_t)d->counts.v[i] * es;
    }
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
void dist_attach(Dist *d, const Program *p, void *const *states)
{
    (void)d;
    (void)p;
    (void)states;
}
int dist_reduce(void *ctx, double *vals, int n, NndErr *err)
{
    (void)ctx;
    (void)vals;
    (void)n;
    return nnd_err(err, "no MPI");
}
#endif
