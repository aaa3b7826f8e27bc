/* fuzz_idx: the IDX loader (nnd_idx_probe, nnd_idx_load; plain or gzip-compressed)
 * on arbitrary bytes, as features and as labels, in f32 and f64.  A load must fail
 * cleanly or give a tensor of the header's shape. */
#include <string.h>

#include "fuzz_file.h"
#include "nnd_runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    for (int k = 0; k < 2; k++) {
        NndLoadOptions lo = {k ? 1.0 / 255 : 0, k ? NND_F64 : NND_F32};
        NndRole role = k ? NND_LABELS : NND_FEATURES;
        NndErr err;
        NndTensor probe = {0}, t = {0};
        int rp = nnd_idx_probe(path, role, &lo, &probe, &err);
        int rl = nnd_idx_load(path, role, &lo, &t, &err);
        FUZZ_CHECK(rl != 0 || t.data != NULL || nnd_tensor_numel(&t) == 0);
        /* what the probe says is what the load finds */
        FUZZ_CHECK(rl != 0 || rp != 0 ||
                   (probe.rank == t.rank && memcmp(probe.shape, t.shape, sizeof t.shape) == 0));
        nnd_tensor_free(&probe);
        nnd_tensor_free(&t);
    }
    return 0;
}
