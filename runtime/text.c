/* text: files read as bytes, for byte-level language models.  The files are
 * concatenated in the order given; a fraction [from, to) of the bytes is kept (a
 * validation split is the last tenth: [0.9, 1)).  Each byte becomes an i32 token in
 * 0..255, the dtype labels and embeddings take. */
#define _POSIX_C_SOURCE 200809L
#include "nnd_runtime.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* The byte size of a regular file; -1 with a message naming it otherwise. */
static int64_t file_size(const char *path, NndErr *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return nnd_err(err, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return nnd_err(err, "%s: is a directory (name its files, or a pattern like \"%s/*\")", path,
                       path);
    if (!S_ISREG(st.st_mode))
        return nnd_err(err, "%s: not a regular file", path);
    return (int64_t)st.st_size;
}

int nnd_text_size(const char *const *paths, int n, int64_t *bytes, NndErr *err)
{
    *bytes = 0;
    if (n < 1)
        return nnd_err(err, "text: no files");
    for (int i = 0; i < n; i++) {
        int64_t s = file_size(paths[i], err);
        if (s < 0)
            return -1;
        if (s == 0) /* as a pattern's match too: likely a mistake, exclude it if not */
            return nnd_err(err, "%s: empty", paths[i]);
        *bytes += s;
    }
    return 0;
}

/* The part [lo, hi) of the concatenation that falls in the file at offset at. */
static int read_part(const char *path, int64_t at, int64_t size, int64_t lo, int64_t hi,
                     int32_t *out, NndErr *err)
{
    int64_t b = lo > at ? lo : at, e = hi < at + size ? hi : at + size;
    if (b >= e)
        return 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return nnd_err(err, "%s: cannot open: %s", path, strerror(errno));
    unsigned char buf[65536];
    int rc = fseeko(f, (off_t)(b - at), SEEK_SET) == 0 ? 0 : -1;
    for (int64_t p = b; rc == 0 && p < e;) {
        size_t want = (size_t)(e - p < (int64_t)sizeof buf ? e - p : (int64_t)sizeof buf);
        size_t got = fread(buf, 1, want, f);
        if (got == 0) {
            rc = -1;
            break;
        }
        for (size_t k = 0; k < got; k++)
            out[p - lo + (int64_t)k] = buf[k];
        p += (int64_t)got;
    }
    fclose(f);
    return rc == 0 ? 0 : nnd_err(err, "%s: cannot read (did it change while being read?)", path);
}

int nnd_text_load(const char *const *paths, int n, double from, double to, NndTensor *out,
                  NndErr *err)
{
    memset(out, 0, sizeof *out);
    if (!(from >= 0 && from < to && to <= 1))
        return nnd_err(err, "text: the split [%g, %g] is not a part of [0, 1]", from, to);
    int64_t total;
    if (nnd_text_size(paths, n, &total, err) != 0)
        return -1;
    int64_t lo = (int64_t)((double)total * from), hi = (int64_t)((double)total * to);
    if (hi <= lo)
        return nnd_err(err, "%s: the split [%g, %g] of %lld byte%s is empty", paths[0], from, to,
                       (long long)total, total == 1 ? "" : "s");
    int64_t len = hi - lo;
    if (nnd_tensor_alloc(out, NND_I32, 1, &len, err) != 0)
        return -1;
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        int64_t s = file_size(paths[i], err);
        if (s < 0 || read_part(paths[i], at, s, lo, hi, out->data, err) != 0) {
            nnd_tensor_free(out);
            return -1;
        }
        at += s;
    }
    if (at != total) {
        nnd_tensor_free(out);
        return nnd_err(err, "%s: the files changed size while being read", paths[0]);
    }
    return 0;
}
