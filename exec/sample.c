#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void cache_free(SamplerCache *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->dec.cache_state.n; i++)
        nnd_free(c->states[c->dec.state_base + i]);
    free(c->states);
    free(c->hypers);
    nnd_free(c->arena);
    if (c->jit)
        jit_free(c->jit);
    if (c->sched.home)
        schedule_free(&c->sched);
    decode_free(&c->dec);
    free(c);
}

/* The caches' buffers, zeroed (at batch 1), after the program's states. */
static void cache_buffers(SamplerCache *c, void **states)
{
    Decode *d = &c->dec;
    c->states = xcalloc((size_t)(d->state_base + d->cache_state.n) + 1, sizeof(void *));
    for (int i = 0; i < d->state_base; i++)
        c->states[i] = states[i];
    for (int i = 0; i < d->cache_state.n; i++) {
        const Node *n = graph_node(&d->g, d->cache_state.v[i]);
        size_t bytes = nnd_dtype_size((NndDType)n->dtype);
        for (int k = 0; k < n->shape.rank; k++)
            bytes *= (size_t)(n->shape.d[k] < 0 ? 1 : n->shape.d[k]);
        c->states[d->state_base + i] = nnd_alloc(bytes);
        memset(c->states[d->state_base + i], 0, bytes);
    }
    c->hypers = xcalloc((size_t)d->pos_hyper + 1, sizeof(double));
    c->arena = nnd_alloc((size_t)c->sched.arena_bytes + 64);
}

/* The decode function (compiler/decode.h), compiled; NULL with why. */
static SamplerCache *cache_build(Sampler *s, void **states, char *why, size_t n)
{
    if (s->x->engine != ENGINE_JIT) {
        snprintf(why, n, "the interpreter runs the whole forward function");
        return NULL;
    }
    SamplerCache *c = xcalloc(1, sizeof *c);
    if (!decode_build(&c->dec, s->p, why, n)) {
        free(c);
        return NULL;
    }
    Decode *d = &c->dec;
    int nc = d->cache_state.n;
    ScheduleUpdate *su = xcalloc((size_t)nc + 1, sizeof *su);
    for (int i = 0; i < nc; i++)
        su[i] = (ScheduleUpdate){d->cache_value.v[i], true, d->state_base + i};
    ScheduleRequest rq = {&d->logits, 1, su, nc, 1, false, false};
    bool ok = schedule_build(&c->sched, &d->g, &rq, why, n);
    free(su);
    void *addr = NULL;
    if (ok) {
        CodegenFunction f = {"nnd_decode", &c->sched, false, false, NULL, 0};
        JitOptions jo = {false, 0};
        c->jit = jit_compile(&d->g, &f, 1, &jo, &addr, why, n);
        ok = c->jit != NULL;
    }
    if (!ok) {
        cache_free(c);
        return NULL;
    }
    c->fn = (NndStepFn)addr;
    cache_buffers(c, states);
    return c;
}

bool sampler_fits(const Program *p, char *err, size_t errlen)
{
    const Node *in = graph_node((Graph *)&p->g, p->x);
    const Node *f = p->forward ? graph_node((Graph *)&p->g, p->forward) : NULL;
    if (!f || in->dtype != NND_I32 || in->shape.rank != 2 || f->shape.rank != 3 ||
        f->shape.d[1] != in->shape.d[1] || f->shape.d[2] < 1) {
        snprintf(err, errlen,
                 "sampling needs a language model: x: [B, T] i32 tokens and a "
                 "model giving [B, T, V] logits");
        return false;
    }
    if (f->shape.d[2] != 256) { /* each token drawn is written as a byte */
        snprintf(err, errlen,
                 "sampling writes each token as a byte: it needs a byte-level model, of 256 "
                 "logits per position; this one gives %lld",
                 (long long)f->shape.d[2]);
        return false;
    }
    return true;
}

