#define _DEFAULT_SOURCE /* DIR, mkdir */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
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

static char *ckpt_path(const char *dir, int64_t step)
{
    StrBuf b = {0};
    sb_printf(&b, "%s/%s%08lld%s", dir, CKPT_PREFIX, (long long)step, CKPT_SUFFIX);
    return b.s;
}

/* A checkpoint file of a directory, with the identities its metadata gives (""
 * when it has none: written by an older nnd, or not a checkpoint). */
typedef struct CkptFile {
    int64_t step;
    char program[17], run[17];
} CkptFile;

typedef VEC(CkptFile) CkptFiles;

/* A gradient sum of `accumulate` or of a distributed program (NAME.grad_sum): zero
 * at every step boundary (the update that reads it sets it to zero), so not part
 * of a checkpoint, which is then the same for 1 process and for N ranks. */
static bool is_grad_sum(const Program *p, int state)
{
    const char *n = p->states.v[state].name;
    size_t len = strlen(n);
    return p->states.v[state].param >= 0 && len > 9 && strcmp(n + len - 9, ".grad_sum") == 0;
}

/* The hyper-parameters of the gradient sums (accumulate.samples, .micro): a
 * distributed program has them for any accumulate, one process only for k > 1. */
static bool is_accum_hyper(const char *name) { return strncmp(name, "accumulate.", 11) == 0; }

/* The hashes of the nodes that roots read (memo, graph_count slots), each from its
 * op, attributes and inputs' hashes; a parameter, state or hyper-parameter by its
 * name (not its index, which the gradient sums move); with grads, each parameter's
 * gradient as the update rules see it by that parameter's name alone. */
static void hash_nodes(const Program *p, const NodeId *roots, int n, bool grads, uint64_t *memo)
{
    const Graph *g = &p->g;
    bool *live = xcalloc((size_t)graph_count(g), 1);
    graph_mark_live((Graph *)g, roots, n, live);
    for (int i = 0; grads && i < p->grads.n; i++)
        if (p->grads.v[i]) {
            memo[p->grads.v[i]] = fnv1a_str(0x9e3779b97f4a7c15ull, p->params.v[i].name);
            live[p->grads.v[i]] = false;
        }
    for (int id = 1; id < graph_count(g); id++)
        if (live[id])
            memo[id] = program_node_hash(g, (NodeId)id, memo, true);
    free(live);
}

/* What a resumed run must share, the same for 1 process and N ranks (unlike
 * program_fingerprint, which the ranks compare: a distributed program sums its
 * gradients for any accumulate): the settings that draw the batches, the tensors
 * a checkpoint holds, the names of the hyper-parameters, the loss, and each update
 * of a parameter or state from the gradients its rules see. */
static uint64_t ckpt_program_hash(const Program *p)
{
    int64_t settings[7] = {p->float_dtype, (int64_t)p->seed,           p->batch,
                           p->accumulate,  p->data.v[p->train_data].n, p->shuffle,
                           p->drop_last};
    uint64_t h = fnv1a(0xcbf29ce484222325ull, settings, sizeof settings);
    for (int i = 0; i < p->params.n; i++)
        h = fnv1a_str(h, p->params.v[i].name);
    for (int i = 0; i < p->states.n; i++)
        if (!is_grad_sum(p, i))
            h = fnv1a_str(h, p->states.v[i].name);
    for (int i = 0; i < p->hypers.n; i++)
        if (!is_accum_hyper(p->hypers.v[i].name))
            h = fnv1a_str(h, p->hypers.v[i].name);
    uint64_t *memo = xcalloc((size_t)graph_count(&p->g), sizeof(uint64_t));
    hash_nodes(p, &p->loss, 1, false, memo);
    h = fnv1a(h, &memo[p->loss], sizeof(uint64_t));
    NodeVec roots = {0};
    for (int i = 0; i < p->updates.n; i++)
        vec_push(&roots, p->updates.v[i].value);
    memset(memo, 0, sizeof(uint64_t) * (size_t)graph_count(&p->g));
    hash_nodes(p, roots.v, roots.n, true, memo);
    for (int i = 0; i < p->updates.n; i++) {
        const Update *u = &p->updates.v[i];
        if (u->is_state && is_grad_sum(p, u->index))
            continue;
        h = fnv1a_str(h, u->is_state ? p->states.v[u->index].name : p->params.v[u->index].name);
        h = fnv1a(h, &memo[u->value], sizeof(uint64_t));
    }
    vec_free(&roots);
    free(memo);
    return h;
}

