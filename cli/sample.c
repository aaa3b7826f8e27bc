/* sample: `nnd sample FILE --weights W [--prompt TEXT] [--tokens N] [--temperature T]
 * [--top-k K] [--seed S]`.
 *
 * Generates text from a byte-level language model: a program whose model takes
 * x: [B, T] i32 (tokens) and gives [B, T, V] logits, as examples/gpt.nnd.  Each new
 * byte runs the compiled forward function once over the last T bytes (left-aligned:
 * a causal model's logits at position i depend on positions 0..i only, so what
 * follows them does not matter), then draws from softmax(logits / temperature)
 * over the K likeliest bytes with the counter-based generator, so a seed gives the
 * same text on any machine.  There is no key/value cache: a new byte costs a
 * forward pass over the whole context.  Bytes go to standard output as they are
 * made; the time per byte goes to standard error. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The model's context length T and vocabulary V, when it is a language model. */
static bool lm_shape(const Program *p, int64_t *T, int64_t *V)
{
    const Node *x = graph_node((Graph *)&p->g, p->x);
    const Node *f = p->forward ? graph_node((Graph *)&p->g, p->forward) : NULL;
    if (!f || x->dtype != NND_I32 || x->shape.rank != 2 || f->shape.rank != 3 ||
        f->shape.d[1] != x->shape.d[1] || f->shape.d[2] < 1) {
        fprintf(stderr, "nnd: sample needs a language model: x: [B, T] i32 tokens and a "
                        "forward function giving [B, T, V] logits\n");
        return false;
    }
    *T = x->shape.d[1];
    *V = f->shape.d[2];
    return true;
}

/* A byte drawn from softmax(logits / temperature) over the top_k likeliest. */
static int draw(const double *logits, int64_t V, double temperature, int top_k, uint64_t seed,
                int64_t index, double *p)
{
    double mx = -INFINITY;
    for (int64_t v = 0; v < V; v++)
        mx = fmax(mx, logits[v]);
    double kth = -INFINITY; /* the top_k-th largest logit: lower ones are left out */
    if (top_k > 0 && top_k < V) {
        for (int64_t v = 0; v < V; v++)
            p[v] = logits[v];
        for (int k = 0; k < top_k; k++) {
            int64_t best = 0;
            for (int64_t v = 1; v < V; v++)
                if (p[v] > p[best])
                    best = v;
            kth = p[best];
            p[best] = -INFINITY;
        }
    }
    double sum = 0;
    for (int64_t v = 0; v < V; v++)
        sum += p[v] = logits[v] >= kth ? exp((logits[v] - mx) / temperature) : 0;
    double u = nnd_random_uniform(seed, 0x5a3d1e, (uint64_t)index) * sum, acc = 0;
    for (int64_t v = 0; v < V; v++) {
        acc += p[v];
        if (u < acc && p[v] > 0)
            return (int)v;
    }
    for (int64_t v = V - 1; v > 0; v--)
        if (p[v] > 0)
            return (int)v;
    return 0;
}

typedef struct Sampler {
    Program *p;
    Executable x;
    Model m;
    void **params;
    NndPool *pool;
    double *hypers, *logits, *prob;
    int32_t *ctx;
    int64_t T, V;
} Sampler;

/* The logits after the n tokens of ctx (n <= T), from one forward pass. */
static bool next_logits(Sampler *s, int64_t n, const double **row)
{
    NndStepArgs a = {.params = s->params,
                     .states = s->m.state_ptrs,
                     .x = s->ctx,
                     .hypers = s->hypers,
                     .batch = 1,
                     .arena = s->x.arena,
                     .out = s->logits,
                     .pool = s->pool,
                     .user = s->x.forward_user};
    s->x.forward(&a);
    if (a.status) {
        fprintf(stderr,
                "nnd: the forward function failed (status %d): is the vocabulary "
                "smaller than 256 bytes?\n",
                a.status);
        return false;
    }
    *row = s->logits + (n - 1) * s->V;
    return true;
}

static int generate(Sampler *s, const Options *o)
{
    const char *prompt = o->prompt ? o->prompt : "\n";
    int64_t len = (int64_t)strlen(prompt), tokens = o->tokens > 0 ? o->tokens : 200;
    double temperature = o->temperature > 0 ? o->temperature : 1.0;
    uint64_t seed = s->p->seed; /* --seed sets it */
    /* the text so far: the prompt, then what is drawn; the context is its last T */
    unsigned char *text = xmalloc((size_t)(len + tokens + 1));
    memcpy(text, prompt, (size_t)len);
    fputs(prompt, stdout);
    double t0 = seconds();
    int64_t made = 0;
    for (; made < tokens; made++) {
        int64_t n = len + made, from = n > s->T ? n - s->T : 0, k = n - from;
        memset(s->ctx, 0, sizeof(int32_t) * (size_t)s->T);
        for (int64_t i = 0; i < k; i++)
            s->ctx[i] = text[from + i];
        const double *row;
        if (!next_logits(s, k, &row))
            break;
        int b = draw(row, s->V, temperature, o->top_k, seed, made, s->prob);
        text[n] = (unsigned char)b;
        fputc(b, stdout);
        fflush(stdout);
    }
    double dt = seconds() - t0;
    fprintf(stderr,
            "\n%lld bytes in %.2f s: %.2f ms per byte (a forward pass over the last %lld "
            "bytes each; no key/value cache)\n",
            (long long)made, dt, made ? 1e3 * dt / (double)made : 0.0, (long long)s->T);
    free(text);
    return made == tokens ? NND_EXIT_OK : NND_EXIT_ERROR;
}

static int sample_program(Program *p, Options *o)
{
    Sampler s = {.p = p};
    if (!lm_shape(p, &s.T, &s.V))
        return NND_EXIT_ERROR;
    const char *weights = o->weights ? o->weights : p->save_path;
    if (!weights)
        return cli_usage_error("%s", "sample needs --weights FILE (the program has no `save`)");
    char err[1024] = "";
    int nopt, rc = NND_EXIT_ERROR;
    ExecOptions eo = {
        .engine = o->interp ? ENGINE_INTERP : ENGINE_JIT, .max_batch = 1, .forward_only = true};
    NndErr pe;
    s.pool = nnd_pool_create(o->threads > 0 ? o->threads : 1, &pe);
    bool have_x = false;
    if (!model_init(p, &s.m, err, sizeof err) ||
        !model_load(p, &s.m, weights, &nopt, err, sizeof err))
        fprintf(stderr, "nnd: %s\n", err);
    else if (!(have_x = executable_build(&s.x, p, &eo, err, sizeof err)))
        fprintf(stderr, "nnd: %s\n", err);
    if (have_x) {
        void **ema = model_eval_params(p, &s.m);
        s.params = ema ? ema : s.m.param_ptrs;
        s.hypers = program_hyper_values(p);
        s.logits = xcalloc((size_t)(s.T * s.V), sizeof(double));
        s.prob = xcalloc((size_t)s.V, sizeof(double));
        s.ctx = xcalloc((size_t)s.T, sizeof(int32_t));
        rc = generate(&s, o);
        free(ema);
        free(s.hypers);
        free(s.logits);
        free(s.prob);
        free(s.ctx);
        executable_free(&s.x);
    }
    if (s.m.params)
        model_free(&s.m);
    nnd_pool_destroy(s.pool);
    return rc;
}

int cmd_sample(Options *o)
{
    if (o->temperature < 0)
        return cli_usage_error("%s", "--temperature must be positive");
    return cli_on_program(o, false, sample_program);
}
