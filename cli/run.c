/* run: `nnd run`, training a program's train block: compile, build the step, set up
 * the model (or resume it from a checkpoint), the log and the pool, train, report,
 * save. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli.h"
#include "dist.h"
#include "jit.h"
#include "logger.h"
#include "numerics.h"
#include "plot.h"

/* Parameters after training: small ones in full, others summarized. */
static void print_params(const Program *p, const Model *m)
{
    for (int i = 0; i < p->params.n; i++) {
        const NndTensor *t = &m->params[i];
        int64_t n = nnd_tensor_numel(t);
        char sh[128];
        shape_format(&p->g, &graph_node((Graph *)&p->g, p->params.v[i].node)->shape, sh, sizeof sh);
        printf("%s %s:", p->params.v[i].name, sh);
        double lo = INFINITY, hi = -INFINITY, sum = 0, sq = 0;
        for (int64_t k = 0; k < n; k++) {
            double v = t->dtype == NND_F64 ? ((double *)t->data)[k] : ((float *)t->data)[k];
            if (n <= 64)
                printf(" %.6g", v);
            lo = fmin(lo, v);
            hi = fmax(hi, v);
            sum += v;
            sq += v * v;
        }
        if (n > 64)
            printf(" min %.4g max %.4g mean %.4g norm %.4g", lo, hi, sum / (double)n, sqrt(sq));
        printf("\n");
    }
}

/* The temporary files that saves and checkpoints of killed runs left behind: only
 * those named like this run's own outputs, and only stale ones. */
static bool remove_stale_temps(const Program *p)
{
    int saves = 0, ckpts = 0;
    NndErr e;
    char err[1024];
    if (p->save_path &&
        nnd_remove_stale_temps_of(p->save_path, STALE_TEMP_AGE_S, &saves, &e) != 0) {
        fprintf(stderr, "nnd: %s\n", e.msg);
        return false;
    }
    if (p->ckpt_dir && checkpoint_remove_stale_temps(p, &ckpts, err, sizeof err) != 0) {
        fprintf(stderr, "nnd: %s\n", err);
        return false;
    }
    if (saves + ckpts)
        printf("removed %d temporary file%s left by a save that was killed midway\n", saves + ckpts,
               saves + ckpts == 1 ? "" : "s");
    return true;
}

/* Whether a run can make dir (mkdir -p) and write in it: every part of it that
 * exists is a directory, and the last one that exists can be written.  False with
 * why. */
static bool check_out_dir(const char *dir, char *why, size_t len)
{
    char *d = xstrdup(dir);
    size_t n = strlen(d), have = 0; /* the longest prefix that exists */
    bool ok = true;
    for (size_t i = 1; ok && i <= n; i++) {
        if (d[i] != '/' && d[i] != 0)
            continue;
        char c = d[i];
        d[i] = 0;
        struct stat st;
        if (stat(d, &st) != 0) {
            d[i] = c;
            break;
        }
        if (!S_ISDIR(st.st_mode)) {
            const char *kind = S_ISREG(st.st_mode)                          ? "a regular file"
                               : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                               : S_ISFIFO(st.st_mode)                       ? "a FIFO"
                                                                            : "a socket";
            if (c)
                snprintf(why, len, "%s: %s is not a directory (%s)", dir, d, kind);
            else
                snprintf(why, len, "%s: not a directory (%s)", dir, kind);
            ok = false;
        }
        have = i;
        d[i] = c;
    }
    if (ok) {
        const char *in = have ? d : d[0] == '/' ? "/" : ".";
        d[have] = 0;
        if (access(in, W_OK) != 0) {
            if (have)
                snprintf(why, len, "%s: cannot write in the directory %s: %s", dir, in,
                         strerror(errno));
            else
                snprintf(why, len, "%s: cannot write in the working directory: %s", dir,
                         strerror(errno));
            ok = false;
        }
    }
    free(d);
    return ok;
}

/* Whether the log file at path holds a record past its start: a metrics.csv more
 * than its header, an event file more than its first record (the file version). */
