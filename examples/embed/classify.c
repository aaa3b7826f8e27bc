/* classify: a trained model used from C through libnnd.
 *
 *   nnd run examples/fashion_mnist_mlp.nnd          # trains, saves fashion_mnist_mlp.safetensors
 *   classify examples/fashion_mnist_mlp.nnd fashion_mnist_mlp.safetensors \
 *            /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
 *            /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
 *
 * Opens the program (compiling its forward function), loads the weights, reads the
 * test images with the runtime's IDX loader, classifies them all in one call and
 * prints the first predictions and the accuracy. */
#include <stdio.h>
#include <stdlib.h>

#include <nnd.h>

static const char *const names[] = {"T-shirt", "trouser", "pullover", "dress", "coat",
                                    "sandal",  "shirt",   "sneaker",  "bag",   "boot"};

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: classify PROGRAM.nnd WEIGHTS.safetensors IMAGES LABELS\n");
        return 2;
    }
    NndProgram *p = NULL;
    if (nnd_open(argv[1], NULL, &p) != NND_OK || nnd_load_weights(p, argv[2]) != NND_OK) {
        fprintf(stderr, "%s\n", nnd_errmsg(p));
        nnd_close(p);
        return 1;
    }
    NndLoadOptions lo = {1.0 / 255, NND_F32}; /* as the program's data: scale = 1/255 */
    NndTensor images, labels;
    NndErr err;
    if (nnd_idx_load(argv[3], NND_FEATURES, &lo, &images, &err) != 0 ||
        nnd_idx_load(argv[4], NND_LABELS, &lo, &labels, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        nnd_close(p);
        return 1;
    }
    int64_t n = images.shape[0];
    NndTensorInfo xi, oi;
    nnd_input_info(p, "x", &xi);
    nnd_output_info(p, &oi);
    float *logits = malloc(oi.sample_bytes * (size_t)n);
    int rc = nnd_forward(p, images.data, xi.sample_bytes * (size_t)n, n, logits,
                         oi.sample_bytes * (size_t)n);
    if (rc != NND_OK) {
        fprintf(stderr, "%s\n", nnd_errmsg(p));
    } else {
        int64_t classes = (int64_t)(oi.sample_bytes / sizeof(float)), right = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t best = 0;
            for (int64_t k = 1; k < classes; k++)
                if (logits[i * classes + k] > logits[i * classes + best])
                    best = k;
            int32_t truth = ((int32_t *)labels.data)[i];
            right += best == truth;
            if (i < 5)
                printf("image %lld: %s (label: %s)\n", (long long)i, names[best % 10],
                       names[truth % 10]);
        }
        printf("accuracy %.4f on %lld images\n", (double)right / (double)n, (long long)n);
    }
    free(logits);
    nnd_tensor_free(&images);
    nnd_tensor_free(&labels);
    nnd_close(p);
    return rc == NND_OK ? 0 : 1;
}
