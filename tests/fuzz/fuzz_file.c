/* fuzz_file: the readers of files users give nnd, each a libFuzzer target built
 * from this file with FUZZ_FORMAT set: safetensors (open, then load every
 * tensor), IDX and NPY (as features and as labels), CSV (regression and classes),
 * text (a split of the bytes) and a log's metrics.csv (nnd plot).  The input is
 * written to a file of this process's own, since the readers take paths; the
 * first bytes choose the options where a reader has some.  A reader must give a
 * clear error or a result, never a crash, a leak or undefined behaviour. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nnd_runtime.h"
#include "plot.h"

#define SAFETENSORS 1
#define IDX 2
#define NPY 3
#define CSV 4
#define TEXT 5
#define METRICS 6

static char dir[64], path[128];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(dir, sizeof dir, "/tmp/nnd-fuzz-%d", (int)getpid());
    if (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0) {
        perror(dir);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s", dir, FUZZ_FORMAT == METRICS ? "metrics.csv" : "input");
    return 0;
}

static void write_input(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 20)
        return 0;
    unsigned opt = data[0];
    write_input(data + 1, size - 1);
    NndErr err;
    NndTensor x = {0}, y = {0};
    NndLoadOptions lo = {opt & 1 ? 0.5 : 1, opt & 2 ? NND_F64 : NND_F32};
    NndRole role = opt & 4 ? NND_LABELS : NND_FEATURES;
#if FUZZ_FORMAT == SAFETENSORS
    NndSafetensors st;
    if (nnd_safetensors_open(&st, path, &err) == 0) {
        for (int i = 0; i < st.n_tensors; i++) {
            NndTensor t;
            if (nnd_safetensors_load(&st, st.tensors[i].name, &t, &err) == 0)
                nnd_tensor_free(&t);
        }
        (void)nnd_safetensors_meta(&st, "format");
    }
    nnd_safetensors_close(&st);
#elif FUZZ_FORMAT == IDX
    if (opt & 8)
        (void)nnd_idx_probe(path, role, &lo, &x, &err);
    else
        (void)nnd_idx_load(path, role, &lo, &x, &err);
#elif FUZZ_FORMAT == NPY
    if (opt & 8)
        (void)nnd_npy_probe(path, role, &lo, &x, &err);
    else
        (void)nnd_npy_load(path, role, &lo, &x, &err);
#elif FUZZ_FORMAT == CSV
    (void)nnd_csv_load(path, opt & 8 ? "label" : NULL, (opt & 16) != 0, &lo, &x, &y, &err);
#elif FUZZ_FORMAT == TEXT
    const char *paths[] = {path, path};
    double from = (opt & 7) / 8.0;
    (void)nnd_text_load(
        paths, 1 + ((opt >> 3) & 1), from,
        from + 0.125 * (1 + (opt >> 4 & 7)) > 1 ? 1 : from + 0.125 * (1 + (opt >> 4 & 7)), &x,
        &err);
#elif FUZZ_FORMAT == METRICS
    char out[256], used[256], msg[1024];
    snprintf(out, sizeof out, "%s/plot.svg", dir);
    (void)plot_metrics(dir, out, used, sizeof used, msg, sizeof msg);
#endif
    nnd_tensor_free(&x);
    nnd_tensor_free(&y);
    return 0;
}