/* The identities from the program's hash h: the program's, and the run's (the
 * program with its total steps and hyper-parameter values, those of the gradient
 * sums left out unless legacy: two runs with the same one make the same
 * checkpoints), as 16 hex digits each. */
static void ids_of(const Program *p, uint64_t h, bool legacy, char program[17], char run[17])
{
    snprintf(program, 17, "%016llx", (unsigned long long)h);
    int64_t total = program_total_steps(p);
    h = (h ^ (uint64_t)total) * 0x100000001b3ull;
    for (int i = 0; i < p->hypers.n; i++) {
        if (!legacy && is_accum_hyper(p->hypers.v[i].name))
            continue;
        uint64_t bits;
        memcpy(&bits, &p->hypers.v[i].value, sizeof bits);
        for (int k = 0; k < 8; k++)
            h = (h ^ ((bits >> (8 * k)) & 0xff)) * 0x100000001b3ull;
    }
    snprintf(run, 17, "%016llx", (unsigned long long)h);
}

/* The identities a checkpoint of p carries (ckpt_program_hash). */
static void ckpt_ids(const Program *p, char program[17], char run[17])
{
    ids_of(p, ckpt_program_hash(p), false, program, run);
}

/* The checkpoint files in dir, by ascending step; those of p written with the
 * identities of an older nnd (program_fingerprint, which differs between 1
 * process and N ranks) carry p's. */
static void ckpt_list(const Program *p, const char *dir, CkptFiles *out)
{
    char prog_id[17], run_id[17], old_prog[17], old_run[17];
    ckpt_ids(p, prog_id, run_id);
    ids_of(p, program_fingerprint(p), true, old_prog, old_run);
    out->n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d));) {
        CkptFile f = {ckpt_file_step(de->d_name), "", ""};
        if (f.step < 0)
            continue;
        char *path = ckpt_path(dir, f.step);
        NndSafetensors st;
        NndErr e;
        if (nnd_safetensors_open(&st, path, &e) == 0) {
            const char *prog = nnd_safetensors_meta(&st, "program"),
                       *run = nnd_safetensors_meta(&st, "run");
            snprintf(f.program, sizeof f.program, "%s", prog ? prog : "");
            snprintf(f.run, sizeof f.run, "%s", run ? run : "");
            if (strcmp(f.program, old_prog) == 0)
                memcpy(f.program, prog_id, sizeof f.program);
            if (strcmp(f.run, old_run) == 0)
                memcpy(f.run, run_id, sizeof f.run);
            nnd_safetensors_close(&st);
        }
        free(path);
        vec_push(out, f);
    }
    closedir(d);
    for (int i = 1; i < out->n; i++) /* insertion sort: a handful of files */
        for (int j = i; j > 0 && out->v[j - 1].step > out->v[j].step; j--) {
            CkptFile tmp = out->v[j];
            out->v[j] = out->v[j - 1];
            out->v[j - 1] = tmp;
        }
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
                snprintf(err, errlen, "cannot create the checkpoint directory %s: %s", d,
                         strerror(errno));
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

static const char *const EARLY_PREFIX = "early_stop/";

void early_state_free(EarlyState *s)
{
    if (s->have_model)
        model_free(&s->model);
    memset(s, 0, sizeof *s);
}

/* What a checkpoint's metadata 'early_stop' says the run watched: "min val loss". */
static void early_watch(const Program *p, char *out, size_t n)
{
    snprintf(out, n, "%s %s", p->early.maximize ? "max" : "min", p->early.what);
}

