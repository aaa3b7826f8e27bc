/* sample: text from a byte-level language model (a program whose model takes
 * x: [B, T] i32 tokens and gives [B, T, V] logits, as examples/gpt.nnd), for
 * `nnd sample` and the train block's `sample every N steps: ...`.
 *
 * Each new byte runs the compiled forward function once over the last T bytes
 * (left-aligned: a causal model's logits at position i depend on positions 0..i
 * only, so what follows them does not matter), then draws from
 * softmax(logits / temperature) over the top_k likeliest bytes with the
 * counter-based generator, so a seed gives the same text on any machine.  There
 * is no key/value cache: a new byte costs a forward pass over the whole context. */
#ifndef NND_SAMPLE_H
#define NND_SAMPLE_H

#include <stdio.h>

#include "executable.h"

typedef struct Sampler {
    const Program *p;
    Executable *x; /* with its forward function */
    void **params, **states;
    double *hypers;
    NndPool *pool;
    int64_t T, V;
    double *logits, *prob;
    int32_t *ctx;
} Sampler;

/* false with a message when p is not a language model or x has no forward
 * function.  The pointers are borrowed; the buffers are the sampler's. */
bool sampler_init(Sampler *s, const Program *p, Executable *x, void **params, void **states,
                  double *hypers, NndPool *pool, char *err, size_t errlen);
void sampler_free(Sampler *s);
/* Writes the prompt (non-empty) and then `tokens` drawn bytes to out as they are
 * made (flushed); the bytes made, or -1 with a message when the forward function
 * failed.  top_k 0: every byte. */
int64_t sampler_generate(Sampler *s, const char *prompt, int64_t tokens, double temperature,
                         int64_t top_k, uint64_t seed, FILE *out, char *err, size_t errlen);

#endif