static bool log_file_has_records(const char *path, bool csv)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    if (csv)
        return st.st_size > (off_t)strlen("step,epoch,tag,value\n");
    FILE *f = fopen(path, "rb");
    unsigned char b[8];
    uint64_t len = 0;
    bool ok = f && fread(b, 1, 8, f) == 8;
    if (f)
        fclose(f);
    for (int i = 7; ok && i >= 0; i--)
        len = len << 8 | b[i];
    return !ok || len > (uint64_t)st.st_size || (uint64_t)st.st_size > 8 + 4 + len + 4;
}

/* Whether dir holds a run's log with records in it (a run that stopped before its
 * first step leaves only the files' heads, and no reason to pick another name). */
static bool holds_run_log(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));) {
        bool csv = strcmp(e->d_name, "metrics.csv") == 0;
        if (csv || strncmp(e->d_name, "events.out.tfevents.", 20) == 0) {
            char *path = xasprintf("%s/%s", dir, e->d_name);
            found = log_file_has_records(path, csv);
            free(path);
        }
    }
    closedir(d);
    return found;
}

/* The save file, the log and the checkpoint directory, checked before training,
 * not after it or midway (the trained weights would have nowhere to go).  False
 * after a diagnostic at the path.  Only rank 0 (which writes the log) looks for an
 * earlier run's log under --name: another rank could find the one rank 0 has just
 * begun. */
static bool check_outputs(const Options *o, const Program *p, int rank, Diags *d)
{
    NndErr werr;
    if (p->save_path && nnd_check_write_path(p->save_path, &werr) != 0) {
        diag_error(d, p->save_span, "cannot save there: %s", werr.msg);
        return false;
    }
    char why[1024];
    char *named = p->log.dir && o->name ? xasprintf("%s/%s", p->log.dir, o->name) : NULL;
    /* a new run would mix its log with that run's (metrics.csv starts again) */
    if (named && rank == 0 && !o->resume && holds_run_log(named)) {
        fprintf(stderr,
                "nnd: --name %s: %s holds the log of an earlier run: pick another --name, or "
                "continue that run with --resume\n",
                o->name, named);
        free(named);
        return false;
    }
    bool log_ok = !p->log.dir || check_out_dir(named ? named : p->log.dir, why, sizeof why);
    free(named);
    if (!log_ok) {
        diag_error(d, p->log.dir_span, "cannot log there: %s", why);
        return false;
    }
    if (p->ckpt_dir && !check_out_dir(p->ckpt_dir, why, sizeof why)) {
        diag_error(d, p->ckpt_span, "cannot checkpoint there: %s", why);
        return false;
    }
    return true;
}

/* --time: how long compiling took, by phase. */
static void print_compile_time(const Executable *x, double t_front)
{
    printf("compile: %.1f ms (front end, graph and autodiff %.1f ms",
           1e3 * (t_front + x->compile_seconds), 1e3 * t_front);
    if (x->jit) {
        double ir, opt, mc;
        jit_phases(x->jit, &ir, &opt, &mc);
        if (jit_cached(x->jit))
            printf("; kernels and IR %.1f ms, machine code from the cache %.1f ms",
                   1e3 * (x->compile_seconds - mc), 1e3 * mc);
        else
            printf("; kernels and IR %.1f ms, LLVM passes %.1f ms, machine code %.1f ms%s",
                   1e3 * (x->compile_seconds - opt - mc), 1e3 * opt, 1e3 * mc,
                   jit_parts(x->jit) > 1 ? " in the slowest of the parallel parts" : "");
    }
    printf(")\n");
}

/* What computes the program's matrix products on this CPU. */
static const char *products_on(const Program *p, bool interp)
{
    if (interp)
        return p->g.bf16 ? "bf16 products emulated by the reference interpreter"
                         : "products of the reference interpreter";
    if (p->float_dtype == NND_F64)
        return "f64 products on OpenBLAS";
    if (p->g.bf16)
        return nnd_bf16_native() ? "bf16 products on AVX512-BF16" : "bf16 products emulated";
    switch (nnd_own_sgemm()) {
    case 2: return "f32 products on nnd's AVX-512 kernels";
    case 1: return "f32 products on nnd's AVX2 kernels and OpenBLAS";
    default: return "f32 products on OpenBLAS";
    }
}

