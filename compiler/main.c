/* main: the nnd command line. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"
#include "elab.h"
#include "module.h"
#include "sema.h"
#include "parse.h"
#include "plot.h"
#include "tools.h"
#include "simplify.h"

static const char usage[] =
    "usage: nnd COMMAND [options] FILE.nnd\n"
    "\n"
    "commands:\n"
    "  run FILE        train the program's train block (compiled by LLVM)\n"
    "  check FILE...   parse and check (names, types, shapes); exit 1 on errors\n"
    "  graph FILE      print the forward/backward/update graph after simplification\n"
    "  gradcheck FILE  compare autodiff gradients with finite differences (f64)\n"
    "  emit-llvm FILE  print the optimized LLVM IR of the step, eval and forward functions\n"
    "  compare FILE --opt RULE --opt RULE ...   (or --sweep NAME=V1,V2,...)\n"
    "                  train once per update rule (or value) from the same initial\n"
    "                  weights and batches; print loss, eval metric, steps/s\n"
    "  lrfind FILE     the learning-rate range test: --min (1e-7) --max (10) --steps (100);\n"
    "                  -o FILE.svg plots the loss against the rate\n"
    "  explain FILE    each update rule as formulas, after expansion and simplification,\n"
    "                  with its memory traffic per parameter\n"
    "  plot DIR [-o FILE]  draw the scalars a `log` statement wrote to DIR/metrics.csv\n"
    "                  as an SVG (default DIR/plot.svg)\n"
    "  parse FILE      print the syntax tree\n"
    "\n"
    "options:\n"
    "  --set NAME=VALUE  override a setting or hyper-parameter (batch, epochs, steps,\n"
    "                    seed, shuffle, opt.lr, a `let` of the train block); repeatable\n"
    "  --seed N          same as --set seed=N\n"
    "  --dtype f32|f64   the float type of the whole program (default f32)\n"
    "  --interp          run with the reference interpreter instead of compiled code\n"
    "  --threads N       threads that compute (default: every core)\n"
    "  --time            print compile time, time per step and samples/s\n"
    "  --verbose         print the kernels and the planned memory\n"
    "  --print-params    print the trained parameters (small ones in full)\n"
    "  --resume CKPT     continue from a checkpoint (a file, or the newest in a\n"
    "                    directory): same seed and threads give the same bits as a\n"
    "                    run never stopped\n"
    "  --profile         time every kernel of the compiled step; print where time went\n"
    "  --check-numerics  check every op's values in each step; stop at the first NaN or\n"
    "                    Inf and show the op, its line, the phase and the step\n"
    "  graph:      --dot (Graphviz), --all (also initializers, gradients, metrics),\n"
    "              --raw (before simplification), --stats\n"
    "  gradcheck:  --batch N (4), --per-param N (24; 0 = every element), --eps E (1e-6)\n"
    "  --version, --help\n";

typedef struct Options {
    const char *cmd;
    StrVec files;
    VEC(Override) overrides;
    NndDType dtype;
    bool interp, dot, all, raw, stats, time, verbose, print_params, profile, check_numerics;
    int threads;
    const char *resume; /* run: a checkpoint file or directory */
    const char *output; /* plot: -o FILE */
    StrVec opts; /* compare: --opt */
    const char *sweep; /* compare: --sweep NAME=V1,V2 */
    double lr_min, lr_max; /* lrfind */
    int64_t lr_steps;
    GradcheckOptions gc;
} Options;

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "nnd: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(run `nnd --help` for usage)\n");
    return NND_EXIT_USAGE;
}

static bool parse_number(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE)
        return false;
    *out = v;
    return true;
}

static int add_override(Options *o, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return usage_error("--set takes NAME=VALUE, got '%s'", kv);
    Override ov = {0};
    ov.key = xstrndup(kv, (size_t)(eq - kv));
    ov.text = eq + 1;
    if (strcmp(ov.text, "true") == 0 || strcmp(ov.text, "false") == 0) {
        ov.value = ov.text[0] == 't';
        ov.is_number = true;
    } else {
        ov.is_number = parse_number(ov.text, &ov.value);
    }
    vec_push(&o->overrides, ov);
    return 0;
}