bool sampler_init(Sampler *s, const Program *p, Executable *x, void **params, void **states,
                  double *hypers, NndPool *pool, bool cache, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (!sampler_fits(p, err, errlen))
        return false;
    const Node *in = graph_node((Graph *)&p->g, p->x);
    const Node *f = graph_node((Graph *)&p->g, p->forward);
    if (!x->forward) {
        snprintf(err, errlen, "sampling needs the model's forward function, which was not built");
        return false;
    }
    *s = (Sampler){.p = p,
                   .x = x,
                   .params = params,
                   .states = states,
                   .hypers = hypers,
                   .pool = pool,
                   .T = in->shape.d[1],
                   .V = f->shape.d[2]};
    s->logits = xcalloc((size_t)(s->T * s->V), sizeof(double));
    s->prob = xcalloc((size_t)s->V, sizeof(double));
    s->ctx = xcalloc((size_t)s->T, sizeof(int32_t));
    if (cache)
        s->cache = cache_build(s, states, s->why, sizeof s->why);
    else
        snprintf(s->why, sizeof s->why, "not asked for");
    return true;
}

void sampler_free(Sampler *s)
{
    free(s->logits);
    free(s->prob);
    free(s->ctx);
    cache_free(s->cache);
    memset(s, 0, sizeof *s);
}

