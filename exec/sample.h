/* sample: text from a byte-level language model (a program whose model takes
 * x: [B, T] i32 tokens and gives [B, T, V] logits, as examples/gpt.nnd), for
 * `nnd sample` and the train block's `sample every N steps: ...`.
 *
 * With the key/value cache (compiled engine; compiler/decode.h), each byte costs the
 * decode function once: one position through the model, reading the cached keys and
 * values of the earlier ones.  The prompt goes in a byte at a time; when the
 * context is full (T bytes), the cache restarts from the last T/2 bytes.  Before
 * the first byte is drawn the decode function's logits are compared with the
 * forward function's at every position of the prompt: a model whose outputs depend on
 * later positions (not causal) is then sampled without the cache.
 *
 * Without the cache (--no-cache, the interpreter, or a forward graph the decode pass
 * cannot follow), each byte runs the forward function over the last T bytes
 * (left-aligned: a causal model's logits at position i depend on positions 0..i
 * only).  Either way the byte is drawn from softmax(logits / temperature) over the
 * top_k likeliest with the counter-based generator, so a seed gives the same text on
 * any machine; the two ways give the same text while the context is not full. */
#ifndef NND_SAMPLE_H
#define NND_SAMPLE_H

#include <stdio.h>

#include "decode.h"
#include "executable.h"

typedef struct SamplerCache {
    Decode dec;
    Schedule sched;
    Jit *jit;
    NndStepFn fn;
    char *arena;
    void **states; /* the program's states, then the caches */
    double *hypers; /* the program's hyper-parameters, then pos */
    int64_t pos, base; /* positions filled; the text index of position 0 */
    bool checked; /* compared with the forward function once */
} SamplerCache;

typedef struct Sampler {
    const Program *p;
    Executable *x; /* with its forward function */
    void **params, **states;
    double *hypers;
    NndPool *pool;
    int64_t T, V;
    double *logits, *prob;
    int32_t *ctx;
    SamplerCache *cache; /* NULL: a forward pass per byte */
    char why[256]; /* why there is no cache, or "" */
} Sampler;

/* Whether p is a model sampling can draw from: tokens in, [B, T, 256] logits out
 * (each token is written as a byte); else false with why in err. */
bool sampler_fits(const Program *p, char *err, size_t errlen);
/* false with a message when p does not fit (sampler_fits) or x has no forward
 * function.  With `cache`, compiles the decode function when it can (otherwise
 * s->why says why not).  The pointers are borrowed; the buffers are the sampler's. */
bool sampler_init(Sampler *s, const Program *p, Executable *x, void **params, void **states,
                  double *hypers, NndPool *pool, bool cache, char *err, size_t errlen);
void sampler_free(Sampler *s);
/* Writes the prompt (non-empty) and then `tokens` drawn bytes to out as they are
 * made (flushed); the bytes made, or -1 with a message when the forward function
 * failed.  top_k 0: every byte. */
int64_t sampler_generate(Sampler *s, const char *prompt, int64_t tokens, double temperature,
                         int64_t top_k, uint64_t seed, FILE *out, char *err, size_t errlen);

/* The largest difference, relative to the largest logit (at least 1), between the
 * decode function's logits at each position of tokens[0..n) (n <= T) and the
 * forward function's: how closely the cache follows the model.  -1 with a message
 * when there is no cache or a function failed. */
double sampler_compare(Sampler *s, const int32_t *tokens, int64_t n, char *err, size_t errlen);

#endif