/* --time: the time per step, and what a logged step costs more (measured in one
 * process, interleaved). */
static void print_step_time(const Program *p, bool interp, const NndTrainResult *res, int64_t ran)
{
    int64_t batch = NND_MIN(p->batch, p->data.v[p->train_data].n); /* a batch is at most all */
    if (ran > 0)
        printf("time: %.3f ms per step, %.0f samples/s (training steps only; %s)\n",
               1e3 * res->seconds / (double)ran, (double)ran * (double)batch / res->seconds,
               products_on(p, interp));
    if (res->full_steps > 0 && res->full_steps < ran) {
        double full = res->full_seconds / (double)res->full_steps;
        double plain = (res->seconds - res->full_seconds) / (double)(ran - res->full_steps);
        printf("time: logged steps %.3f ms (%lld of them, statistics and writing included), "
               "the others %.3f ms: %+.1f%%\n",
               1e3 * full, (long long)res->full_steps, 1e3 * plain, 100 * (full / plain - 1));
    }
}

/* After a successful run: the summary lines, the parameters, the profile, and the
 * model saved.  Returns an exit code. */
static int finish_run(const Options *o, const Program *p, const Executable *x, const Model *model,
                      const NndTrainResult *res, const TrainOptions *to)
{
    printf("done: %lld steps, final training loss %.6g\n", (long long)res->steps, res->final_loss);
    if (o->time)
        print_step_time(p, o->interp, res, res->steps - to->resume.step);
    /* a run that early stopping ended wrote none at its last step */
    if (p->ckpt_dir && res->steps > to->resume.step && res->checkpoint_step == res->steps)
        printf("checkpoint: %s/step-%08lld.safetensors\n", p->ckpt_dir, (long long)res->steps);
    if (o->print_params)
        print_params(p, model);
    if (o->profile) {
        StrBuf b = {0};
        /* the steps this run ran (not those of a resumed run's past) */
        int64_t ran = res->steps - to->resume.step;
        executable_profile(x, ran - res->full_steps, res->full_steps, &b);
        if (b.s)
            fputs(b.s, stdout);
        sb_free(&b);
    }
    if (!p->save_path || to->rank != 0)
        return NND_EXIT_OK;
    char err[1024];
    if (!model_save(p, model, p->save_path, res->steps, err, sizeof err)) {
        fprintf(stderr, "nnd: %s\n", err);
        return NND_EXIT_ERROR;
    }
    int layer_states = 0;
    for (int i = 0; i < p->states.n; i++)
        layer_states += p->states.v[i].param < 0;
    if (layer_states)
        printf("saved %d parameters and %d state tensors to %s\n", p->params.n, layer_states,
               p->save_path);
    else
        printf("saved %d parameters to %s\n", p->params.n, p->save_path);
    return NND_EXIT_OK;
}

/* Under mpirun: what a distributed run cannot do yet, and the ranks' programs and
 * settings compared.  False after printing why. */
static bool dist_program(Options *o, const Program *p)
{
    char err[1024];
    if (!dist_check_same(o->dist, p, err, sizeof err)) {
        fprintf(stderr, "nnd: %s\n", err);
        o->dist_collective = true; /* every rank found it */
        return false;
    }
    const DataSet *td = &p->data.v[p->train_data];
    if (dist_rank(o->dist) == 0 && (td->kind == DATA_IDX || td->kind == DATA_NPY)) {
        if (nnd_rows_mapped(td->x_rows))
            printf("data: each rank reads the samples of its part of each batch from %s\n",
                   td->path_x);
        else
            printf("data: each rank loads all of %s%s (only an uncompressed idx or npy file "
                   "is read on demand)\n",
                   td->path_x, td->x_rows ? ", its values as stored" : "");
    }
    return true;
}

