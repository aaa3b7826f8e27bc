/* fused_update: how much of Adam's update would hide inside the product that
 * finishes its gradient (issue 14's "update fused into the epilogue").
 *
 * The product is 784-128-10's weight gradient dW1 = X^T dH (784 x 128, k = 64: the
 * batch), computed in 8 x 32 blocks of C held in 16 zmm registers, as the runtime's
 * own AVX-512 kernels do (runtime/kernels.c).  The update is nnd's Adam loop as its
 * JIT emits it (one square root and one division a value; the bias corrections are
 * scalars).  Four ways, best of 3000 rounds each:
 *     product      the product alone
 *     separate     the product, then the update over all of W1 (what the step does)
 *     after block  after each block of C, a call that updates 256 values (the
 *                  previous row of blocks': a function the JIT would hand the kernel)
 *     in k loop    the update's vector operations inside the block's k loop, one
 *                  vector of 16 values every 4 k (what a JIT-generated kernel with the
 *                  update inlined could do)
 *
 * build and run: cc -O3 -march=native -fno-math-errno bench/fused_update.c -o fu -lm && ./fu
 *
 * On the Zen 4 of bench/README.md (2 cores, AVX-512 on 256-bit units), microseconds:
 * product 110-120, separate 141, after block 141, in k loop 130-132.  A call between
 * blocks hides nothing; inlined, a third of the update's 30 us hides behind the
 * product's multiply-adds (its own multiplies share their pipes, and its square roots
 * and divisions hold the divider). */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { M = 784, N = 128, K = 64, MR = 8, NR = 32, ROUNDS = 3000 };

typedef struct Adam {
    float *w, *m, *v;
    const float *g;
    float lr, b1, b2, eps, c2; /* c2: 1 / (1 - beta2^t); lr holds lr / (1 - beta1^t) */
} Adam;

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

/* The values begin .. end of the update, as nnd's loop computes them. */
__attribute__((noinline)) static void adam(const Adam *s, int64_t begin, int64_t end)
{
    float *restrict w = s->w, *restrict m = s->m, *restrict v = s->v;
    const float *restrict g = s->g;
    const float b1 = s->b1, b2 = s->b2, lr = s->lr, c2 = s->c2, eps = s->eps;
    for (int64_t i = begin; i < end; i++) {
        float mi = b1 * m[i] + (1 - b1) * g[i];
        float vi = b2 * v[i] + (1 - b2) * (g[i] * g[i]);
        m[i] = mi;
        v[i] = vi;
        w[i] -= lr * mi / (__builtin_sqrtf(vi * c2) + eps);
    }
}

/* One vector of the update at offset o. */
static inline void adam16(const Adam *s, int64_t o)
{
    const __m512 b1 = _mm512_set1_ps(s->b1), b2 = _mm512_set1_ps(s->b2);
    const __m512 g = _mm512_loadu_ps(s->g + o);
    __m512 m = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_loadu_ps(s->m + o)),
                             _mm512_mul_ps(_mm512_set1_ps(1 - s->b1), g));
    __m512 v = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_loadu_ps(s->v + o)),
                             _mm512_mul_ps(_mm512_set1_ps(1 - s->b2), _mm512_mul_ps(g, g)));
    _mm512_storeu_ps(s->m + o, m);
    _mm512_storeu_ps(s->v + o, v);
    __m512 d = _mm512_add_ps(_mm512_sqrt_ps(_mm512_mul_ps(v, _mm512_set1_ps(s->c2))),
                             _mm512_set1_ps(s->eps));
    __m512 u = _mm512_div_ps(_mm512_mul_ps(_mm512_set1_ps(s->lr), m), d);
    _mm512_storeu_ps(s->w + o, _mm512_sub_ps(_mm512_loadu_ps(s->w + o), u));
}

/* The 8 x 32 block of C = A^T B at (i, j) (A: k x M, B: k x N); with s, the update
 * of the 256 values at u spread over its k loop. */
__attribute__((noinline)) static void block(const float *a, const float *b, float *c, int i, int j,
                                            const Adam *s, int64_t u)
{
    __m512 acc[MR][2];
    for (int r = 0; r < MR; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int q = 0; q < K; q++) {
        __m512 b0 = _mm512_loadu_ps(b + q * N + j), b1 = _mm512_loadu_ps(b + q * N + j + 16);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 x = _mm512_set1_ps(a[q * M + i + r]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
        }
        if (s && q % 4 == 3)
            adam16(s, u + q / 4 * 16);
    }
    for (int r = 0; r < MR; r++) {
        _mm512_storeu_ps(c + (i + r) * N + j, acc[r][0]);
        _mm512_storeu_ps(c + (i + r) * N + j + 16, acc[r][1]);
    }
}

int main(void)
{
    _mm_setcsr(_mm_getcsr() | 0x8040); /* flush denormals to zero, as nnd's threads do */
    float *a = aligned_alloc(64, sizeof(float) * K * M),
          *b = aligned_alloc(64, sizeof(float) * K * N);
    float *c = aligned_alloc(64, sizeof(float) * M * N),
          *w = aligned_alloc(64, sizeof(float) * M * N);
    float *m = aligned_alloc(64, sizeof(float) * M * N),
          *v = aligned_alloc(64, sizeof(float) * M * N);
    if (!a || !b || !c || !w || !m || !v)
        return 1;
    for (int i = 0; i < K * M; i++)
        a[i] = (float)(rand() % 100) / 100.0f;
    for (int i = 0; i < K * N; i++)
        b[i] = (float)(rand() % 100 - 50) / 1000.0f;
    for (int i = 0; i < M * N; i++)
        w[i] = 0.01f * (float)(i % 7), m[i] = v[i] = 0;
    Adam s = {w, m, v, c, 1e-2f, 0.9f, 0.999f, 1e-8f, 1e3f};
    const int64_t quarter = MR * N / 4; /* a row of blocks' values, in 4 parts */
    static const char *names[] = {"product", "separate", "after block", "in k loop"};
    for (int way = 0; way < 4; way++) {
        double best = 1e30;
        for (int round = 0; round < ROUNDS; round++) {
            double t0 = now_us();
            for (int i = 0; i < M; i += MR)
                for (int j = 0; j < N; j += NR) {
                    /* the previous row of blocks' part j / NR */
                    int64_t u = i ? (int64_t)(i - MR) * N + j / NR * quarter : -1;
                    block(a, b, c, i, j, way == 3 && u >= 0 ? &s : NULL, u);
                    if (way == 2 && u >= 0)
                        adam(&s, u, u + quarter);
                }
            if (way == 1)
                adam(&s, 0, (int64_t)M * N);
            else if (way >= 2) /* the last row of blocks */
                adam(&s, (int64_t)(M - MR) * N, (int64_t)M * N);
            double t = now_us() - t0;
            best = t < best ? t : best;
        }
        printf("%-12s %7.2f us\n", names[way], best);
    }
    return 0;
}
