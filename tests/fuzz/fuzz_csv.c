/* fuzz_csv: the CSV loader (nnd_csv_load) on arbitrary bytes: regression targets
 * (classes 0) in f32, and class labels (classes 10) in f64 with the label column
 * named by the header's first field.  A load must fail cleanly or give x [N, F]
 * and y of N rows. */
#include <string.h>

#include "fuzz_file.h"
#include "nnd_runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    char label[64];
    size_t n = 0;
    while (n < size && n < sizeof label - 1 && data[n] != ',' && data[n] != '\n' && data[n] != 0)
        n++;
    memcpy(label, data, n);
    label[n] = 0;
    for (int k = 0; k < 2; k++) {
        NndLoadOptions lo = {k ? 1e-3 : 0, k ? NND_F64 : NND_F32};
        NndErr err;
        NndTensor x = {0}, y = {0};
        int rc = nnd_csv_load(path, k ? label : NULL, k ? 10 : 0, &lo, &x, &y, &err);
        FUZZ_CHECK(rc != 0 || (x.rank == 2 && y.shape[0] == x.shape[0]));
        nnd_tensor_free(&x);
        nnd_tensor_free(&y);
    }
    return 0;
}