static int parse_args(int argc, char **argv, Options *o)
{
    o->dtype = NND_F32;
    o->gc = (GradcheckOptions){4, 24, 1e-6, 1e-5, 1e-3};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        double v;
        if (strcmp(a, "--set") == 0) {
            if (!next)
                return usage_error("%s needs NAME=VALUE", a);
            if (add_override(o, next))
                return NND_EXIT_USAGE;
            i++;
        } else if (strncmp(a, "--set=", 6) == 0) {
            if (add_override(o, a + 6))
                return NND_EXIT_USAGE;
        } else if (strcmp(a, "--seed") == 0) {
            if (!next || !parse_number(next, &v))
                return usage_error("%s needs a number", a);
            Override ov = {xstrdup("seed"), next, v, true, false};
            vec_push(&o->overrides, ov);
            i++;
        } else if (strcmp(a, "--dtype") == 0) {
            if (!next || (strcmp(next, "f32") && strcmp(next, "f64")))
                return usage_error("--dtype takes f32 or f64, got '%s'", next ? next : "");
            o->dtype = strcmp(next, "f64") == 0 ? NND_F64 : NND_F32;
            i++;
        } else if (strcmp(a, "--opt") == 0 || strcmp(a, "--sweep") == 0) {
            if (!next)
                return usage_error("%s needs a value", a);
            if (a[2] == 'o')
                vec_push(&o->opts, next);
            else
                o->sweep = next;
            i++;
        } else if (strcmp(a, "--min") == 0 || strcmp(a, "--max") == 0 ||
                   (strcmp(a, "--steps") == 0 && strcmp(o->cmd, "lrfind") == 0)) {
            if (!next || !parse_number(next, &v))
                return usage_error("%s needs a number", a);
            if (a[2] == 's')
                o->lr_steps = (int64_t)v;
            else
                *(a[3] == 'i' ? &o->lr_min : &o->lr_max) = v;
            i++;
        } else if (strcmp(a, "--resume") == 0) {
            if (!next)
                return usage_error("%s needs a checkpoint file or directory", a);
            o->resume = next;
            i++;
        } else if (strcmp(a, "-o") == 0) {
            if (!next)
                return usage_error("%s needs a file name", a);
            o->output = next;
            i++;
        } else if (strcmp(a, "--interp") == 0) {
            o->interp = true;
        } else if (strcmp(a, "--time") == 0) {
            o->time = true;
        } else if (strcmp(a, "--print-params") == 0) {
            o->print_params = true;
        } else if (strcmp(a, "--profile") == 0) {
            o->profile = true;
        } else if (strcmp(a, "--check-numerics") == 0) {
            o->check_numerics = true;
        } else if (strcmp(a, "--verbose") == 0) {
            o->verbose = true;
        } else if (strcmp(a, "--threads") == 0) {
            if (!next || !parse_number(next, &v) || v < 1 || v > 256 || v != floor(v))
                return usage_error("--threads needs a whole number from 1 to 256, got '%s'",
                                   next ? next : "");
            o->threads = (int)v;
            i++;
        } else if (strcmp(a, "--dot") == 0) {
            o->dot = true;
        } else if (strcmp(a, "--all") == 0) {
            o->all = true;
        } else if (strcmp(a, "--raw") == 0) {
            o->raw = true;
        } else if (strcmp(a, "--stats") == 0) {
            o->stats = true;
        } else if (strcmp(a, "--batch") == 0 || strcmp(a, "--per-param") == 0 ||
                   strcmp(a, "--eps") == 0) {
            if (!next || !parse_number(next, &v) || v < 0)
                return usage_error("%s needs a non-negative number", a);
            if (a[2] == 'b')
                o->gc.batch = v < 1 ? 1 : (int)v;
            else if (a[2] == 'p')
                o->gc.per_param = (int)v;
            else
                o->gc.eps = v;
            i++;
        } else if (a[0] == '-' && a[1]) {
            return usage_error("unknown option '%s'", a);
        } else {
            vec_push(&o->files, a);
        }
    }
    return 0;
}