/* The name of tensor `name` of the model at early stopping's best. */
static char *early_name(const char *name)
{
    StrBuf b = {0};
    sb_printf(&b, "%s%s", EARLY_PREFIX, name);
    return b.s;
}

/* Writes every parameter and state, the training point, the identities and early
 * stopping's state (when c has one) to path. */
static bool checkpoint_write(const CheckpointTarget *c, const char *path, const NndTrainPoint *at,
                             char *err, size_t errlen)
{
    const Program *p = c->p;
    const Model *m = c->m;
    const EarlyState *es = c->early;
    bool best = es && es->have_best && es->have_model;
    int all = p->params.n + p->states.n;
    NndNamedTensor *named = xcalloc((size_t)(2 * all + 1), sizeof(NndNamedTensor));
    const NndTensor **at_best = xcalloc((size_t)(all + 1), sizeof(NndTensor *));
    char **names = xcalloc((size_t)(all + 1), sizeof(char *));
    int n = 0; /* the model's tensors, the gradient sums left out */
    for (int k = 0; k < all; k++) {
        bool is_p = k < p->params.n;
        int i = is_p ? k : k - p->params.n;
        if (!is_p && is_grad_sum(p, i))
            continue;
        named[n] = (NndNamedTensor){is_p ? p->params.v[i].name : p->states.v[i].name,
                                    is_p ? &m->params[i] : &m->states[i]};
        if (best)
            at_best[n] = is_p ? &es->model.params[i] : &es->model.states[i];
        n++;
    }
    for (int i = 0; best && i < n; i++) {
        names[i] = early_name(named[i].name);
        named[n + i] = (NndNamedTensor){names[i], at_best[i]};
    }
    int total = best ? 2 * n : n;
    char step[32], epoch[32], lsum[40], ln[32], seed[32], batch[32], samples[32], prog[17], run[17];
    snprintf(step, sizeof step, "%lld", (long long)at->step);
    snprintf(epoch, sizeof epoch, "%lld", (long long)at->epoch);
    snprintf(lsum, sizeof lsum, "%.17g", at->loss_sum);
    snprintf(ln, sizeof ln, "%lld", (long long)at->loss_n);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)p->seed);
    snprintf(batch, sizeof batch, "%lld", (long long)p->batch);
    snprintf(samples, sizeof samples, "%lld", (long long)p->data.v[p->train_data].n);
    ckpt_ids(p, prog, run);
    char accum[32];
    snprintf(accum, sizeof accum, "%lld", (long long)p->accumulate);
    NndStrPair meta[16] = {{"format", "nnd-checkpoint"},
                           {"step", step},
                           {"epoch", epoch},
                           {"loss_sum", lsum},
                           {"loss_n", ln},
                           {"seed", seed},
                           {"batch", batch},
                           {"train_samples", samples},
                           {"program", prog},
                           {"run", run}};
    int nmeta = 10;
    /* "accumulate" only when it is used: files stay as they were without it */
    if (p->accumulate > 1)
        meta[nmeta++] = (NndStrPair){"accumulate", accum};
    char watch[256], bv[40], bstep[32], bepoch[32], bad[32];
    if (es) {
        early_watch(p, watch, sizeof watch);
        meta[nmeta++] = (NndStrPair){"early_stop", watch};
    }
    if (best) {
        snprintf(bv, sizeof bv, "%.17g", es->best);
        snprintf(bstep, sizeof bstep, "%lld", (long long)es->best_step);
        snprintf(bepoch, sizeof bepoch, "%lld", (long long)es->best_epoch);
        snprintf(bad, sizeof bad, "%lld", (long long)es->bad);
        meta[nmeta++] = (NndStrPair){"early_stop_best", bv};
        meta[nmeta++] = (NndStrPair){"early_stop_best_step", bstep};
        meta[nmeta++] = (NndStrPair){"early_stop_best_epoch", bepoch};
        meta[nmeta++] = (NndStrPair){"early_stop_bad", bad};
    }
    NndErr e;
    bool ok = nnd_safetensors_write(path, named, total, meta, nmeta, &e) == 0;
    if (!ok)
        snprintf(err, errlen, "%s", e.msg);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(at_best);
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
    bool ok = checkpoint_write(c, path, at, msg, sizeof msg);
    free(path);
    if (!ok)
        return nnd_err(err, "%s", msg);
    if (c->p->ckpt_keep <= 0)
        return 0;
    /* keep this run's newest ones (the one just written is among them); other
     * runs' checkpoints in the directory are not this run's to remove */
    char prog[17], run[17];
    ckpt_ids(c->p, prog, run);
    CkptFiles files = {0};
    ckpt_list(c->p, c->p->ckpt_dir, &files);
    int mine = 0;
    for (int i = 0; i < files.n; i++)
        mine += strcmp(files.v[i].run, run) == 0;
    for (int i = 0; i < files.n && mine > c->p->ckpt_keep; i++) {
        if (strcmp(files.v[i].run, run) != 0)
            continue;
        char *old = ckpt_path(c->p->ckpt_dir, files.v[i].step);
        remove(old);
        free(old);
        mine--;
    }
    vec_free(&files);
    return 0;
}

