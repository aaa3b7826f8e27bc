/* fuzz_text: the text loader behind `text(...)` (nnd_text_size, nnd_text_load) on
 * arbitrary bytes, the file given once or twice (a concatenation) and split at
 * fractions taken from the first byte.  A load must fail cleanly or give a [len]
 * i32 tensor of exactly the bytes of its part, each 0..255. */
#include <stdint.h>

#include "fuzz_file.h"
#include "nnd_runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned opt = size ? data[0] : 0;
    const char *path = fuzz_file(data, size);
    const char *paths[] = {path, path};
    int n = 1 + (opt & 1);
    double from = ((opt >> 1) & 7) / 8.0, to = from + ((opt >> 4) + 1) / 16.0;
    to = to > 1 ? 1 : to;
    NndErr err;
    int64_t bytes = -1;
    int rs = nnd_text_size(paths, n, &bytes, &err);
    FUZZ_CHECK(rs != 0 || bytes == (int64_t)size * n);
    NndTensor t = {0};
    if (nnd_text_load(paths, n, from, to, &t, &err) == 0) {
        FUZZ_CHECK(t.rank == 1 && t.dtype == NND_I32 && t.shape[0] <= (int64_t)size * n);
        const int32_t *v = t.data;
        for (int64_t i = 0; i < t.shape[0]; i++)
            FUZZ_CHECK(v[i] >= 0 && v[i] <= 255);
    }
    nnd_tensor_free(&t);
    return 0;
}