/* Loads and checks a file; prints diagnostics.  Returns the main module or NULL. */
static Module *front(Frontend *fe, const char *path)
{
    Module *m = frontend_load(fe, path, span_none());
    if (m && !diags_has_errors(&fe->diags))
        sema_check(fe, m);
    if (!m || diags_has_errors(&fe->diags)) {
        diags_print(&fe->diags, stderr);
        return NULL;
    }
    return m;
}

static Program *build_with(Frontend *fe, Module *m, Options *o, SimplifyStats *st, const Ast *opt_expr)
{
    ElabOptions eo = {o->dtype, o->overrides.v, o->overrides.n, opt_expr};
    Program *p = elab_program(fe, m, &eo);
    diags_print(&fe->diags, stderr);
    if (!p)
        return NULL;
    if (!o->raw) {
        NodeRefVec roots = {0};
        program_roots(p, &roots);
        simplify_graph(&p->g, roots.v, roots.n, SIMPLIFY_FAST, st);
        vec_free(&roots);
    }
    return p;
}

static Program *build(Frontend *fe, Module *m, Options *o, SimplifyStats *st)
{
    return build_with(fe, m, o, st, NULL);
}

static int cmd_check(Options *o)
{
    if (o->files.n == 0)
        return usage_error("%s", "check needs at least one file");
    int rc = 0;
    for (int i = 0; i < o->files.n; i++) {
        Frontend fe;
        frontend_init(&fe);
        Module *m = front(&fe, o->files.v[i]);
        if (!m) {
            rc = NND_EXIT_ERROR;
        } else if (m->train) {
            Program *p = build(&fe, m, o, NULL);
            if (!p)
                rc = NND_EXIT_ERROR;
            program_free(p);
        } else {
            diags_print(&fe.diags, stderr);
        }
        frontend_free(&fe);
    }
    return rc;
}

static int cmd_parse(Options *o)
{
    if (o->files.n != 1)
        return usage_error("%s", "parse takes one file");
    Frontend fe;
    frontend_init(&fe);
    Module *m = frontend_load(&fe, o->files.v[0], span_none());
    int rc = 0;
    if (m) {
        StrBuf b = {0};
        for (int i = 0; i < m->ast->items.n; i++) {
            ast_dump(m->ast->items.v[i], &b);
            sb_putc(&b, '\n');
        }
        if (b.s)
            fputs(b.s, stdout);
        sb_free(&b);
    }
    if (diags_has_errors(&fe.diags) || !m)
        rc = NND_EXIT_ERROR;
    diags_print(&fe.diags, stderr);
    frontend_free(&fe);
    return rc;
}