/* Whether the run writes a checkpoint after step s (1-based count of steps done):
 * every ckpt_every steps or epochs, and after the last one. */
static bool writes_step(const Program *p, int64_t s)
{
    int64_t total = program_total_steps(p), per_epoch = program_steps_per_epoch(p);
    if (s < 1 || s > total)
        return false;
    if (s == total)
        return true;
    if (p->ckpt_in_epochs)
        return s % per_epoch == 0 && (s / per_epoch) % p->ckpt_every == 0;
    return s % p->ckpt_every == 0;
}

bool checkpoint_check_dir(const Program *p, const NndTrainPoint *start, FILE *warn, char *err,
                          size_t errlen)
{
    char prog[17], run[17];
    ckpt_ids(p, prog, run);
    CkptFiles files = {0};
    ckpt_list(p, p->ckpt_dir, &files);
    int others = 0;
    int64_t clash = -1;
    for (int i = 0; i < files.n; i++) {
        const CkptFile *f = &files.v[i];
        if (strcmp(f->run, run) == 0)
            continue; /* this run's: what it writes again is the same */
        /* a resumed run continues the run it resumes, whose later checkpoints it
         * may replace; anything else would be lost */
        bool lineage = start->step > 0 && strcmp(f->program, prog) == 0;
        if (!lineage)
            others++;
        if (!lineage && clash < 0 && f->step > start->step && writes_step(p, f->step))
            clash = f->step;
    }
    vec_free(&files);
    if (clash >= 0) {
        char *path = ckpt_path(p->ckpt_dir, clash);
        snprintf(err, errlen,
                 "%s holds checkpoints of another run (%s among them) that this run "
                 "would overwrite: checkpoint to another directory, or move them",
                 p->ckpt_dir, path);
        free(path);
        return false;
    }
    if (others && warn)
        fprintf(warn,
                "warning: %s holds %d checkpoint%s of other runs (another program, seed or "
                "settings); they are kept, and --resume %s takes this program's\n",
                p->ckpt_dir, others, others == 1 ? "" : "s", p->ckpt_dir);
    return true;
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

/* The file --resume DIR takes: the newest checkpoint of this very run (same
 * program, length and hyper-parameters); else the furthest of this program (notes
 * say which, when several runs of it are there); else, when the directory holds
 * none of this program, its newest checkpoint, whose tensors and settings are then
 * checked like any file's (a changed update rule can start from it). */
static char *choose_in_dir(const Program *p, const char *dir, FILE *note, char *err, size_t errlen)
{
    char prog[17], run[17];
    ckpt_ids(p, prog, run);
    CkptFiles files = {0};
    ckpt_list(p, dir, &files);
    int own = -1, same = -1, runs = 0;
    for (int i = 0; i < files.n; i++) { /* ascending steps: later ones are newer */
        if (strcmp(files.v[i].program, prog) != 0)
            continue;
        bool new_run = true;
        for (int k = 0; k < i; k++)
            new_run &= strcmp(files.v[k].program, prog) != 0 ||
                       strcmp(files.v[k].run, files.v[i].run) != 0;
        runs += new_run;
        same = i;
        if (strcmp(files.v[i].run, run) == 0)
            own = i;
    }
    char *file = NULL;
    if (files.n == 0) {
        snprintf(err, errlen, "%s: no checkpoint (step-*.safetensors) in this directory", dir);
    } else if (own >= 0) {
        file = ckpt_path(dir, files.v[own].step);
    } else if (same >= 0) {
        file = ckpt_path(dir, files.v[same].step);
        if (note && runs > 1)
            fprintf(note,
                    "note: %s holds checkpoints of %d runs of this program, none with this "
                    "run's length and hyper-parameters: resuming the furthest, %s\n",
                    dir, runs, file);
    } else {
        file = ckpt_path(dir, files.v[files.n - 1].step);
        if (note)
            fprintf(note, "note: %s holds no checkpoint of this program: trying the newest, %s\n",
                    dir, file);
    }
    vec_free(&files);
    return file;
}

/* The training point a checkpoint's metadata gives: every field a number, the
 * running loss finite, and the same seed, batch, training set and accumulate as
 * the run's (checked against the run by point_in_run once the tensors fit). */
static bool read_point(const Program *p, const NndSafetensors *st, const char *file,
                       NndTrainPoint *at, char *err, size_t errlen)
{
    const char *fmt = nnd_safetensors_meta(st, "format");
    if (!fmt || strcmp(fmt, "nnd-checkpoint") != 0) {
        snprintf(err, errlen,
                 "%s: not an nnd checkpoint (its metadata lacks the training point; "
                 "a model saved by `save` holds only parameters)",
                 file);
        return false;
    }
    static const char *const keys[] = {"step", "epoch", "loss_n", "seed", "batch", "train_samples"};
    int64_t v[6];
    for (int i = 0; i < 6; i++)
        if (!meta_int(st, keys[i], &v[i])) {
            snprintf(err, errlen, "%s: its metadata '%s' is %s", file, keys[i],
                     nnd_safetensors_meta(st, keys[i]) ? "not a whole number" : "missing");
            return false;
        }
    int64_t accum = 1;
    if (nnd_safetensors_meta(st, "accumulate") && !meta_int(st, "accumulate", &accum)) {
        snprintf(err, errlen, "%s: its metadata 'accumulate' is not a whole number", file);
        return false;
    }
    const char *ls = nnd_safetensors_meta(st, "loss_sum");
    char *end = NULL;
    double loss_sum = ls ? strtod(ls, &end) : NAN;
    if (!ls || end == ls || *end || !isfinite(loss_sum)) {
        snprintf(err, errlen, "%s: its metadata 'loss_sum' is %s", file,
                 ls ? "not a finite number" : "missing");
        return false;
    }
    int64_t samples = p->data.v[p->train_data].n;
    const char *what = (uint64_t)v[3] != p->seed ? "seed" : v[4] != p->batch ? "batch" : NULL;
    if (what || v[5] != samples) {
        snprintf(err, errlen,
                 "%s was written by a run with %s %lld, this one has %lld: a "
                 "resumed run must draw the same batches",
                 file, what ? what : "a training set of",
                 (long long)(what ? v[what[0] == 's' ? 3 : 4] : v[5]),
                 (long long)(what ? (what[0] == 's' ? (int64_t)p->seed : p->batch) : samples));
        return false;
    }
    if (accum != p->accumulate) {
        snprintf(err, errlen,
                 "%s was written by a run with accumulate = %lld, this one has %lld: "
                 "a resumed run must draw the same batches",
                 file, (long long)accum, (long long)p->accumulate);
        return false;
    }
    *at = (NndTrainPoint){v[0], v[1], loss_sum, v[2]};
    return true;
}

/* A training point inside the run: a step up to its end, the epoch of that step,
 * a running loss over at most an epoch's samples. */
static bool point_in_run(const Program *p, const NndTrainPoint *at, const char *file, char *err,
                         size_t errlen)
{
    int64_t samples = p->data.v[p->train_data].n;
    int64_t total = program_total_steps(p), per_epoch = program_steps_per_epoch(p);
    if (at->step < 0) {
        snprintf(err, errlen, "%s: its metadata 'step' is %lld, which is not a count of steps",
                 file, (long long)at->step);
        return false;
    }
    /* at the end is a run killed between its last checkpoint and its save: resumed,
     * it trains nothing and ends (evaluations, save) */
    if (at->step > total) {
        snprintf(err, errlen,
                 "%s: its metadata 'step' is %lld, past the end of this run (%lld "
                 "steps): nothing is left to train (raise epochs or steps to train further)",
                 file, (long long)at->step, (long long)total);
        return false;
    }
    int64_t epoch = at->step > 0 ? (at->step - 1) / per_epoch : 0;
    if (at->epoch != epoch || at->loss_n < 0 || at->loss_n > samples) {
        bool e = at->epoch != epoch;
        snprintf(err, errlen,
                 "%s: its metadata '%s' is %lld, but step %lld is in epoch %lld of "
                 "%lld samples",
                 file, e ? "epoch" : "loss_n", (long long)(e ? at->epoch : at->loss_n),
                 (long long)at->step, (long long)epoch, (long long)samples);
        return false;
    }
    return true;
}

/* Every parameter and state of p from the checkpoint, by name (after prefix),
 * shapes checked. */
static bool read_tensors(const Program *p, Model *m, NndSafetensors *st, const char *file,
                         const char *prefix, char *err, size_t errlen)
{
    bool ok = true;
    for (int k = 0; ok && k < p->params.n + p->states.n; k++) {
        bool is_p = k < p->params.n;
        if (!is_p && is_grad_sum(p, k - p->params.n))
            continue; /* zero, as m starts it */
        StrBuf b = {0};
        sb_printf(&b, "%s%s", prefix,
                  is_p ? p->params.v[k].name : p->states.v[k - p->params.n].name);
        const char *name = b.s;
        NndTensor *dst = is_p ? &m->params[k] : &m->states[k - p->params.n];
        const NndSafetensorsEntry *en = nnd_safetensors_find(st, name);
        bool shape_ok = en && en->rank == dst->rank && en->dtype == dst->dtype;
        for (int d = 0; shape_ok && d < dst->rank; d++)
            shape_ok = en->shape[d] == dst->shape[d];
        if (!shape_ok) {
            snprintf(err, errlen, "%s: %s '%s'%s", file,
                     en ? "a different shape or dtype for" : "no tensor", name,
                     en ? " than this program's"
                        : " (the checkpoint is of another program, or "
                          "its update rules changed)");
            ok = false;
        }
        NndTensor t;
        NndErr e;
        if (ok && nnd_safetensors_load(st, name, &t, &e) != 0) {
            snprintf(err, errlen, "%s", e.msg);
            ok = false;
        }
        if (ok) {
            memcpy(dst->data, t.data, (size_t)nnd_tensor_numel(&t) * nnd_dtype_size(t.dtype));
            nnd_tensor_free(&t);
        }
        sb_free(&b);
    }
    return ok;
}

/* Early stopping's state from the checkpoint (at: its training point; m: the model
 * read from it, which the best one copies): *have is false, with a warning on
 * note, when the checkpoint has none for the metric this program watches. */
static bool read_early(const Program *p, const Model *m, NndSafetensors *st, const char *file,
                       const NndTrainPoint *at, EarlyState *es, bool *have, FILE *note, char *err,
                       size_t errlen)
{
    memset(es, 0, sizeof *es);
    *have = false;
    char watch[256];
    early_watch(p, watch, sizeof watch);
    const char *w = nnd_safetensors_meta(st, "early_stop");
    if (!w || strcmp(w, watch) != 0) {
        if (note && w)
            fprintf(note,
                    "warning: %s: its early stopping watched %s, this run watches %s: "
                    "early stopping starts over from step %lld\n",
                    file, w, watch, (long long)at->step);
        else if (note)
            fprintf(note,
                    "warning: %s carries no early stopping state (its run did not set "
                    "early_stop, or an older nnd wrote it): early stopping starts over "
                    "from step %lld\n",
                    file, (long long)at->step);
        return true;
    }
    if (!nnd_safetensors_meta(st, "early_stop_best")) { /* no evaluation of it yet */
        *have = true;
        return true;
    }
    static const char *const keys[] = {"early_stop_best_step", "early_stop_best_epoch",
                                       "early_stop_bad"};
    int64_t v[3];
    for (int i = 0; i < 3; i++)
        if (!meta_int(st, keys[i], &v[i])) {
            snprintf(err, errlen, "%s: its metadata '%s' is %s", file, keys[i],
                     nnd_safetensors_meta(st, keys[i]) ? "not a whole number" : "missing");
            return false;
        }
    const char *bs = nnd_safetensors_meta(st, "early_stop_best");
    char *end;
    double best = strtod(bs, &end);
    if (end == bs || *end) {
        snprintf(err, errlen, "%s: its metadata 'early_stop_best' is not a number", file);
        return false;
    }
    int64_t per_epoch = program_steps_per_epoch(p);
    if (v[0] < 1 || v[0] > at->step) {
        snprintf(err, errlen,
                 "%s: its metadata 'early_stop_best_step' is %lld, not a step from 1 to "
                 "the checkpoint's %lld",
                 file, (long long)v[0], (long long)at->step);
        return false;
    }
    if (v[1] != (v[0] - 1) / per_epoch + 1) {
        snprintf(err, errlen,
                 "%s: its metadata 'early_stop_best_epoch' is %lld, but step %lld is in epoch %lld",
                 file, (long long)v[1], (long long)v[0], (long long)((v[0] - 1) / per_epoch + 1));
        return false;
    }
    if (v[2] < 0) {
        snprintf(err, errlen,
                 "%s: its metadata 'early_stop_bad' is %lld, which is not a count of evaluations",
                 file, (long long)v[2]);
        return false;
    }
    if (!model_copy(m, &es->model, err, errlen))
        return false;
    es->have_model = true;
    if (!read_tensors(p, &es->model, st, file, EARLY_PREFIX, err, errlen)) {
        early_state_free(es);
        return false;
    }
    es->have_best = true;
    es->best = best;
    es->best_step = v[0];
    es->best_epoch = v[1];
    es->bad = v[2];
    *have = true;
    return true;
}

bool checkpoint_load(const Program *p, Model *m, const char *path, NndTrainPoint *at, char **used,
                     EarlyState *early, bool *have_early, FILE *note, char *err, size_t errlen)
{
    struct stat sb;
    char *file = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)
                     ? choose_in_dir(p, path, note, err, errlen)
                     : xstrdup(path);
    if (!file)
        return false;
    NndSafetensors st;
    NndErr e;
    if (nnd_safetensors_open(&st, file, &e) != 0) {
        snprintf(err, errlen, "%s", e.msg);
        free(file);
        return false;
    }
    NndTrainPoint point;
    bool ok = read_point(p, &st, file, &point, err, errlen) &&
              read_tensors(p, m, &st, file, "", err, errlen) &&
              point_in_run(p, &point, file, err, errlen);
    if (ok)
        model_warn_unused(p, &st, note);
    if (have_early)
        *have_early = false;
    if (ok && early && p->early.eval >= 0)
        ok = read_early(p, m, &st, file, &point, early, have_early, note, err, errlen);
    nnd_safetensors_close(&st);
    if (ok) {
        *at = point;
        if (used)
            *used = file;
    }
    if (!ok || !used)
        free(file);
    return ok;
}

int checkpoint_remove_stale_temps(const Program *p, int *removed, char *err, size_t errlen)
{
    NndErr e;
    if (nnd_remove_stale_temps(p->ckpt_dir, "step-*.safetensors", STALE_TEMP_AGE_S, removed, &e) ==
        0)
        return 0;
    snprintf(err, errlen, "%s", e.msg);
    return -1;
}
