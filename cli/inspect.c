/* inspect: the commands that show what the compiler made of a file: check, parse,
 * graph, emit-llvm, and gradcheck (autodiff against finite differences). */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "parse.h"
#include "plot.h"

int cmd_check(Options *o)
{
    if (o->files.n == 0)
        return cli_usage_error("%s", "check needs at least one file");
    int rc = 0;
    CompileOptions co = {o->dtype, o->overrides.v, o->overrides.n, NULL, NULL, o->raw, NULL, false};
    for (int i = 0; i < o->files.n; i++) {
        Frontend fe;
        frontend_init(&fe);
        Module *m = compile_check(&fe, o->files.v[i], NULL);
        Program *p = m && m->train ? compile_module(&fe, m, &co) : NULL;
        if (p) /* a program that would train nothing: a warning here, nnd run refuses it */
            program_report_idle(p, &fe.diags, false);
        /* a file without a train block (a library of layers): its models on their own */
        StrBuf report = {0};
        bool ok = m && (m->train ? p != NULL : compile_models(&fe, m, &co, &report));
        if (!ok)
            rc = NND_EXIT_ERROR;
        diags_print(&fe.diags, stderr);
        if (o->verbose && report.len)
            printf("%s", report.s);
        sb_free(&report);
        program_free(p);
        frontend_free(&fe);
    }
    return rc;
}

int cmd_parse(Options *o)
{
    if (o->files.n != 1)
        return cli_usage_error("%s", "parse takes one file");
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

/* `nnd graph --schedule`: the schedules executable_build would compile, planned
 * without code generation, so it is quick and needs no data. */
static int print_schedules(Program *p, const Options *o)
{
    Executable x;
    char err[1024];
    ExecOptions eo = {.engine = ENGINE_JIT, .check_numerics = o->check_numerics};
    if (!executable_plan(&x, p, &eo, err, sizeof err)) {
        fprintf(stderr, "nnd: %s\n", err);
        return NND_EXIT_ERROR;
    }
    StrBuf b = {0};
    sb_printf(
        &b,
        "# schedules of %s: kernels and memory plan of every compiled function, at batch %lld\n",
        o->files.v[0], (long long)p->batch);
    executable_dump(&x, &b);
    fputs(b.s, stdout);
    sb_free(&b);
    executable_free(&x);
    return NND_EXIT_OK;
}

int cmd_graph(Options *o)
{
    if (o->files.n != 1)
        return cli_usage_error("%s", "graph takes one file");
    Frontend fe;
    frontend_init(&fe);
    SimplifyStats st = {0};
    CompileOptions co = {o->dtype, o->overrides.v, o->overrides.n, NULL, NULL, o->raw, &st, false};
    Program *p = compile(&fe, o->files.v[0], NULL, &co);
    diags_print(&fe.diags, stderr);
    if (!p) {
        frontend_free(&fe);
        return NND_EXIT_ERROR;
    }
    if (o->schedule) {
        int rc = print_schedules(p, o);
        program_free(p);
        frontend_free(&fe);
        return rc;
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
            sb_printf(&b,
                      "# %d nodes, %d before simplification: %d folded, %d identities, %d merged\n",
                      st.after, st.before, st.folded, st.identities, st.merged);
        graph_print(&p->g, roots.v, roots.n, &b, o->no_spans ? NULL : &fe.sm);
        sb_puts(&b, "# outputs\n");
        sb_printf(&b, "loss = %%%u\n", p->loss);
        for (int i = 0; i < p->updates.n; i++) {
            Update *u = &p->updates.v[i];
            sb_printf(&b, "%s <- %%%u\n",
                      u->is_state ? p->states.v[u->index].name : p->params.v[u->index].name,
                      u->value);
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

static int emit_llvm(Program *p, Options *o)
{
    (void)o;
    Executable x;
    ExecOptions eo = {ENGINE_JIT, true, 0, false, false, 0, false};
    char err[1024];
    if (!executable_build(&x, p, &eo, err, sizeof err)) {
        fprintf(stderr, "nnd: %s\n", err);
        return NND_EXIT_ERROR;
    }
    fputs(jit_ir(x.jit), stdout);
    executable_free(&x);
    return NND_EXIT_OK;
}

int cmd_emit_llvm(Options *o) { return cli_on_program(o, false, emit_llvm); }

static int gradcheck(Program *p, Options *o) { return gradcheck_run(p, &o->gc, stdout); }

int cmd_gradcheck(Options *o)
{
    o->dtype = NND_F64;
    return cli_on_program(o, true, gradcheck);
}

/* nnd plot DIR... [-o FILE.svg]: the runs' metrics.csv drawn, overlaid (plot.c). */
int cmd_plot(Options *o)
{
    if (o->files.n < 1)
        return cli_usage_error("%s", "plot takes a log directory (or several)");
    char err[1024], used[1024];
    if (plot_metrics((const char *const *)o->files.v, o->files.n, o->output, used, sizeof used, err,
                     sizeof err) != 0) {
        fprintf(stderr, "nnd: plot: %s\n", err);
        return NND_EXIT_ERROR;
    }
    printf("wrote %s\n", used);
    return NND_EXIT_OK;
}
