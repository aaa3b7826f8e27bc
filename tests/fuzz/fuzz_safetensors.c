/* fuzz_safetensors: the safetensors reader on arbitrary bytes: open (the header
 * checked in full), the metadata looked up, and every listed tensor loaded.  An
 * entry that opens must load or fail cleanly, and what loads has the entry's shape. */
#include <string.h>

#include "fuzz_file.h"
#include "nnd_runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    NndSafetensors st;
    NndErr err;
    if (nnd_safetensors_open(&st, path, &err) != 0) {
        nnd_safetensors_close(&st);
        return 0;
    }
    for (int i = 0; i < st.n_meta; i++)
        FUZZ_CHECK(nnd_safetensors_meta(&st, st.meta[i].key) != NULL);
    for (int i = 0; i < st.n_tensors; i++) {
        const NndSafetensorsEntry *e = &st.tensors[i];
        FUZZ_CHECK(nnd_safetensors_find(&st, e->name) != NULL);
        NndTensor t = {0};
        if (nnd_safetensors_load(&st, e->name, &t, &err) == 0)
            FUZZ_CHECK(t.rank == e->rank && memcmp(t.shape, e->shape, sizeof t.shape) == 0);
        nnd_tensor_free(&t);
    }
    nnd_safetensors_close(&st);
    return 0;
}
