/* tensor: dtype facts and tensor buffers (owned by the tensor, from nnd_alloc). */
#include "nnd_runtime.h"

#include <stdio.h>
#include <string.h>

size_t nnd_dtype_size(NndDType t)
{
    switch (t) {
    case NND_F32: return 4;
    case NND_F64: return 8;
    case NND_I32: return 4;
    case NND_BOOL: return 1;
    default: return 0;
    }
}

const char *nnd_dtype_name(NndDType t)
{
    switch (t) {
    case NND_F32: return "f32";
    case NND_F64: return "f64";
    case NND_I32: return "i32";
    case NND_BOOL: return "bool";
    default: return "?";
    }
}

static int shape_too_large(NndErr *err, NndDType dtype, int rank, const int64_t *shape)
{
    char buf[NND_MAX_RANK * 21 + 1];
    size_t len = 0;
    for (int i = 0; i < rank; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%lld", i ? "x" : "",
                                (long long)shape[i]);
    buf[len] = 0;
    return nnd_err(err, "a %s tensor of shape %s is too large to allocate", nnd_dtype_name(dtype),
                   buf);
}

/* Assumes a valid shape (one nnd_tensor_alloc accepted); rank 0 is a scalar. */
int64_t nnd_tensor_numel(const NndTensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}

int nnd_tensor_alloc(NndTensor *t, NndDType dtype, int rank, const int64_t *shape, NndErr *err)
{
    memset(t, 0, sizeof *t);
    size_t elem = nnd_dtype_size(dtype);
    if (elem == 0)
        return nnd_err(err, "invalid dtype %d", (int)dtype);
    if (rank < 0 || rank > NND_MAX_RANK)
        return nnd_err(err, "rank %d is outside 0..%d", rank, (int)NND_MAX_RANK);
    /* Bytes must fit both size_t (for the allocator) and int64_t (for indexing). */
    uint64_t limit =
        (uint64_t)INT64_MAX < (uint64_t)SIZE_MAX ? (uint64_t)INT64_MAX : (uint64_t)SIZE_MAX;
    uint64_t bytes = elem;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0)
            return nnd_err(err, "dimension %d is negative (%lld)", i, (long long)shape[i]);
        if (shape[i] != 0 && bytes > limit / (uint64_t)shape[i]) {
            /* Keep scanning: a later zero dimension makes the tensor empty. */
            int empty = 0;
            for (int j = i + 1; j < rank; j++)
                empty |= shape[j] == 0;
            if (!empty)
                return shape_too_large(err, dtype, rank, shape);
            bytes = 0;
            break;
        }
        bytes *= (uint64_t)shape[i];
    }
    void *data = nnd_alloc((size_t)bytes);
    if (!data)
        return nnd_err(err, "out of memory allocating %llu bytes", (unsigned long long)bytes);
    memset(data, 0, (size_t)bytes);
    t->dtype = dtype;
    t->rank = rank;
    for (int i = 0; i < rank; i++)
        t->shape[i] = shape[i];
    t->data = data;
    return 0;
}

void nnd_tensor_free(NndTensor *t)
{
    if (!t)
        return;
    nnd_free(t->data);
    t->data = NULL;
}

void nnd_shape_text(char *buf, size_t size, int rank, const int64_t *shape)
{
    size_t at = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < rank && at < size; d++)
        at += (size_t)snprintf(buf + at, size - at, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (at < size)
        snprintf(buf + at, size - at, "]");
}

double nnd_tensor_value(const NndTensor *t, int64_t i)
{
    switch (t->dtype) {
    case NND_F32: return ((const float *)t->data)[i];
    case NND_F64: return ((const double *)t->data)[i];
    case NND_I32: return ((const int32_t *)t->data)[i];
    default: return ((const uint8_t *)t->data)[i];
    }
}

void nnd_store_values(const double *src, int64_t n, NndDType dt, void *dst)
{
    for (int64_t i = 0; i < n; i++) {
        switch (dt) {
        case NND_F32: ((float *)dst)[i] = (float)src[i]; break;
        case NND_F64: ((double *)dst)[i] = src[i]; break;
        case NND_I32: ((int32_t *)dst)[i] = (int32_t)src[i]; break;
        default: ((uint8_t *)dst)[i] = src[i] != 0; break;
        }
    }
}
