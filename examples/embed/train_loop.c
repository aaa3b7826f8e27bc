/* train_loop: a C program that owns its training loop and its data: it makes the
 * batches (XOR's four points, shuffled by itself), calls the compiled step of
 * examples/xor.nnd through libnnd, lowers the learning rate halfway without
 * recompiling, reads the eval metric, and saves the weights.
 *
 *   train_loop examples/xor.nnd xor.safetensors */
#include <stdio.h>
#include <stdlib.h>

#include <nnd.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: train_loop xor.nnd OUT.safetensors\n");
        return 2;
    }
    static const float points[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    static const float targets[4] = {0, 1, 1, 0};
    NndProgram *p = NULL;
    if (nnd_open(argv[1], NULL, &p) != NND_OK || nnd_init_weights(p) != NND_OK) {
        fprintf(stderr, "%s\n", nnd_errmsg(p));
        nnd_close(p);
        return 1;
    }
    double lr;
    nnd_get_hyper(p, "opt.lr", &lr);
    float x[4][2], y[4];
    unsigned r = 12345;
    int rc = NND_OK;
    for (int step = 0; step < 600 && rc == NND_OK; step++) {
        if (step == 300) { /* a new learning rate: a run-time input of the compiled step */
            rc = nnd_set_hyper(p, "opt.lr", lr / 5);
            printf("step %d: opt.lr %g -> %g\n", step, lr, lr / 5);
        }
        int order[4] = {0, 1, 2, 3};
        for (int i = 3; i > 0; i--) { /* our own shuffle */
            r = r * 1103515245u + 12345u;
            int j = (int)((r >> 16) % (unsigned)(i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (int i = 0; i < 4; i++) {
            x[i][0] = points[order[i]][0];
            x[i][1] = points[order[i]][1];
            y[i] = targets[order[i]];
        }
        double loss;
        if (rc == NND_OK)
            rc = nnd_step(p, x, sizeof x, y, sizeof y, 4, &loss);
        if (rc == NND_OK && (step + 1) % 100 == 0) {
            double err;
            rc = nnd_evaluate(p, 0, points, sizeof points, targets, sizeof targets, 4, &err);
            printf("step %d: loss %.6f, %s %.6f\n", step + 1, loss, nnd_metric_name(p, 0, 0), err);
        }
    }
    float out[4];
    if (rc == NND_OK)
        rc = nnd_forward(p, points, sizeof points, 4, out, sizeof out);
    if (rc == NND_OK)
        printf("xor: %.3f %.3f %.3f %.3f\n", out[0], out[1], out[2], out[3]);
    if (rc == NND_OK)
        rc = nnd_save_weights(p, argv[2]);
    if (rc != NND_OK)
        fprintf(stderr, "%s\n", nnd_errmsg(p));
    else
        printf("saved %s\n", argv[2]);
    nnd_close(p);
    return rc == NND_OK ? 0 : 1;
}