/* Where the run's outputs go, as absolute paths: they are relative to the working
 * directory (data paths are relative to the .nnd file; docs/language.md). */
static void print_outputs(const Program *p, const char *log_file)
{
    char cwd[4096];
    if (!(p->save_path || p->ckpt_dir || log_file) || !getcwd(cwd, sizeof cwd))
        return;
    const char *what[3] = {"save", "checkpoints", "log"};
    const char *path[3] = {p->save_path, p->ckpt_dir, log_file};
    printf("outputs:");
    for (int i = 0, n = 0; i < 3; i++) {
        if (!path[i])
            continue;
        const char *slash = strrchr(path[i], '/');
        size_t dir = i == 2 && slash ? (size_t)(slash - path[i]) : strlen(path[i]);
        printf("%s %s %s%s%.*s", n++ ? "," : "", what[i], path[i][0] == '/' ? "" : cwd,
               path[i][0] == '/' ? "" : "/", (int)dir, path[i]);
    }
    printf("\n");
}

/* The newest run of a log directory (its last subdirectory holding a metrics.csv:
 * date-times sort in time order), or NULL; malloc'd. */
static char *newest_run(const char *dir)
{
    PathVec runs = {0};
    plot_find_runs(dir, false, &runs);
    char *last = runs.n ? runs.v[runs.n - 1] : NULL;
    for (int i = 0; i + 1 < runs.n; i++)
        free(runs.v[i]);
    vec_free(&runs);
    return last;
}

/* precision = bf16: how the products run on this CPU, or by the interpreter; in an
 * f64 program, that they stay f64 (docs/language.md). */
static void print_precision(const Options *o, const Program *p)
{
    if (!p->g.bf16) {
        if (p->bf16_asked && p->float_dtype == NND_F64)
            fprintf(stderr, "nnd: note: precision = bf16 rounds f32 products; those of an f64 "
                            "program (--dtype f64) stay f64\n");
    } else if (o->interp) {
        printf("precision: bf16 products with f32 sums (emulated by the reference "
               "interpreter)\n");
    } else if (nnd_bf16_native()) {
        printf("precision: bf16 products with f32 sums (AVX512-BF16)\n");
    } else {
        fprintf(stderr, "nnd: note: precision = bf16 is emulated on this CPU (it has no "
                        "AVX512-BF16): the products are rounded as on one that has it, at f32 "
                        "speed\n");
    }
}

/* Where this run logs: a subdirectory of the `log` statement's directory, named by
 * --name or by the date and time the run started (a resumed run without --name:
 * the newest run there); malloc'd. */
static char *log_run_dir(const Program *p, const Options *o)
{
    if (o->name)
        return xasprintf("%s/%s", p->log.dir, o->name);
    char *last = o->resume ? newest_run(p->log.dir) : NULL;
    if (last)
        return last;
    time_t now = time(NULL);
    struct tm tm;
    char stamp[32];
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    char *d = xasprintf("%s/%s", p->log.dir, stamp);
    for (int k = 2; access(d, F_OK) == 0; k++) {
        free(d);
        d = xasprintf("%s/%s-%d", p->log.dir, stamp, k);
    }
    return d;
}

/* --verbose: the threads and the CPUs they were sized by (nnd_cpu_count), which
 * threads gather the batches (train_gathers_on_caller), and how each convolution is
 * computed. */
static void print_gather(bool verbose, const Program *p, const Executable *x, const NndPool *pool)
{
    if (!verbose)
        return;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    printf("threads: %d (the process may use %d of the %ld online CPUs: its affinity mask, "
           "a CPU quota)\n",
           nnd_pool_threads(pool), nnd_cpu_count(), online > 0 ? online : 1);
    if (train_gathers_on_caller(p, pool))
        puts("batches: gathered by the calling thread (the products that read x run on it)");
    else if (nnd_pool_threads(pool) > 1 && x->step_sched.idle_at >= 0 && !p->distributed &&
             p->accumulate <= 1)
        printf("batches: gathered by the pool's %d threads, each next one during the step "
               "(from k%d on, where the workers would wait)\n",
               nnd_pool_threads(pool), x->step_sched.idle_at);
    else
        printf("batches: gathered by the pool's %d threads\n", nnd_pool_threads(pool));
    train_print_convs(p, stdout);
}