static int cmd_graph(Options *o)
{
    if (o->files.n != 1)
        return usage_error("%s", "graph takes one file");
    Frontend fe;
    frontend_init(&fe);
    Module *m = front(&fe, o->files.v[0]);
    SimplifyStats st = {0};
    Program *p = m ? build(&fe, m, o, &st) : NULL;
    if (!p) {
        frontend_free(&fe);
        return NND_EXIT_ERROR;
    }
    NodeVec roots = {0};
    program_step_roots(p, &roots);
    if (o->all) {
        for (int i = 0; i < p->params.n; i++) {
            vec_push(&roots, p->params.v[i].init);
            vec_push(&roots, p->grads.v[i]);
        }
        for (int i = 0; i < p->states.n; i++)
            vec_push(&roots, p->states.v[i].init);
        for (int i = 0; i < p->evals.n; i++)
            for (int k = 0; k < p->evals.v[i].metrics.n; k++)
                vec_push(&roots, p->evals.v[i].metrics.v[k].node);
    }
    StrBuf b = {0};
    if (o->dot) {
        graph_dot(&p->g, roots.v, roots.n, &b);
    } else {
        sb_printf(&b, "# step graph of %s (forward, backward and update)%s\n", o->files.v[0],
                  o->raw ? ", before simplification" : "");
        if (o->stats && !o->raw)
            sb_printf(&b, "# %d nodes, %d before simplification: %d folded, %d identities, %d merged\n",
                      st.after, st.before, st.folded, st.identities, st.merged);
        graph_print(&p->g, roots.v, roots.n, &b, &fe.sm);
        sb_puts(&b, "# outputs\n");
        sb_printf(&b, "loss = %%%u\n", p->loss);
        for (int i = 0; i < p->updates.n; i++) {
            Update *u = &p->updates.v[i];
            sb_printf(&b, "%s <- %%%u\n",
                      u->is_state ? p->states.v[u->index].name : p->params.v[u->index].name, u->value);
        }
        for (int i = 0; i < p->params.n; i++)
            if (p->params.v[i].frozen)
                sb_printf(&b, "%s frozen\n", p->params.v[i].name);
        if (o->all) {
            for (int i = 0; i < p->params.n; i++) {
                sb_printf(&b, "init %s = %%%u\n", p->params.v[i].name, p->params.v[i].init);
                if (p->grads.v[i])
                    sb_printf(&b, "grad %s = %%%u\n", p->params.v[i].name, p->grads.v[i]);
            }
            for (int i = 0; i < p->states.n; i++)
                sb_printf(&b, "init %s = %%%u\n", p->states.v[i].name, p->states.v[i].init);
            for (int i = 0; i < p->evals.n; i++)
                for (int k = 0; k < p->evals.v[i].metrics.n; k++)
                    sb_printf(&b, "metric %s.%s = %%%u\n", p->data.v[p->evals.v[i].data].name,
                              p->evals.v[i].metrics.v[k].name, p->evals.v[i].metrics.v[k].node);
        }
    }
    fputs(b.s, stdout);
    sb_free(&b);
    vec_free(&roots);
    program_free(p);
    frontend_free(&fe);
    return 0;
}

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