/* A byte drawn from softmax(logits / temperature) over the top_k likeliest. */
static int draw(const double *logits, int64_t V, double temperature, int64_t top_k, uint64_t seed,
                int64_t index, double *p)
{
    double mx = -INFINITY;
    for (int64_t v = 0; v < V; v++)
        mx = fmax(mx, logits[v]);
    double kth = -INFINITY; /* the top_k-th largest logit: lower ones are left out */
    if (top_k > 0 && top_k < V) {
        for (int64_t v = 0; v < V; v++)
            p[v] = logits[v];
        for (int64_t k = 0; k < top_k; k++) {
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

/* The logits after the n tokens of ctx (n <= T), from one forward pass. */
static const double *next_logits(Sampler *s, int64_t n, char *err, size_t errlen)
{
    NndStepArgs a = {.params = s->params,
                     .states = s->states,
                     .x = s->ctx,
                     .hypers = s->hypers,
                     .batch = 1,
                     .arena = s->x->arena,
                     .out = s->logits,
                     .pool = s->pool,
                     .user = s->x->forward_user};
    s->x->forward(&a);
    if (a.status) {
        snprintf(err, errlen,
                 "the forward function failed (status %d): is the vocabulary smaller than "
                 "256 bytes?",
                 a.status);
        return NULL;
    }
    return s->logits + (n - 1) * s->V;
}

/* The decode function at the next position, for token tok: the logits there. */
static const double *decode_next(Sampler *s, int32_t tok, char *err, size_t errlen)
{
    SamplerCache *c = s->cache;
    c->hypers[c->dec.pos_hyper] = (double)c->pos;
    NndStepArgs a = {.params = s->params,
                     .states = c->states,
                     .x = &tok,
                     .hypers = c->hypers,
                     .batch = 1,
                     .arena = c->arena,
                     .out = s->logits,
                     .pool = s->pool};
    c->fn(&a);
    if (a.status) {
        snprintf(err, errlen, "the decode function failed (status %d)", a.status);
        return NULL;
    }
    c->pos++;
    return s->logits;
}

/* The logits after text[0..n) from the cache, which holds text[base, base + pos):
 * the bytes it lacks go in one at a time; a full context restarts it from the
 * last T/2 bytes. */
static const double *cached_logits(Sampler *s, const unsigned char *text, int64_t n, char *err,
                                   size_t errlen)
{
    SamplerCache *c = s->cache;
    if (n - c->base > s->T) {
        c->base = n - (s->T / 2 > 0 ? s->T / 2 : 1);
        c->pos = 0;
    }
    const double *row = NULL;
    while (c->base + c->pos < n)
        if (!(row = decode_next(s, text[c->base + c->pos], err, errlen)))
            return NULL;
    return row;
}

/* The logits after text[0..n) from a forward pass over its last T bytes. */
static const double *window_logits(Sampler *s, const unsigned char *text, int64_t n, char *err,
                                   size_t errlen)
{
    int64_t from = n > s->T ? n - s->T : 0, k = n - from;
    memset(s->ctx, 0, sizeof(int32_t) * (size_t)s->T);
    for (int64_t i = 0; i < k; i++)
        s->ctx[i] = text[from + i];
    return next_logits(s, k, err, errlen);
}

/* The first logits of a generation with the cache.  The first time, the cache is
 * compared with the forward function over the context (sampler_compare, which
 * leaves the cache filled with it and the forward function's logits): when they
 * differ the model is not causal and the cache goes. */
static const double *first_cached(Sampler *s, const unsigned char *text, int64_t n, char *err,
                                  size_t errlen)
{
    SamplerCache *c = s->cache;
    int64_t base = n > s->T ? n - s->T : 0, k = n - base;
    if (c->checked) {
        memcpy(c->hypers, s->hypers, sizeof(double) * (size_t)c->dec.pos_hyper);
        c->base = base;
        c->pos = 0;
        return cached_logits(s, text, n, err, errlen);
    }
    int32_t *tok = xmalloc(sizeof(int32_t) * (size_t)k);
    for (int64_t i = 0; i < k; i++)
        tok[i] = text[base + i];
    double d = sampler_compare(s, tok, k, err, errlen);
    free(tok);
    if (d < 0)
        return NULL;
    c->checked = true;
    if (d > 1e-3) {
        snprintf(s->why, sizeof s->why,
                 "the model's outputs depend on later positions (not causal): the decode "
                 "function's logits differ from the forward function's by %.3g (relative)",
                 d);
        cache_free(s->cache);
        s->cache = NULL;
        return window_logits(s, text, n, err, errlen);
    }
    c->base = base; /* the cache holds text[base, n) */
    return s->logits + (k - 1) * s->V;
}

int64_t sampler_generate(Sampler *s, const char *prompt, int64_t tokens, double temperature,
                         int64_t top_k, uint64_t seed, FILE *out, char *err, size_t errlen)
{
    int64_t len = (int64_t)strlen(prompt);
    /* the text so far: the prompt, then what is drawn */
    unsigned char *text = xmalloc((size_t)(len + tokens + 1));
    memcpy(text, prompt, (size_t)len);
    fputs(prompt, out);
    int64_t made = 0;
    for (; made < tokens; made++) {
        int64_t n = len + made;
        const double *row = !s->cache   ? window_logits(s, text, n, err, errlen)
                            : made == 0 ? first_cached(s, text, n, err, errlen)
                                        : cached_logits(s, text, n, err, errlen);
        if (!row) {
            free(text);
            return -1;
        }
        int b = draw(row, s->V, temperature, top_k, seed, made, s->prob);
        text[n] = (unsigned char)b;
        fputc(b, out);
        fflush(out);
    }
    free(text);
    return made;
}

double sampler_compare(Sampler *s, const int32_t *tokens, int64_t n, char *err, size_t errlen)
{
    if (!s->cache || n < 1 || n > s->T) {
        snprintf(err, errlen, "no key/value cache (%s), or not 1..T tokens", s->why);
        return -1;
    }
    SamplerCache *c = s->cache;
    memcpy(c->hypers, s->hypers, sizeof(double) * (size_t)c->dec.pos_hyper);
    c->pos = c->base = 0;
    double *mine = xmalloc(sizeof(double) * (size_t)(n * s->V)), worst = 0, big = 1;
    bool ok = true;
    for (int64_t t = 0; ok && t < n; t++) {
        const double *row = decode_next(s, tokens[t], err, errlen);
        if ((ok = row != NULL))
            memcpy(mine + t * s->V, row, sizeof(double) * (size_t)s->V);
    }
    memset(s->ctx, 0, sizeof(int32_t) * (size_t)s->T);
    memcpy(s->ctx, tokens, sizeof(int32_t) * (size_t)n);
    const double *ref = ok ? next_logits(s, n, err, errlen) : NULL;
    for (int64_t i = 0; ref && i < n * s->V; i++) {
        worst = fmax(worst, fabs(mine[i] - s->logits[i]));
        big = fmax(big, fabs(s->logits[i]));
    }
    free(mine);
    return ref ? worst / big : -1;
}