/* Ctrl-C (SIGINT) or SIGTERM during training: the first stops the run after the
 * update it is in (with a checkpoint where the program writes them), a second one
 * stops the process at once, as without the handler. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
    if (stop_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
    /* Ctrl-C's words for SIGINT; SIGTERM (kill, a job scheduler) named */
    static const char intr[] = "\nnnd: stopping after this step (a second Ctrl-C stops at once)\n",
                      term[] = "\nnnd: SIGTERM: stopping after this step (a second signal stops "
                               "at once)\n";
    ssize_t n = sig == SIGINT ? write(STDERR_FILENO, intr, sizeof intr - 1)
                              : write(STDERR_FILENO, term, sizeof term - 1);
    (void)n;
}

/* Installs on_stop_signal for SIGINT and SIGTERM (old[2] keeps what was there); a
 * signal the process was started ignoring (a shell's background job, nohup) stays
 * ignored. */
static void catch_stop_signals(struct sigaction old[2])
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    const int sigs[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++)
        if (sigaction(sigs[i], NULL, &old[i]) == 0 && old[i].sa_handler != SIG_IGN)
            sigaction(sigs[i], &sa, NULL);
}

static void release_stop_signals(const struct sigaction old[2])
{
    sigaction(SIGINT, &old[0], NULL);
    sigaction(SIGTERM, &old[1], NULL);
}

/* train_run, stopped by Ctrl-C or SIGTERM after an update; not under mpirun, where
 * the ranks would stop at different steps. */
static int train_stoppable(const Options *o, Program *p, Executable *x, Model *m, TrainOptions *to,
                           NndTrainResult *res, char *err, size_t errlen)
{
    if (o->dist)
        return train_run(p, x, m, to, res, err, errlen);
    struct sigaction old[2];
    catch_stop_signals(old);
    to->stop = &stop_signal;
    int rc = train_run(p, x, m, to, res, err, errlen);
    release_stop_signals(old);
    return rc;
}

/* s as one word of a POSIX shell's command line: as it is when it holds only
 * characters no shell treats specially, else in single quotes. */
static void put_shell_word(FILE *f, const char *s)
{
    static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789_./=:,+-";
    if (*s && s[strspn(s, plain)] == 0) {
        fputs(s, f);
        return;
    }
    fputc('\'', f);
    for (; *s; s++)
        if (*s == '\'')
            fputs("'\\''", f); /* close, an escaped quote, open again */
        else
            fputc(*s, f);
    fputc('\'', f);
}

/* The command that continues the run from the checkpoints in dir: the command line
 * as given (the settings a resumed run must repeat: --set, --seed, --dtype, --name,
 * the file), its --resume left out, then --resume dir. */
static void put_resume_command(FILE *f, const Options *o, const char *dir)
{
    for (int i = 0; i < o->argc; i++) {
        if (o->resume_at > 0 && i == o->resume_at) { /* the option, not a value "--resume" */
            i++;
            continue;
        }
        put_shell_word(f, o->argv[i]);
        fputc(' ', f);
    }
    fputs("--resume ", f);
    put_shell_word(f, dir);
}

/* What an interrupted run left, and how to go on; the exit code a shell gives a
 * process the signal stopped (128 + its number). */
static int report_interrupt(const Options *o, const Program *p, const NndTrainResult *res)
{
    fprintf(stderr, "nnd: interrupted after step %lld of %lld", (long long)res->steps,
            (long long)program_total_steps(p));
    if (p->ckpt_dir && res->checkpoint_step == res->steps) {
        fprintf(stderr, "; checkpoint written in %s: continue with `", p->ckpt_dir);
        put_resume_command(stderr, o, p->ckpt_dir);
        fprintf(stderr, "`\n");
    } else {
        fprintf(stderr, "; nothing saved (a `checkpoint every N steps to \"DIR\"` statement "
                        "in the train block lets a run go on from where it stopped)\n");
    }
    return 128 + stop_signal;
}

