#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool sampler_init(Sampler *s, const Program *p, Executable *x, void **params, void **states,
                  double *hypers, NndPool *pool, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    const Node *in = graph_node((Graph *)&p->g, p->x);
    const Node *f = p->forward ? graph_node((Graph *)&p->g, p->forward) : NULL;
    if (!f || in->dtype != NND_I32 || in->shape.rank != 2 || f->shape.rank != 3 ||
        f->shape.d[1] != in->shape.d[1] || f->shape.d[2] < 1) {
        snprintf(err, errlen,
                 "sampling needs a language model: x: [B, T] i32 tokens and a "
                 "model giving [B, T, V] logits");
        return false;
    }
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
    return true;
}

void sampler_free(Sampler *s)
{
    free(s->logits);
    free(s->prob);
    free(s->ctx);
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

int64_t sampler_generate(Sampler *s, const char *prompt, int64_t tokens, double temperature,
                         int64_t top_k, uint64_t seed, FILE *out, char *err, size_t errlen)
{
    int64_t len = (int64_t)strlen(prompt);
    /* the text so far: the prompt, then what is drawn; the context is its last T */
    unsigned char *text = xmalloc((size_t)(len + tokens + 1));
    memcpy(text, prompt, (size_t)len);
    fputs(prompt, out);
    int64_t made = 0;
    for (; made < tokens; made++) {
        int64_t n = len + made, from = n > s->T ? n - s->T : 0, k = n - from;
        memset(s->ctx, 0, sizeof(int32_t) * (size_t)s->T);
        for (int64_t i = 0; i < k; i++)
            s->ctx[i] = text[from + i];
        const double *row = next_logits(s, k, err, errlen);
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
