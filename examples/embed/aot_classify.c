/* aot_classify: a model compiled ahead of time, linked with the runtime alone (no
 * LLVM, no compiler, no .nnd file at run time).
 *
 *   nnd build examples/fashion_mnist_mlp.nnd --weights fashion_mnist_mlp.safetensors \
 *       -o mlp.o --header mlp.h --name mlp
 *   cc aot_classify.c mlp.o $(pkg-config --cflags --libs nnd-runtime) -o aot_classify
 *   aot_classify /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
 *                /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
 *
 * With weights embedded by --weights the program needs nothing else; an optional
 * third argument loads other weights (a model built without --weights needs it). */
#include <stdio.h>
#include <stdlib.h>

#include "mlp.h"

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: aot_classify IMAGES LABELS [WEIGHTS.safetensors]\n");
        return 2;
    }
    char msg[256];
    NndAot *s = mlp_new(1, msg, sizeof msg);
    if (!s) {
        fprintf(stderr, "%s\n", msg);
        return 1;
    }
    NndLoadOptions lo = {1.0 / 255, NND_F32};
    NndTensor images = {0}, labels = {0};
    NndErr err;
    int rc = 1;
    if (argc == 4 && nnd_aot_load_weights(s, argv[3]) != 0)
        fprintf(stderr, "%s\n", nnd_aot_errmsg(s));
    else if (nnd_idx_load(argv[1], NND_FEATURES, &lo, &images, &err) != 0 ||
             nnd_idx_load(argv[2], NND_LABELS, &lo, &labels, &err) != 0)
        fprintf(stderr, "%s\n", err.msg);
    else
        rc = 0;
    int64_t n = rc == 0 ? images.shape[0] : 0;
    float *out = malloc(sizeof(float) * MLP_OUTPUT_SIZE * (size_t)(n ? n : 1));
    if (rc == 0 && mlp_forward(s, images.data, n, out) != 0) {
        fprintf(stderr, "%s\n", nnd_aot_errmsg(s));
        rc = 1;
    }
    int64_t right = 0;
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        int best = 0;
        for (int k = 1; k < MLP_OUTPUT_SIZE; k++)
            if (out[i * MLP_OUTPUT_SIZE + k] > out[i * MLP_OUTPUT_SIZE + best])
                best = k;
        right += best == ((int32_t *)labels.data)[i];
        if (i < 5)
            printf("image %lld: class %d\n", (long long)i, best);
    }
    if (rc == 0)
        printf("accuracy %.4f on %lld images\n", (double)right / (double)n, (long long)n);
    free(out);
    nnd_tensor_free(&images);
    nnd_tensor_free(&labels);
    nnd_aot_free(s);
    return rc;
}
