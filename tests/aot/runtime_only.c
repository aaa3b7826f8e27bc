/* runtime_only: net.nnd's forward, compiled ahead of time (net_fwd.o), linked with
 * the runtime library alone: loads weights, classifies the first test images of
 * Fashion-MNIST and prints the classes and how long the first prediction took
 * from the start of main.  runtime_only.sh checks what it links. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <time.h>

#include "net_fwd.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    double t0 = now();
    if (argc != 3) {
        fprintf(stderr, "usage: runtime_only WEIGHTS IMAGES-IDX\n");
        return 2;
    }
    char err[256];
    NndAot *s = net_fwd_new(1, err, sizeof err);
    if (!s) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    NndLoadOptions lo = {1.0 / 255, NND_F32};
    NndTensor images;
    NndErr e;
    float out[8][NET_FWD_OUTPUT_SIZE];
    int rc = 1;
    if (nnd_aot_load_weights(s, argv[1]) != 0)
        fprintf(stderr, "%s\n", nnd_aot_errmsg(s));
    else if (nnd_idx_load(argv[2], NND_FEATURES, &lo, &images, &e) != 0)
        fprintf(stderr, "%s\n", e.msg);
    else if (net_fwd_forward(s, images.data, 8, &out[0][0]) != 0)
        fprintf(stderr, "%s\n", nnd_aot_errmsg(s));
    else
        rc = 0;
    double t1 = now();
    for (int i = 0; rc == 0 && i < 8; i++) {
        int best = 0;
        for (int k = 1; k < NET_FWD_OUTPUT_SIZE; k++)
            if (out[i][k] > out[i][best])
                best = k;
        printf("%d%s", best, i == 7 ? "\n" : " ");
    }
    if (rc == 0)
        printf("first prediction %.2f ms after main (weights and images loaded)\n",
               1e3 * (t1 - t0));
    if (images.data)
        nnd_tensor_free(&images);
    nnd_aot_free(s);
    return rc;
}
