/* sample: `nnd sample FILE --weights W [--prompt TEXT] [--tokens N] [--temperature T]
 * [--top-k K] [--seed S]`: text from a byte-level language model (exec/sample.h),
 * written to standard output as it is made; the time per byte goes to standard
 * error. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "jit.h"
#include "sample.h"

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int generate(Sampler *s, const Options *o)
{
    const char *prompt = o->prompt ? o->prompt : "\n";
    int64_t tokens = o->tokens > 0 ? o->tokens : 200;
    double temperature = o->temperature > 0 ? o->temperature : 1.0;
    char err[512];
    double t0 = seconds();
    /* --seed sets the program's seed */
    int64_t made = sampler_generate(s, prompt, tokens, temperature, o->top_k, s->p->seed, stdout,
                                    err, sizeof err);
    double dt = seconds() - t0;
    if (made < 0) {
        fprintf(stderr, "\nnnd: %s\n", err);
        return NND_EXIT_ERROR;
    }
    fprintf(stderr, "\n%lld bytes in %.2f s: %.2f ms per byte ", (long long)made, dt,
            made ? 1e3 * dt / (double)made : 0.0);
    if (s->cache)
        fprintf(stderr, "(the key/value cache: one position per byte)\n");
    else
        fprintf(stderr, "(a forward pass over the last %lld bytes each; no key/value cache: %s)\n",
                (long long)s->T, s->why);
    return NND_EXIT_OK;
}

static int sample_program(Program *p, Options *o)
{
    const char *weights = o->weights ? o->weights : p->save_path;
    if (!weights)
        return cli_usage_error("%s", "sample needs --weights FILE (the program has no `save`)");
    char err[1024] = "";
    if (!sampler_fits(p, err, sizeof err)) { /* before the weights are read */
        fprintf(stderr, "nnd: %s\n", err);
        return NND_EXIT_ERROR;
    }
    int nopt, rc = NND_EXIT_ERROR;
    ExecOptions eo = {
        .engine = o->interp ? ENGINE_INTERP : ENGINE_JIT, .max_batch = 1, .forward_only = true};
    NndErr pe;
    NndPool *pool = nnd_pool_create(o->threads > 0 ? o->threads : 1, &pe);
    Model m = {0};
    Executable x;
    bool have_x = false;
    if (!model_init(p, &m, err, sizeof err) ||
        !model_load_noting(p, &m, weights, stderr, &nopt, err, sizeof err))
        fprintf(stderr, "nnd: %s\n", err);
    else if (!(have_x = executable_build(&x, p, &eo, err, sizeof err)))
        fprintf(stderr, "nnd: %s\n", err);
    if (have_x) {
        void **ema = model_eval_params(p, &m);
        double *hypers = program_hyper_values(p);
        Sampler s;
        if (sampler_init(&s, p, &x, ema ? ema : m.param_ptrs, m.state_ptrs, hypers, pool,
                         !o->no_cache, err, sizeof err)) {
            rc = generate(&s, o);
            sampler_free(&s);
        } else {
            fprintf(stderr, "nnd: %s\n", err);
        }
        free(ema);
        free(hypers);
        executable_free(&x);
    }
    if (m.params)
        model_free(&m);
    nnd_pool_destroy(pool);
    return rc;
}

int cmd_sample(Options *o)
{
    if (o->temperature < 0)
        return cli_usage_error("%s", "--temperature must be positive");
    /* as a sample statement's prompt = "" */
    if (o->prompt && !*o->prompt)
        return cli_usage_error("%s", "--prompt is empty: give at least one byte, or leave it "
                                     "out (a newline)");
    if (!o->interp)
        jit_prewarm(); /* LLVM's start beside the front end, as nnd run */
    return cli_on_program(o, false, sample_program);
}
