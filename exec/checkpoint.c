#define _DEFAULT_SOURCE /* DIR, mkdir */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const CKPT_PREFIX = "step-", *const CKPT_SUFFIX = ".safetensors";

/* The step a checkpoint file is named for (step-00000123.safetensors), or -1. */
static int64_t ckpt_file_step(const char *name)
{
    size_t lp = strlen(CKPT_PREFIX), ls = strlen(CKPT_SUFFIX), n = strlen(name);
    if (n <= lp + ls || strncmp(name, CKPT_PREFIX, lp) || strcmp(name + n - ls, CKPT_SUFFIX))
        return -1;
    int64_t v = 0;
    for (size_t i = lp; i < n - ls; i++) {
        if (name[i] < '0' || name[i] > '9' || v > INT64_MAX / 10 - 10)
            return -1;
        v = v * 10 + (name[i] - '0');
    }
    return v;
}

/* Steps of the checkpoint files in dir, ascending; n gets their count. */
static int64_t *ckpt_list(const char *dir, int *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    VEC(int64_t) v = {0};
    for (struct dirent *de; (de = readdir(d));) {
        int64_t s = ckpt_file_step(de->d_name);
        if (s >= 0)
            vec_push(&v, s);
    }
    closedir(d);
    for (int i = 1; i < v.n; i++) /* insertion sort: a handful of files */
        for (int j = i; j > 0 && v.v[j - 1] > v.v[j]; j--) {
            int64_t t = v.v[j];
            v.v[j] = v.v[j - 1];
            v.v[j - 1] = t;
        }
    *n = v.n;
    return v.v;
}

static char *ckpt_path(const char *dir, int64_t step)
{
    StrBuf b = {0};
    sb_printf(&b, "%s/%s%08lld%s", dir, CKPT_PREFIX, (long long)step, CKPT_SUFFIX);
    return b.s;
}

/* mkdir -p */
static bool make_dirs(const char *dir, char *err, size_t errlen)
{
    char *d = xstrdup(dir);
    for (char *q = d + 1;; q++) {
        bool end = *q == 0;
        if (*q == '/' || end) {
            *q = 0;
            if (mkdir(d, 0777) != 0 && errno != EEXIST) {
                snprintf(err, errlen, "cannot create the checkpoint directory %s: %s", d, strerror(errno));
                free(d);
                return false;
            }
            if (end)
                break;
            *q = '/';
        }
    }
    free(d);
    return true;
}

/* Writes every parameter and state, and the training point, to path. */
static bool checkpoint_write(const Program *p, const Model *m, const char *path, const NndTrainPoint *at,
                      char *err, size_t errlen)
{
    int n = p->params.n + p->states.n;
    NndNamedTensor *named = xcalloc((size_t)(n ? n : 1), sizeof(NndNamedTensor));
    for (int i = 0; i < p->params.n; i++)
        named[i] = (NndNamedTensor){p->params.v[i].name, &m->params[i]};
    for (int i = 0; i < p->states.n; i++)
        named[p->params.n + i] = (NndNamedTensor){p->states.v[i].name, &m->states[i]};
    char step[32], epoch[32], lsum[40], ln[32], seed[32], batch[32], samples[32];
    snprintf(step, sizeof step, "%lld", (long long)at->step);
    snprintf(epoch, sizeof epoch, "%lld", (long long)at->epoch);
    snprintf(lsum, sizeof lsum, "%.17g", at->loss_sum);
    snprintf(ln, sizeof ln, "%lld", (long long)at->loss_n);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)p->seed);
    snprintf(batch, sizeof batch, "%lld", (long long)p->batch);
    snprintf(samples, sizeof samples, "%lld", (long long)p->data.v[p->train_data].n);
    char accum[32];
    snprintf(accum, sizeof accum, "%lld", (long long)p->accumulate);
    NndStrPair meta[] = {{"format", "nnd-checkpoint"}, {"step", step}, {"epoch", epoch},
                         {"loss_sum", lsum}, {"loss_n", ln}, {"seed", seed}, {"batch", batch},
                         {"train_samples", samples}, {"accumulate", accum}};
    NndErr e;
    /* "accumulate" only when it is used: files stay as they were without it */
    int nmeta = (int)NND_ARRAY_LEN(meta) - (p->accumulate > 1 ? 0 : 1);
    bool ok = nnd_safetensors_write(path, named, n, meta, nmeta, &e) == 0;
    if (!ok)
        snprintf(err, errlen, "%s", e.msg);
    free(named);
    return ok;
}

int checkpoint_hook(void *ctx, const NndTrainPoint *at, NndErr *err)
{
    const CheckpointTarget *c = ctx;
    char msg[1024];
    if (!make_dirs(c->p->ckpt_dir, msg, sizeof msg))
        return nnd_err(err, "%s", msg);
    char *path = ckpt_path(c->p->ckpt_dir, at->step);
    bool ok = checkpoint_write(c->p, c->m, path, at, msg, sizeof msg);
    free(path);
    if (!ok)
        return nnd_err(err, "%s", msg);
    /* keep the newest ones: the one just written is among them */
    int n;
    int64_t *steps = ckpt_list(c->p->ckpt_dir, &n);
    for (int i = 0; c->p->ckpt_keep > 0 && i < n - c->p->ckpt_keep; i++) {
        char *old = ckpt_path(c->p->ckpt_dir, steps[i]);
        remove(old);
        free(old);
    }
    free(steps);
    return 0;
}

