/* summary: `nnd summary FILE.nnd`: what the program trains and what a step costs.
 *
 * One row per parameter (name, shape, count, trainable or frozen) and per layer
 * state, the totals, the optimizer's state (and `ema` averages), the step's memory
 * plan per sample (the arena of activations, gradients and temporaries, from the
 * schedules at two batch sizes: nothing is compiled), and the FLOPs per sample of
 * the products (matmul and convolution, 2 per multiply-add) in the forward pass,
 * the backward pass and the update, counted on the simplified step graph. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void human_bytes(char *buf, size_t n, double b)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB"};
    int u = 0;
    while (b >= 1024 && u < 3) {
        b /= 1024;
        u++;
    }
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

static void human_count(char *buf, size_t n, double v)
{
    if (v >= 1e9)
        snprintf(buf, n, "%.3g G", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.3g M", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, n, "%.3g k", v / 1e3);
    else
        snprintf(buf, n, "%.3g", v);
}

/* FLOPs of the step's products by phase (forward, backward, update) at a batch. */
static void step_flops(const Program *p, int64_t batch, double flops[3])
{
    const Graph *g = &p->g;
    int count = graph_count((Graph *)g);
    bool *seen = xcalloc((size_t)count, 1);
    NodeVec stack = {0};
    program_step_roots(p, &stack);
    flops[0] = flops[1] = flops[2] = 0;
    while (stack.n) {
        NodeId id = stack.v[--stack.n];
        if (!id || seen[id])
            continue;
        seen[id] = true;
        const Node *n = graph_node((Graph *)g, id);
        double f = product_flops(g, id, batch);
        flops[n->phase == PHASE_BACKWARD ? 1 : n->phase == PHASE_UPDATE ? 2 : 0] += f;
        for (int i = 0; i < n->nin; i++)
            vec_push(&stack, n->in[i]);
    }
    vec_free(&stack);
    free(seen);
}

static int summary(Program *p, Options *o)
{
    (void)o;
    const Graph *g = &p->g;
    printf("%-28s %-18s %12s\n", "parameter", "shape", "count");
    int64_t total = 0, trainable = 0, bytes = 0;
    char shape[128], a[32], b[32];
    for (int i = 0; i < p->params.n; i++) {
        const ParamInfo *pi = &p->params.v[i];
        const Node *n = graph_node((Graph *)g, pi->node);
        int64_t c = shape_numel_at(&n->shape, 1);
        nnd_shape_text(shape, sizeof shape, n->shape.rank, n->shape.d);
        printf("%-28s %-18s %12lld  %s\n", pi->name, shape, (long long)c,
               pi->frozen ? "frozen" : "trainable");
        total += c;
        trainable += pi->frozen ? 0 : c;
        bytes += c * (int64_t)nnd_dtype_size((NndDType)n->dtype);
    }
    human_bytes(a, sizeof a, (double)bytes);
    printf("%-28s %-18s %12lld  %lld trainable, %lld frozen; %s\n", "total", "", (long long)total,
           (long long)trainable, (long long)(total - trainable), a);
    int64_t opt = 0, optb = 0, layer = 0, layerb = 0;
    int nopt = 0;
    for (int i = 0; i < p->states.n; i++) {
        const StateInfo *si = &p->states.v[i];
        const Node *n = graph_node((Graph *)g, si->node);
        int64_t c = shape_numel_at(&n->shape, 1), cb = c * (int64_t)nnd_dtype_size(n->dtype);
        if (si->param >= 0) {
            opt += c, optb += cb, nopt++;
        } else {
            nnd_shape_text(shape, sizeof shape, n->shape.rank, n->shape.d);
            printf("%-28s %-18s %12lld  layer state\n", si->name, shape, (long long)c);
            layer += c, layerb += cb;
        }
    }
    bool ema = false;
    for (int i = 0; i < p->params.n; i++)
        ema |= p->params.v[i].ema_state >= 0;
    human_bytes(a, sizeof a, (double)optb);
    printf("optimizer state%s: %d tensors, %lld values, %s\n", ema ? " (with `ema` averages)" : "",
           nopt, (long long)opt, a);
    if (layer) {
        human_bytes(a, sizeof a, (double)layerb);
        printf("layer state: %lld values, %s\n", (long long)layer, a);
    }
    /* the memory plan grows with the batch: the slope is what a sample costs */
    int64_t B = p->batch > 0 ? p->batch : 1, m1, m2;
    char err[512];
    if (executable_step_arena(p, B, &m1, err, sizeof err) &&
        executable_step_arena(p, 2 * B, &m2, err, sizeof err)) {
        human_bytes(a, sizeof a, (double)(m2 - m1) / (double)B);
        human_bytes(b, sizeof b, (double)m1);
        printf("step memory (activations, gradients, temporaries): %s per sample; %s at "
               "batch %lld\n",
               a, b, (long long)B);
    } else {
        printf("step memory: not planned (%s)\n", err);
    }
    double f1[3], f2[3];
    step_flops(p, 1, f1);
    step_flops(p, 2, f2);
    char fw[32], bw[32];
    human_count(fw, sizeof fw, f2[0] - f1[0]);
    human_count(bw, sizeof bw, f2[1] - f1[1]);
    printf("FLOPs per sample (products, 2 per multiply-add): forward %s, backward %s\n", fw, bw);
    return NND_EXIT_OK;
}

int cmd_summary(Options *o) { return cli_on_program(o, false, summary); }
