/* floor: the GEMM floor of an MLP's training step — the time its matrix products
 * alone take in OpenBLAS (f32), with nothing else: per layer the forward product
 * x @ W, the weight gradient x^T @ dY and, past the first layer, the input gradient
 * dY @ W^T.  A trainer's samples/s over this program's is its share of the floor.
 *
 * usage: floor THREADS BATCH SIZE0 SIZE1 ... (layer widths, input first)
 * prints: floor: N samples/s (best of R rounds of S steps)
 * Built and run by bench/run.py (gcc -O2 floor.c -lopenblas). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <xmmintrin.h>

void openblas_set_num_threads(int num_threads);

enum { MAX_LAYERS = 16, ROUNDS = 5 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float *filled(size_t n, float v)
{
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "floor: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = v * (float)(1 + i % 7);
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc - 3 > MAX_LAYERS + 1) {
        fprintf(stderr, "usage: floor THREADS BATCH SIZE0 SIZE1 ...\n");
        return 2;
    }
    int threads = atoi(argv[1]), b = atoi(argv[2]), layers = argc - 4;
    int size[MAX_LAYERS + 1];
    for (int i = 0; i <= layers; i++)
        size[i] = atoi(argv[3 + i]);
    _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ, DAZ: as every trainer measured */
    openblas_set_num_threads(threads);
    float *x[MAX_LAYERS + 1], *dx[MAX_LAYERS + 1], *w[MAX_LAYERS], *dw[MAX_LAYERS];
    for (int i = 0; i <= layers; i++) {
        x[i] = filled((size_t)b * size[i], 0.01f);
        dx[i] = filled((size_t)b * size[i], 0.001f);
    }
    for (int l = 0; l < layers; l++) {
        w[l] = filled((size_t)size[l] * size[l + 1], 0.01f);
        dw[l] = filled((size_t)size[l] * size[l + 1], 0);
    }
    /* steps per round: about 0.2 s of products */
    double flops = 0;
    for (int l = 0; l < layers; l++)
        flops += (l ? 6.0 : 4.0) * b * size[l] * size[l + 1];
    int steps = (int)(0.2 * 50e9 * threads / flops) + 10;
    double best = 1e30;
    for (int r = 0; r <= ROUNDS; r++) { /* round 0 warms up */
        double t0 = now();
        for (int s = 0; s < steps; s++) {
            for (int l = 0; l < layers; l++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, size[l + 1], size[l], 1,
                            x[l], size[l], w[l], size[l + 1], 0, x[l + 1], size[l + 1]);
            for (int l = layers - 1; l >= 0; l--) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, size[l], size[l + 1], b, 1,
                            x[l], size[l], dx[l + 1], size[l + 1], 0, dw[l], size[l + 1]);
                if (l > 0)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, size[l], size[l + 1], 1,
                                dx[l + 1], size[l + 1], w[l], size[l + 1], 0, dx[l], size[l]);
            }
        }
        double t = (now() - t0) / steps;
        if (r > 0 && t < best)
            best = t;
    }
    printf("floor: %.0f samples/s (best of %d rounds of %d steps; %.1f GFLOP/s)\n", b / best,
           ROUNDS, steps, flops / best * 1e-9);
    return 0;
}
