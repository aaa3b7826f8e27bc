/* products: matrix products alone through libnnd's pool, f32 against bf16 (the
 * per-product figures of bench/README.md).
 *
 * usage: products THREADS OP M N K [OP M N K ...]
 *   OP: NN, NT, TN or TT (whether A and B are transposed); C = op(A) op(B) is M x N
 * prints per product: the best of REPS calls (default 200; NND_REPS sets it) of
 * nnd_gemm_f32 and nnd_gemm_bf16, alternating, in µs and GFLOP/s, and their ratio.
 * Build (after the project): gcc -O2 -Iruntime/include bench/products.c
 *   build/lib/libnnd.so -Wl,-rpath,$PWD/build/lib -o /tmp/products */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nnd_abi.h"
#include "nnd_runtime.h"

typedef void (*Gemm)(NndPool *, int, int, int64_t, int64_t, int64_t, const float *, int64_t,
                     const float *, int64_t, float, float *, int64_t, int64_t, int64_t, int64_t,
                     int64_t);

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static float *values(int64_t n, unsigned seed)
{
    float *x = malloc((size_t)n * sizeof *x);
    if (!x) {
        fprintf(stderr, "products: out of memory\n");
        exit(1);
    }
    srand(seed);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return x;
}

static void measure(NndPool *pool, const char *op, int64_t m, int64_t n, int64_t k, int reps)
{
    int ta = op[0] == 'T', tb = op[1] == 'T';
    float *a = values(m * k, 1), *b = values(k * n, 2), *c = values(m * n, 3);
    Gemm fn[2] = {nnd_gemm_f32, nnd_gemm_bf16};
    double best[2] = {1e30, 1e30};
    for (int r = 0; r < reps; r++)
        for (int v = 0; v < 2; v++) {
            double t0 = now_us();
            fn[v](pool, ta, tb, m, n, k, a, ta ? m : k, b, tb ? k : n, 0, c, n, 1, 0, 0, 0);
            double t = now_us() - t0;
            best[v] = t < best[v] ? t : best[v];
        }
    double flops = 2.0 * (double)m * (double)n * (double)k;
    printf("%s %5lld x %5lld x %5lld  f32 %9.1f us %6.0f GFLOP/s  bf16 %9.1f us %6.0f GFLOP/s  "
           "bf16/f32 %.2fx\n",
           op, (long long)m, (long long)n, (long long)k, best[0], flops / best[0] / 1e3, best[1],
           flops / best[1] / 1e3, best[0] / best[1]);
    free(a);
    free(b);
    free(c);
}

int main(int argc, char **argv)
{
    if (argc < 6 || (argc - 2) % 4 != 0) {
        fprintf(stderr, "usage: products THREADS OP M N K [OP M N K ...]  (OP: NN NT TN TT)\n");
        return 2;
    }
    const char *e = getenv("NND_REPS");
    int reps = e ? atoi(e) : 200;
    NndErr err;
    NndPool *pool = nnd_pool_create(atoi(argv[1]), &err);
    if (!pool) {
        fprintf(stderr, "products: %s\n", err.msg);
        return 1;
    }
    for (int i = 2; i + 3 < argc; i += 4) {
        const char *op = argv[i];
        if (strlen(op) != 2 || strspn(op, "NT") != 2) {
            fprintf(stderr, "products: '%s' is not NN, NT, TN or TT\n", op);
            return 2;
        }
        long long d[3];
        for (int j = 0; j < 3; j++) {
            char *end;
            d[j] = strtoll(argv[i + 1 + j], &end, 10);
            if (*end || d[j] <= 0) {
                fprintf(stderr, "products: '%s' is not a size (a whole number >= 1)\n",
                        argv[i + 1 + j]);
                return 2;
            }
        }
        measure(pool, op, d[0], d[1], d[2], reps > 0 ? reps : 1);
    }
    nnd_pool_destroy(pool);
    return 0;
}