static bool meta_int(const NndSafetensors *st, const char *key, int64_t *out)
{
    const char *v = nnd_safetensors_meta(st, key);
    if (!v || !*v)
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*end || errno)
        return false;
    *out = x;
    return true;
}

bool checkpoint_load(const Program *p, Model *m, const char *path, NndTrainPoint *at, char **used,
                     char *err, size_t errlen)
{
    struct stat sb;
    char *file = NULL;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        int n;
        int64_t *steps = ckpt_list(path, &n);
        if (n == 0) {
            free(steps);
            snprintf(err, errlen, "%s: no checkpoint (step-*.safetensors) in this directory", path);
            return false;
        }
        file = ckpt_path(path, steps[n - 1]);
        free(steps);
    } else {
        file = xstrdup(path);
    }
    NndSafetensors st;
    NndErr e;
    if (nnd_safetensors_open(&st, file, &e) != 0) {
        snprintf(err, errlen, "%s", e.msg);
        free(file);
        return false;
    }
    bool ok = true;
    const char *fmt = nnd_safetensors_meta(&st, "format");
    int64_t seed, batch, samples, ln;
    if (!fmt || strcmp(fmt, "nnd-checkpoint") != 0 || !meta_int(&st, "step", &at->step) ||
        !meta_int(&st, "epoch", &at->epoch) || !meta_int(&st, "loss_n", &ln) ||
        !meta_int(&st, "seed", &seed) || !meta_int(&st, "batch", &batch) ||
        !meta_int(&st, "train_samples", &samples) || !nnd_safetensors_meta(&st, "loss_sum")) {
        snprintf(err, errlen, "%s: not an nnd checkpoint (its metadata lacks the training point; "
                              "a model saved by `save` holds only parameters)", file);
        ok = false;
    }
    int64_t accum = 1;
    if (ok && nnd_safetensors_meta(&st, "accumulate") && !meta_int(&st, "accumulate", &accum)) {
        snprintf(err, errlen, "%s: its metadata 'accumulate' is not a whole number", file);
        ok = false;
    }
    if (ok && accum != p->accumulate) {
        snprintf(err, errlen, "%s was written by a run with accumulate = %lld, this one has %lld: "
                              "a resumed run must draw the same batches", file, (long long)accum,
                 (long long)p->accumulate);
        ok = false;
    }
    if (ok) {
        at->loss_n = ln;
        at->loss_sum = strtod(nnd_safetensors_meta(&st, "loss_sum"), NULL);
        const char *what = (uint64_t)seed != p->seed ? "seed" : batch != p->batch ? "batch" : NULL;
        if (what || samples != p->data.v[p->train_data].n) {
            snprintf(err, errlen, "%s was written by a run with %s %lld, this one has %lld: a "
                                  "resumed run must draw the same batches",
                     file, what ? what : "a training set of", (long long)(what ? (what[0] == 's' ? seed : batch) : samples),
                     (long long)(what ? (what[0] == 's' ? (int64_t)p->seed : p->batch) : p->data.v[p->train_data].n));
            ok = false;
        }
    }
    for (int k = 0; ok && k < p->params.n + p->states.n; k++) {
        bool is_p = k < p->params.n;
        const char *name = is_p ? p->params.v[k].name : p->states.v[k - p->params.n].name;
        NndTensor *dst = is_p ? &m->params[k] : &m->states[k - p->params.n];
        const NndSafetensorsEntry *en = nnd_safetensors_find(&st, name);
        bool shape_ok = en && en->rank == dst->rank && en->dtype == dst->dtype;
        for (int d = 0; shape_ok && d < dst->rank; d++)
            shape_ok = en->shape[d] == dst->shape[d];
        if (!shape_ok) {
            snprintf(err, errlen, "%s: %s '%s'%s", file, en ? "a different shape or dtype for" : "no tensor",
                     name, en ? " than this program's" : " (the checkpoint is of another program, or "
                                                         "its update rules changed)");
            ok = false;
            break;
        }
        NndTensor t;
        if (nnd_safetensors_load(&st, name, &t, &e) != 0) {
            snprintf(err, errlen, "%s", e.msg);
            ok = false;
            break;
        }
        memcpy(dst->data, t.data, (size_t)nnd_tensor_numel(&t) * nnd_dtype_size(t.dtype));
        nnd_tensor_free(&t);
    }
    nnd_safetensors_close(&st);
    if (ok && used)
        *used = file;
    else
        free(file);
    return ok;
}

int checkpoint_remove_stale_temps(const Program *p, int *removed, char *err, size_t errlen)
{
    NndErr e;
    if (nnd_remove_stale_temps(p->ckpt_dir, "step-*.safetensors", STALE_TEMP_AGE_S, removed, &e) == 0)
        return 0;
    snprintf(err, errlen, "%s", e.msg);
    return -1;
}