/* --name: a directory name (or none given) */
static bool valid_run_name(const char *name)
{
    return !name || (*name && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, ".."));
}

/* The run's functions, planned for the batches training passes them. */
static bool build_run(const Options *o, Program *p, Executable *x)
{
    char err[1024] = "";
    ExecOptions eo = {.engine = o->interp ? ENGINE_INTERP : ENGINE_JIT,
                      .profile = o->profile,
                      .check_numerics = o->check_numerics,
                      .max_batch = train_max_batch(p)};
    if (executable_build(x, p, &eo, err, sizeof err))
        return true;
    fprintf(stderr, "nnd: %s\n", err);
    return false;
}

static int run_one(Options *o)
{
    if (o->files.n != 1)
        return cli_usage_error("%s", "run takes one file");
    if (!valid_run_name(o->name))
        return cli_usage_error("--name names the run's log subdirectory: a name without '/', "
                               "got '%s'",
                               o->name);
    Frontend fe;
    frontend_init(&fe);
    double t0 = clock_seconds();
    Program *p = cli_compile(&fe, o, o->files.v[0], NULL, NULL, false);
    double t_front = clock_seconds() - t0;
    int rc = NND_EXIT_ERROR;
    char err[1024] = "";
    Executable x;
    Model model;
    bool have_x = false, have_model = false;
    EarlyState early_resume = {0}; /* what --resume gives early stopping */
    NndPool *pool = NULL;
    if (p)
        p->rows_data = true; /* batches convert their rows: a gzip image set stays u8 */
    if (!p || !program_load_data(p, &fe.diags) || (o->dist && !dist_program(o, p)))
        goto done;
    int rank = o->dist ? dist_rank(o->dist) : 0;
    if (!check_outputs(o, p, rank, &fe.diags))
        goto done;
    if (rank == 0 && !remove_stale_temps(p))
        goto done;
    if (!build_run(o, p, &x))
        goto done;
    have_x = true;
    if (rank == 0)
        print_precision(o, p);
    if (o->verbose) {
        StrBuf b = {0};
        executable_describe(&x, &b);
        fputs(b.s, stdout);
        sb_free(&b);
    }
    if (o->time)
        print_compile_time(&x, t_front);
    NndErr perr;
    pool =
        nnd_pool_create(o->threads || !o->dist ? o->threads : dist_default_threads(o->dist), &perr);
    if (!pool) {
        fprintf(stderr, "nnd: %s\n", perr.msg);
        goto done;
    }
    print_gather(o->verbose, p, &x, pool);
    if (!model_init(p, &model, err, sizeof err)) {
        fprintf(stderr, "nnd: cannot initialize the parameters: %s\n", err);
        goto done;
    }
    have_model = true;
    TrainOptions to = {.pool = pool,
                       .progress = rank == 0 ? stdout : NULL,
                       .interactive = isatty(fileno(stdout)) != 0 && !o->dist,
                       .rank = rank,
                       .ranks = o->dist ? dist_ranks(o->dist) : 1,
                       .reduce = dist_reduce,
                       .ready = dist_ready,
                       .reduce_ctx = o->dist};
    if (o->resume) {
        char *used = NULL;
        bool have_early;
        if (!checkpoint_load(p, &model, o->resume, &to.resume, &used, &early_resume, &have_early,
                             stderr, err, sizeof err)) {
            fprintf(stderr, "nnd: --resume: %s\n", err);
            goto done;
        }
        to.early_resume = have_early ? &early_resume : NULL;
        printf("resuming from %s: step %lld of %lld\n", used, (long long)to.resume.step,
               (long long)program_total_steps(p));
        free(used);
    }
    if (o->dist)
        dist_attach(o->dist, p, model.state_ptrs, &x.grad_order, x.grad_early);
    if (rank == 0 && p->ckpt_dir && !checkpoint_check_dir(p, &to.resume, stderr, err, sizeof err)) {
        fprintf(stderr, "nnd: %s\n", err);
        goto done;
    }
    Logger lg;
    bool have_log = false;
    char *run_dir = NULL;
    if (p->log.dir && rank == 0) {
        run_dir = log_run_dir(p, o);
        bool ok = logger_open(&lg, p, &model, run_dir, o->resume != NULL, stderr, to.interactive,
                              err, sizeof err);
        free(run_dir);
        if (!ok) {
            fprintf(stderr, "nnd: %s\n", err);
            goto done;
        }
        have_log = true;
        logger_hooks(&lg, &to);
        printf("logging to %s\n", nnd_log_events_path(lg.log));
    }
    if (rank == 0)
        print_outputs(p, have_log ? nnd_log_events_path(lg.log) : NULL);
    NndTrainResult res = {0};
    EarlyReport early = {0};
    to.early = &early;
    rc = train_stoppable(o, p, &x, &model, &to, &res, err, sizeof err);
    if (have_log && !lg.failed && (early.stopped || early.restored)) {
        /* the stop and the best step, as scalars at the step the run ended */
        NndErr le;
        int64_t at = early.stopped ? early.stop_step : res.steps;
        if (nnd_log_scalar(lg.log, "early_stop/best_step", at, early.best_epoch,
                           (double)early.best_step, &le) != 0 ||
            nnd_log_scalar(lg.log, "early_stop/best", at, early.best_epoch, early.best, &le) != 0) {
            lg.failed = true;
            snprintf(lg.err, sizeof lg.err, "%s", le.msg);
        }
    }
    if (have_log) {
        if (lg.failed && rc == NND_EXIT_OK) {
            snprintf(err, sizeof err, "%s", lg.err);
            rc = NND_EXIT_ERROR;
        }
        logger_close(&lg);
    }
    if (rc == NND_EXIT_OK && res.interrupted) {
        rc = report_interrupt(o, p, &res);
    } else if (rc != NND_EXIT_OK) {
        if (res.nonfinite == 2) {
            numerics_report(p, &fe.diags, &res);
        } else {
            fprintf(stderr, "nnd: %s\n", err);
            if (res.nonfinite)
                fprintf(stderr, "nnd: run with --check-numerics to find the op that made it\n");
        }
    } else {
        rc = finish_run(o, p, &x, &model, &res, &to);
    }
done:
    early_state_free(&early_resume);
    if (have_model)
        model_free(&model);
    nnd_pool_destroy(pool);
    if (have_x)
        executable_free(&x);
    diags_print(&fe.diags, stderr);
    program_free(p);
    frontend_free(&fe);
    return rc;
}