static int cmd_run(Options *o)
{
    if (o->files.n != 1)
        return usage_error("%s", "run takes one file");
    Frontend fe;
    frontend_init(&fe);
    double t0 = clock_seconds();
    Module *m = front(&fe, o->files.v[0]);
    Program *p = m ? build(&fe, m, o, NULL) : NULL;
    double t_front = clock_seconds() - t0;
    int rc = NND_EXIT_ERROR;
    char err[1024] = "";
    Executable x;
    bool have_x = false;
    NndPool *pool = NULL;
    Model model;
    bool have_model = false;
    if (!p || !program_load_data(p, &fe.diags))
        goto done;
    ExecOptions eo = {o->interp ? ENGINE_INTERP : ENGINE_JIT, false, 0, o->profile, o->check_numerics};
    if (!executable_build(&x, p, &eo, err, sizeof err)) {
        fprintf(stderr, "nnd: %s\n", err);
        goto done;
    }
    have_x = true;
    if (o->verbose) {
        StrBuf b = {0};
        executable_describe(&x, &b);
        fputs(b.s, stdout);
        sb_free(&b);
    }
    if (o->time) {
        printf("compile: %.1f ms (front end, graph and autodiff %.1f ms", 1e3 * (t_front + x.compile_seconds),
               1e3 * t_front);
        if (x.jit) {
            double ir, opt, mc;
            jit_phases(x.jit, &ir, &opt, &mc);
            printf("; kernels and IR %.1f ms, LLVM passes %.1f ms, machine code %.1f ms",
                   1e3 * (x.compile_seconds - opt - mc), 1e3 * opt, 1e3 * mc);
            (void)ir;
        }
        printf(")\n");
    }
    NndErr perr;
    pool = nnd_pool_create(o->threads, &perr);
    if (!pool) {
        fprintf(stderr, "nnd: %s\n", perr.msg);
        goto done;
    }
    if (!model_init(p, &model, err, sizeof err)) {
        fprintf(stderr, "nnd: cannot initialize the parameters: %s\n", err);
        goto done;
    }
    have_model = true;
    TrainOptions to = {.pool = pool, .progress = stdout, .interactive = isatty(fileno(stdout)) != 0};
    if (o->resume) {
        char *used = NULL;
        if (!checkpoint_load(p, &model, o->resume, &to.resume, &used, err, sizeof err)) {
            fprintf(stderr, "nnd: --resume: %s\n", err);
            goto done;
        }
        printf("resuming from %s: step %lld of %lld\n", used, (long long)to.resume.step,
               (long long)program_total_steps(p));
        free(used);
    }
    Logger lg;
    bool have_log = false;
    if (p->log.dir) {
        if (!logger_open(&lg, p, &model, o->resume != NULL, stderr, to.interactive, err, sizeof err)) {
            fprintf(stderr, "nnd: %s\n", err);
            goto done;
        }
        have_log = true;
        logger_hooks(&lg, &to);
        printf("logging to %s\n", nnd_log_events_path(lg.log));
    }
    NndTrainResult res = {0};
    rc = driver_train(p, &x, &model, &to, &res, err, sizeof err);
    if (have_log) {
        if (lg.failed && rc == NND_EXIT_OK) {
            snprintf(err, sizeof err, "%s", lg.err);
            rc = NND_EXIT_ERROR;
        }
        logger_close(&lg);
    }
    if (rc != NND_EXIT_OK) {
        if (res.nonfinite == 2) {
            report_nonfinite(p, &fe.diags, &res);
        } else {
            fprintf(stderr, "nnd: %s\n", err);
            if (res.nonfinite)
                fprintf(stderr, "nnd: run with --check-numerics to find the op that made it\n");
        }
    } else {
        printf("done: %lld steps, final training loss %.6f\n", (long long)res.steps, res.final_loss);
        int64_t ran = res.steps - to.resume.step;
        if (o->time && ran > 0)
            printf("time: %.3f ms per step, %.0f samples/s (training steps only)\n",
                   1e3 * res.seconds / (double)ran, (double)ran * (double)p->batch / res.seconds);
        if (o->time && res.full_steps > 0 && res.full_steps < ran) {
            /* measured in one process, interleaved: what a logged step costs more */
            double full = res.full_seconds / (double)res.full_steps;
            double plain = (res.seconds - res.full_seconds) / (double)(ran - res.full_steps);
            printf("time: logged steps %.3f ms (%lld of them, statistics and writing included), "
                   "the others %.3f ms: %+.1f%%\n", 1e3 * full, (long long)res.full_steps, 1e3 * plain,
                   100 * (full / plain - 1));
        }
        if (p->ckpt_dir && res.steps > to.resume.step)
            printf("checkpoint: %s/step-%08lld.safetensors\n", p->ckpt_dir, (long long)res.steps);
        if (o->print_params)
            print_params(p, &model);
        if (o->profile) {
            StrBuf b = {0};
            executable_profile(&x, res.steps, &b);
            if (b.s)
                fputs(b.s, stdout);
            sb_free(&b);
        }
        if (p->save_path) {
            if (model_save(p, &model, p->save_path, res.steps, err, sizeof err)) {
                int layer_states = 0;
                for (int i = 0; i < p->states.n; i++)
                    layer_states += p->states.v[i].param < 0;
                if (layer_states)
                    printf("saved %d parameters and %d state tensors to %s\n", p->params.n,
                           layer_states, p->save_path);
                else
                    printf("saved %d parameters to %s\n", p->params.n, p->save_path);
            } else {
                fprintf(stderr, "nnd: %s\n", err);
                rc = NND_EXIT_ERROR;
            }
        }
    }
done:
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

static int cmd_plot(Options *o)
{
    if (o->files.n != 1)
        return usage_error("%s", "plot takes one log directory");
    char err[1024], used[1024];
    if (plot_metrics(o->files.v[0], o->output, used, sizeof used, err, sizeof err) != 0) {
        fprintf(stderr, "nnd: plot: %s\n", err);
        return NND_EXIT_ERROR;
    }
    printf("wrote %s\n", used);
    return NND_EXIT_OK;
}

/* A command on one file's program: parsed, checked and elaborated (with its data
 * sets loaded when data is set), then fn; the diagnostics printed, all freed. */
typedef int (*ProgramCmd)(Program *p, Options *o);

static int on_program(Options *o, const char *cmd, bool data, ProgramCmd fn)
{
    if (o->files.n != 1)
        return usage_error("%s takes one file", cmd);
    Frontend fe;
    frontend_init(&fe);
    Module *m = front(&fe, o->files.v[0]);
    Program *p = m ? build(&fe, m, o, NULL) : NULL;
    int rc = NND_EXIT_ERROR;
    if (p && (!data || program_load_data(p, &fe.diags)))
        rc = fn(p, o);
    diags_print(&fe.diags, stderr);
    program_free(p);
    frontend_free(&fe);
    return rc;
}

static int emit_llvm(Program *p, Options *o)
{
    (void)o;
    Executable x;
    ExecOptions eo = {ENGINE_JIT, true, 0, false, false};
    char err[1024];
    if (!executable_build(&x, p, &eo, err, sizeof err)) {
        fprintf(stderr, "nnd: %s\n", err);
        return NND_EXIT_ERROR;
    }
    fputs(jit_ir(x.jit), stdout);
    executable_free(&x);
    return NND_EXIT_OK;
}

static int gradcheck(Program *p, Options *o) { return driver_gradcheck(p, &o->gc, stdout); }

static int cmd_gradcheck(Options *o)
{
    o->dtype = NND_F64;
    return on_program(o, "gradcheck", true, gradcheck);
}

/* nnd compare: one training per --opt rule or --sweep value, silent, then a table. */
static int cmd_compare(Options *o)
{
    if (o->files.n != 1)
        return usage_error("%s", "compare takes one file");
    StrVec labels = {0}, values = {0};
    const char *sweep_name = NULL;
    char *sweep_copy = NULL;
    if (o->sweep) {
        const char *eq = strchr(o->sweep, '=');
        if (!eq || eq == o->sweep || !eq[1])
            return usage_error("--sweep takes NAME=V1,V2,..., got '%s'", o->sweep);
        sweep_copy = xstrdup(o->sweep);
        sweep_copy[eq - o->sweep] = 0;
        sweep_name = sweep_copy;
        for (char *v = sweep_copy + (eq - o->sweep) + 1; v;) {
            char *comma = strchr(v, ',');
            if (comma)
                *comma = 0;
            vec_push(&values, v);
            v = comma ? comma + 1 : NULL;
        }
    }
    int n = o->opts.n ? o->opts.n : values.n;
    if (n == 0 || (o->opts.n && values.n)) {
        free(sweep_copy);
        return usage_error("%s", "compare needs --opt RULE (repeated) or --sweep NAME=V1,V2,...");
    }
    CompareRow *rows = xcalloc((size_t)n, sizeof(CompareRow));
    int rc = NND_EXIT_OK;
    for (int i = 0; i < n; i++) {
        CompareRow *r = &rows[i];
        Options oi = *o;
        oi.overrides = (typeof(oi.overrides)){0};
        for (int k = 0; k < o->overrides.n; k++)
            vec_push(&oi.overrides, o->overrides.v[k]);
        double v = 0;
        if (values.n) {
            if (!parse_number(values.v[i], &v)) {
                snprintf(r->label, sizeof r->label, "%s=%s", sweep_name, values.v[i]);
                snprintf(r->err, sizeof r->err, "not a number");
                rc = NND_EXIT_ERROR;
                vec_free(&oi.overrides);
                continue;
            }
            Override ov = {sweep_name, values.v[i], v, true, false};
            vec_push(&oi.overrides, ov);
            snprintf(r->label, sizeof r->label, "%s=%s", sweep_name, values.v[i]);
        } else {
            snprintf(r->label, sizeof r->label, "%s", o->opts.v[i]);
        }
        printf("[%d/%d] %s\n", i + 1, n, r->label);
        fflush(stdout);
        Frontend fe;
        frontend_init(&fe);
        Module *m = front(&fe, o->files.v[0]);
        AstModule *keep = NULL;
        const Ast *expr = NULL;
        char name[32];
        snprintf(name, sizeof name, "--opt %d", i + 1);
        if (m && o->opts.n) {
            expr = tools_parse_expr(&fe, name, o->opts.v[i], &keep);
            if (!expr)
                diags_print(&fe.diags, stderr);
        }
        Program *p = m && (expr || !o->opts.n) ? build_with(&fe, m, &oi, NULL, expr) : NULL;
        if (p && program_load_data(p, &fe.diags)) {
            p->save_path = NULL; /* the variants share the file's save and checkpoints: not theirs */
            p->ckpt_dir = NULL;
            compare_run(p, o->threads, r);
        } else {
            diags_print(&fe.diags, stderr);
            snprintf(r->err, sizeof r->err, "does not compile (see above)");
        }
        if (!r->ok)
            rc = NND_EXIT_ERROR;
        program_free(p);
        ast_module_free(keep);
        frontend_free(&fe);
        vec_free(&oi.overrides);
    }
    compare_print(rows, n, stdout);
    free(rows);
    vec_free(&labels);
    vec_free(&values);
    free(sweep_copy);
    return rc;
}

static int lrfind(Program *p, Options *o)
{
    return lrfind_run(p, o->threads, o->lr_steps ? o->lr_steps : 100, o->lr_min ? o->lr_min : 1e-7,
                      o->lr_max ? o->lr_max : 10, o->output, stdout);
}

static int explain(Program *p, Options *o)
{
    (void)o;
    explain_print(p, stdout);
    return NND_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? NND_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("nnd 0.1.0\n");
        return 0;
    }
    Options o = {0};
    o.cmd = argv[1];
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    if (strcmp(o.cmd, "check") == 0)
        rc = cmd_check(&o);
    else if (strcmp(o.cmd, "graph") == 0)
        rc = cmd_graph(&o);
    else if (strcmp(o.cmd, "run") == 0)
        rc = cmd_run(&o);
    else if (strcmp(o.cmd, "gradcheck") == 0)
        rc = cmd_gradcheck(&o);
    else if (strcmp(o.cmd, "parse") == 0)
        rc = cmd_parse(&o);
    else if (strcmp(o.cmd, "emit-llvm") == 0)
        rc = on_program(&o, "emit-llvm", false, emit_llvm);
    else if (strcmp(o.cmd, "compare") == 0)
        rc = cmd_compare(&o);
    else if (strcmp(o.cmd, "lrfind") == 0)
        rc = on_program(&o, "lrfind", true, lrfind);
    else if (strcmp(o.cmd, "explain") == 0)
        rc = on_program(&o, "explain", false, explain);
    else if (strcmp(o.cmd, "plot") == 0)
        rc = cmd_plot(&o);
    else
        rc = usage_error("unknown command '%s'", o.cmd);
    for (int i = 0; i < o.overrides.n; i++)
        free((char *)o.overrides.v[i].key);
    vec_free(&o.overrides);
    vec_free(&o.files);
    vec_free(&o.opts);
    return rc;
}