int cmd_run(Options *o)
{
    if (!o->interp)
        jit_prewarm(); /* LLVM's start beside the front end */
    if (!dist_launched())
        return run_one(o);
    char err[1024];
    if (!(o->dist = dist_init(err, sizeof err))) {
        fprintf(stderr, "nnd: %s\n", err);
        return NND_EXIT_ERROR;
    }
    if (o->profile) { /* every rank sees it: they stop together */
        if (dist_rank(o->dist) == 0)
            fprintf(stderr, "nnd: --profile times the kernels of one process's step, and a "
                            "distributed run's steps are not timed yet: profile one process "
                            "(nnd run FILE --profile)\n");
        dist_finish(o->dist, NULL);
        o->dist = NULL;
        return NND_EXIT_USAGE;
    }
    /* rank 0 alone prints; every rank reports errors */
    if (dist_rank(o->dist) != 0 && !freopen("/dev/null", "w", stdout))
        fprintf(stderr, "nnd: rank %d: cannot silence its output\n", dist_rank(o->dist));
    int rc = run_one(o);
    fflush(stdout);
    fflush(stderr);
    /* an error of one rank (not found by all) stops the others, which would wait for
     * it in the next all-reduce */
    if (rc != NND_EXIT_OK && !o->dist_collective)
        dist_abort(o->dist, rc);
    dist_finish(o->dist, stdout);
    o->dist = NULL;
    return rc;
}
