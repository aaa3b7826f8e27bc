/* safetensors: Hugging Face's tensor file format, read and written.
 *
 *   file     := hlen header data
 *   hlen     := u64 little-endian, the header's length in bytes
 *   header   := a UTF-8 JSON object, padded with spaces:
 *               {"__metadata__": {"k": "v"},
 *                "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
 *   data     := every tensor's bytes, little-endian, C order, back to back
 *
 * The header is parsed by jansson and then checked in full before anything is sized
 * from it: the declared byte ranges must tile the data section exactly, as the
 * reference implementation demands.  Tensor bytes are decoded by byte order, so
 * nothing depends on the host's. */
#define _XOPEN_SOURCE 700 /* realpath, fsync, O_CLOEXEC, clock_gettime */

#include "nnd_runtime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* The reference implementation refuses headers over 100 MB as well. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

/* Every dtype the format defines, with its size in bits, so that files holding
 * dtypes we cannot load still open; only four map to an NndDType. */
typedef struct StDType {
    const char *name;
    int bits;
    NndDType dtype;
} StDType;

static const StDType st_dtypes[] = {
    {"F32", 32, NND_F32},
    {"F64", 64, NND_F64},
    {"I32", 32, NND_I32},
    {"BOOL", 8, NND_BOOL},
    {"F16", 16, NND_DTYPE_COUNT},
    {"BF16", 16, NND_DTYPE_COUNT},
    {"I8", 8, NND_DTYPE_COUNT},
    {"U8", 8, NND_DTYPE_COUNT},
    {"I16", 16, NND_DTYPE_COUNT},
    {"U16", 16, NND_DTYPE_COUNT},
    {"U32", 32, NND_DTYPE_COUNT},
    {"I64", 64, NND_DTYPE_COUNT},
    {"U64", 64, NND_DTYPE_COUNT},
    {"C64", 64, NND_DTYPE_COUNT},
    {"F8_E4M3", 8, NND_DTYPE_COUNT},
    {"F8_E5M2", 8, NND_DTYPE_COUNT},
    {"F8_E8M0", 8, NND_DTYPE_COUNT},
    {"F6_E2M3", 6, NND_DTYPE_COUNT},
    {"F6_E3M2", 6, NND_DTYPE_COUNT},
    {"F4", 4, NND_DTYPE_COUNT},
};

static const StDType *st_dtype_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, name) == 0)
            return &st_dtypes[i];
    return NULL;
}

static const char *st_dtype_of(NndDType t)
{
    switch (t) {
    case NND_F32: return "F32";
    case NND_F64: return "F64";
    case NND_I32: return "I32";
    case NND_BOOL: return "BOOL";
    default: return NULL;
    }
}

static int host_is_little_endian(void)
{
    uint16_t one = 1;
    unsigned char c;
    memcpy(&c, &one, 1);
    return c == 1;
}

/* Reverses the bytes of each elem-sized element: little-endian <-> host order on a
 * big-endian host. */
static void swap_elements(unsigned char *p, size_t n, size_t elem)
{
    for (size_t i = 0; i + elem <= n; i += elem)
        for (size_t a = i, b = i + elem - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* Returns the offset of the first byte that breaks UTF-8 (overlong forms, surrogates
 * and code points past U+10FFFF included), or -1 when s is valid. */
static int64_t utf8_invalid_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned min, cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, min = 0x80, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, min = 0x800, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, min = 0x10000, cp = c & 0x07;
        } else {
            return (int64_t)i;
        }
        if (n - i < len)
            return (int64_t)i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return (int64_t)i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return (int64_t)i;
        i += len;
    }
    return -1;
}

/* A name as it appears in a message: at most 60 bytes (cut at a character
 * boundary), control characters as '?'. */
typedef struct Quoted {
    char s[72];
} Quoted;

static Quoted quote(const char *name)
{
    Quoted q;
    size_t n = 0, i = 0;
    for (; name[i] && n < 60; i++) {
        unsigned char c = (unsigned char)name[i];
        q.s[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (name[i]) {
        while (n > 0 && ((unsigned char)q.s[n - 1] & 0xC0) == 0x80)
            n--;
        if (n > 0 && ((unsigned char)q.s[n - 1] & 0xC0) == 0xC0)
            n--;
        memcpy(q.s + n, "...", 3);
        n += 3;
    }
    q.s[n] = 0;
    return q;
}

static void format_shape(char *buf, size_t size, int rank, const int64_t *shape)
{
    size_t len = 0;
    buf[0] = 0;
    if (rank == 0)
        snprintf(buf, size, "[]");
    for (int i = 0; i < rank && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? "x" : "", (long long)shape[i]);
}

/* ---- writing ------------------------------------------------------------------- */

static int out_of_memory(const char *path, NndErr *err)
{
    return nnd_err(err, "%s: out of memory", path);
}

/* The tensor's size in bytes, after checking it can be written. */
static int check_tensor(const char *path, const NndNamedTensor *nt, int i, int64_t *nbytes,
                        NndErr *err)
{
    if (!nt->name)
        return nnd_err(err, "%s: tensor %d has no name", path, i);
    Quoted q = quote(nt->name);
    if (utf8_invalid_at((const unsigned char *)nt->name, strlen(nt->name)) >= 0)
        return nnd_err(err, "%s: tensor name '%s' is not valid UTF-8", path, q.s);
    if (strcmp(nt->name, "__metadata__") == 0)
        return nnd_err(err, "%s: a tensor cannot be called __metadata__", path);
    const NndTensor *t = nt->tensor;
    if (!t)
        return nnd_err(err, "%s: tensor '%s' is NULL", path, q.s);
    if (!st_dtype_of(t->dtype))
        return nnd_err(err, "%s: tensor '%s': cannot write dtype %d", path, q.s, (int)t->dtype);
    if (t->rank < 0 || t->rank > NND_MAX_RANK)
        return nnd_err(err, "%s: tensor '%s': rank %d is outside 0..%d", path, q.s, t->rank,
                       (int)NND_MAX_RANK);
    int64_t bytes = (int64_t)nnd_dtype_size(t->dtype);
    int empty = 0;
    for (int d = 0; d < t->rank; d++) {
        if (t->shape[d] < 0)
            return nnd_err(err, "%s: tensor '%s': dimension %d is negative", path, q.s, d);
        empty |= t->shape[d] == 0;
    }
    for (int d = 0; d < t->rank && !empty; d++) {
        if (bytes > INT64_MAX / t->shape[d])
            return nnd_err(err, "%s: tensor '%s': too large", path, q.s);
        bytes *= t->shape[d];
    }
    if (empty)
        bytes = 0;
    if (bytes > 0 && !t->data)
        return nnd_err(err, "%s: tensor '%s' has no data", path, q.s);
    *nbytes = bytes;
    return 0;
}

/* Builds the header: the JSON, spaces up to a multiple of 8 bytes (so the data that
 * follows is 8-byte aligned), and the length in front.  *out is nnd_alloc'd. */
static int build_header(const char *path, const NndNamedTensor *tensors, int n,
                        const NndStrPair *meta, int n_meta, unsigned char **out, size_t *out_len,
                        NndErr *err)
{
    int rc = -1;
    json_t *root = json_object();
    json_t *md = NULL;
    if (!root)
        return out_of_memory(path, err);
    if (n_meta > 0) {
        md = json_object();
        if (!md || json_object_set_new(root, "__metadata__", md) != 0) {
            out_of_memory(path, err);
            goto done;
        }
    }
    for (int i = 0; i < n_meta; i++) {
        const char *k = meta[i].key, *v = meta[i].value;
        if (!k || !v) {
            nnd_err(err, "%s: metadata pair %d has a NULL key or value", path, i);
            goto done;
        }
        if (utf8_invalid_at((const unsigned char *)k, strlen(k)) >= 0 ||
            utf8_invalid_at((const unsigned char *)v, strlen(v)) >= 0) {
            nnd_err(err, "%s: metadata '%s' is not valid UTF-8", path, quote(k).s);
            goto done;
        }
        if (json_object_get(md, k)) {
            nnd_err(err, "%s: metadata key '%s' appears twice", path, quote(k).s);
            goto done;
        }
        if (json_object_set_new(md, k, json_string(v)) != 0) {
            out_of_memory(path, err);
            goto done;
        }
    }
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        int64_t bytes = 0;
        if (check_tensor(path, &tensors[i], i, &bytes, err) != 0)
            goto done;
        const NndTensor *t = tensors[i].tensor;
        if (json_object_get(root, tensors[i].name)) {
            nnd_err(err, "%s: tensor name '%s' appears twice", path, quote(tensors[i].name).s);
            goto done;
        }
        if (bytes > INT64_MAX - offset) {
            nnd_err(err, "%s: tensors too large", path);
            goto done;
        }
        json_t *shape = json_array();
        json_t *entry =
            json_pack("{s:s, s:o, s:[I, I]}", "dtype", st_dtype_of(t->dtype), "shape", shape,
                      "data_offsets", (json_int_t)offset, (json_int_t)(offset + bytes));
        if (!entry || json_object_set_new(root, tensors[i].name, entry) != 0) {
            out_of_memory(path, err);
            goto done;
        }
        for (int d = 0; d < t->rank; d++)
            if (json_array_append_new(shape, json_integer((json_int_t)t->shape[d])) != 0) {
                out_of_memory(path, err);
                goto done;
            }
        offset += bytes;
    }
    size_t len = json_dumpb(root, NULL, 0, JSON_COMPACT);
    if (len == 0) {
        out_of_memory(path, err);
        goto done;
    }
    size_t padded = (len + 7) / 8 * 8;
    unsigned char *buf = nnd_alloc(8 + padded);
    if (!buf) {
        out_of_memory(path, err);
        goto done;
    }
    if (json_dumpb(root, (char *)buf + 8, padded, JSON_COMPACT) != len) {
        nnd_free(buf);
        out_of_memory(path, err);
        goto done;
    }
    memset(buf + 8 + len, ' ', padded - len);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    *out = buf;
    *out_len = 8 + padded;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

static int write_bytes(FILE *fp, const void *p, size_t n)
{
    return n == 0 || fwrite(p, 1, n, fp) == n ? 0 : -1;
}

/* Writes a tensor's bytes little-endian, through a small buffer on big-endian hosts. */
static int write_tensor(FILE *fp, const NndTensor *t, int64_t nbytes)
{
    size_t elem = nnd_dtype_size(t->dtype);
    const unsigned char *p = t->data;
    if (host_is_little_endian() || elem == 1)
        return write_bytes(fp, p, (size_t)nbytes);
    unsigned char buf[4096];
    for (size_t done = 0; done < (size_t)nbytes;) {
        size_t n = (size_t)nbytes - done < sizeof buf ? (size_t)nbytes - done : sizeof buf;
        memcpy(buf, p + done, n);
        swap_elements(buf, n, elem);
        if (write_bytes(fp, buf, n) != 0)
            return -1;
        done += n;
    }
    return 0;
}

/* Creates the file tmp names, whose last six characters are replaced by random ones
 * (as mkstemp does, from the same alphabet), exclusively and with mode 0666, so that
 * the kernel applies the umask as for any new file.  (mkstemp's 0600 would have to be
 * widened by the umask, and the umask can only be read by setting it, which races
 * with the files other threads create.)  The descriptor, or -1 with errno. */
static int temp_create(char *tmp)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    char *x = tmp + strlen(tmp) - 6;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                    ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)tmp;
    for (int attempt = 0; attempt < 100; attempt++) {
        /* splitmix64 */
        uint64_t r = seed += 0x9e3779b97f4a7c15u;
        r = (r ^ (r >> 30)) * 0xbf58476d1ce4e5b9u;
        r = (r ^ (r >> 27)) * 0x94d049bb133111ebu;
        r ^= r >> 31;
        for (int k = 0; k < 6; k++, r /= 62)
            x[k] = alphabet[r % 62];
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

/* Syncs the directory holding path, so that the rename itself is durable.  File
 * systems that cannot sync a directory say EINVAL; that is not an error. */
static int sync_dir(const char *path, NndErr *err)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = nnd_alloc(2);
        if (dir)
            strcpy(dir, ".");
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = nnd_alloc(n + 1);
        if (dir) {
            memcpy(dir, path, n);
            dir[n] = 0;
        }
    }
    if (!dir)
        return nnd_err(err, "%s: written, but out of memory syncing its directory", path);
    int rc = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP))
        rc = nnd_err(err, "%s: written, but cannot sync the directory %s: %s", path, dir,
                     strerror(errno));
    if (fd >= 0)
        close(fd);
    nnd_free(dir);
    return rc;
}

/* The file an atomic write replaces: path itself, or, when path is a symbolic
 * link, the file it points to (the link stays a link).  Targets that are not
 * regular files are refused: renaming over a device, a FIFO or a directory would
 * replace it.  A malloc'd (nnd_alloc) path, or NULL with err. */
static char *write_target(const char *path, NndErr *err)
{
    struct stat st;
    const char *target = path;
    char real[PATH_MAX];
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        if (!realpath(path, real)) {
            nnd_err(err,
                    "%s: a symbolic link to a file that cannot be reached (%s): nnd writes "
                    "through a link only to an existing file",
                    path, strerror(errno));
            return NULL;
        }
        target = real;
    }
    if (stat(target, &st) == 0 && !S_ISREG(st.st_mode)) {
        nnd_err(err, "%s: not a regular file (%s): nnd writes only regular files", path,
                S_ISDIR(st.st_mode)                          ? "a directory"
                : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                : S_ISFIFO(st.st_mode)                       ? "a FIFO"
                                                             : "a socket");
        return NULL;
    }
    size_t n = strlen(target) + 1;
    char *out = nnd_alloc(n);
    if (!out) {
        out_of_memory(path, err);
        return NULL;
    }
    memcpy(out, target, n);
    return out;
}

int nnd_check_write_path(const char *path, NndErr *err)
{
    char *target = write_target(path, err);
    if (!target)
        return -1;
    /* the temporary file goes beside the target: its directory must exist */
    const char *slash = strrchr(target, '/');
    int rc = 0;
    if (slash && slash != target) {
        *(char *)slash = 0;
        struct stat st;
        if (stat(target, &st) != 0 || !S_ISDIR(st.st_mode))
            rc = nnd_err(err, "%s: the directory %s does not exist", path, target);
        else if (access(target, W_OK) != 0)
            rc = nnd_err(err, "%s: cannot write in the directory %s: %s", path, target,
                         strerror(errno));
    } else if (!slash && access(".", W_OK) != 0) {
        rc = nnd_err(err, "%s: cannot write in the working directory: %s", path, strerror(errno));
    }
    nnd_free(target);
    return rc;
}

/* Opens a new temporary file TARGET.tmp.XXXXXX beside the file a write to path
 * replaces (*target: write_target), with the permissions that file has (else
 * those a new file gets); *tmp receives its name.  NULL with err. */
static FILE *atomic_begin(const char *path, char **target, char **tmp, NndErr *err)
{
    *tmp = NULL;
    *target = write_target(path, err);
    if (!*target)
        return NULL;
    size_t plen = strlen(*target);
    *tmp = nnd_alloc(plen + sizeof ".tmp.XXXXXX");
    if (!*tmp) {
        out_of_memory(path, err);
        nnd_free(*target);
        *target = NULL;
        return NULL;
    }
    memcpy(*tmp, *target, plen);
    memcpy(*tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int fd = temp_create(*tmp);
    if (fd < 0) {
        nnd_err(err, "%s: cannot create a temporary file: %s", path, strerror(errno));
        nnd_free(*tmp);
        nnd_free(*target);
        *tmp = *target = NULL;
        return NULL;
    }
    /* a file replaced keeps its permissions; a new one has those open(2) gave it */
    FILE *fp = NULL;
    struct stat st;
    if (stat(*target, &st) == 0 && S_ISREG(st.st_mode) && fchmod(fd, st.st_mode & 07777) != 0)
        nnd_err(err, "%s: cannot set permissions: %s", path, strerror(errno));
    else if (!(fp = fdopen(fd, "wb")))
        nnd_err(err, "%s: cannot open the temporary file: %s", path, strerror(errno));
    if (!fp) {
        close(fd);
        unlink(*tmp);
        nnd_free(*tmp);
        nnd_free(*target);
        *tmp = *target = NULL;
    }
    return fp;
}

/* After the bytes went to fp (write_failed when a write did not): flushes, syncs and
 * closes it, renames tmp over target (from atomic_begin) and syncs the directory.
 * On failure before the rename, tmp is removed.  Closes fp and frees tmp and target
 * in every case; messages name path, the file the user named. */
static int atomic_finish(FILE *fp, char *tmp, char *target, const char *path, int write_failed,
                         NndErr *err)
{
    int rc = -1;
    if (write_failed || fflush(fp) != 0) {
        nnd_err(err, "%s: write failed: %s", path, strerror(errno ? errno : EIO));
    } else if (fsync(fileno(fp)) != 0) {
        nnd_err(err, "%s: cannot sync: %s", path, strerror(errno));
    } else {
        int closed = fclose(fp);
        fp = NULL;
        if (closed != 0)
            nnd_err(err, "%s: write failed: %s", path, strerror(errno));
        else if (rename(tmp, target) != 0)
            nnd_err(err, "%s: cannot rename the temporary file over it: %s", path, strerror(errno));
        else
            rc = 0;
    }
    if (fp)
        fclose(fp);
    if (rc == 0)
        rc = sync_dir(target, err);
    else
        unlink(tmp);
    nnd_free(tmp);
    nnd_free(target);
    return rc;
}

/* Whether name is a temporary file of an atomic write (BASE.tmp.XXXXXX, six
 * characters of mkstemp's alphabet); *base_len gets the length of BASE. */
static int is_temp_name(const char *name, size_t *base_len)
{
    size_t n = strlen(name);
    if (n <= 11 || memcmp(name + n - 11, ".tmp.", 5) != 0)
        return 0;
    for (size_t i = n - 6; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
              (name[i] >= '0' && name[i] <= '9')))
            return 0;
    *base_len = n - 11;
    return 1;
}

int nnd_remove_stale_temps(const char *dir, const char *pattern, int min_age_s, int *removed,
                           NndErr *err)
{
    *removed = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : nnd_err(err, "%s: cannot list: %s", dir, strerror(errno));
    int rc = 0;
    time_t now = time(NULL);
    for (struct dirent *de; (de = readdir(d));) {
        size_t blen;
        if (!is_temp_name(de->d_name, &blen) || blen >= 4096)
            continue;
        char base[4096], path[8192];
        memcpy(base, de->d_name, blen);
        base[blen] = 0;
        if (fnmatch(pattern, base, FNM_PERIOD) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        /* a temporary written to in the last min_age_s seconds may be another
         * process's save in progress: left alone */
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || now - st.st_mtime < min_age_s)
            continue;
        if (unlink(path) == 0)
            (*removed)++;
        else if (rc == 0)
            rc =
                nnd_err(err, "%s: cannot remove a stale temporary file: %s", path, strerror(errno));
    }
    closedir(d);
    return rc;
}

int nnd_remove_stale_temps_of(const char *path, int min_age_s, int *removed, NndErr *err)
{
    *removed = 0;
    char *target = write_target(path, err);
    if (!target)
        return -1;
    /* the pattern is the target's name with fnmatch's special characters escaped */
    const char *slash = strrchr(target, '/');
    const char *name = slash ? slash + 1 : target;
    char pattern[8192], dir[8192];
    size_t k = 0;
    for (const char *c = name; *c && k + 2 < sizeof pattern; c++) {
        if (strchr("*?[]\\", *c))
            pattern[k++] = '\\';
        pattern[k++] = *c;
    }
    pattern[k] = 0;
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == target)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - target), target);
    int rc = nnd_remove_stale_temps(dir, pattern, min_age_s, removed, err);
    nnd_free(target);
    return rc;
}

int nnd_write_file_atomic(const char *path, const void *data, size_t n, NndErr *err)
{
    if (!path)
        return nnd_err(err, "(null): no file name given");
    char *tmp, *target;
    FILE *fp = atomic_begin(path, &target, &tmp, err);
    if (!fp)
        return -1;
    errno = 0;
    return atomic_finish(fp, tmp, target, path, write_bytes(fp, data, n), err);
}

int nnd_safetensors_write(const char *path, const NndNamedTensor *tensors, int n,
                          const NndStrPair *meta, int n_meta, NndErr *err)
{
    if (!path)
        return nnd_err(err, "(null): no file name given");
    if (n < 0 || (n > 0 && !tensors) || n_meta < 0 || (n_meta > 0 && !meta))
        return nnd_err(err, "%s: bad tensor or metadata list", path);
    unsigned char *header = NULL;
    size_t header_len = 0;
    if (build_header(path, tensors, n, meta, n_meta, &header, &header_len, err) != 0)
        return -1;
    char *tmp, *target;
    FILE *fp = atomic_begin(path, &target, &tmp, err);
    int rc = -1;
    if (fp) {
        errno = 0;
        int bad = write_bytes(fp, header, header_len);
        for (int i = 0; i < n && !bad; i++) {
            int64_t bytes = 0;
            check_tensor(path, &tensors[i], i, &bytes, NULL); /* passed in build_header */
            bad = write_tensor(fp, tensors[i].tensor, bytes);
        }
        rc = atomic_finish(fp, tmp, target, path, bad, err);
    }
    nnd_free(header);
    return rc;
}

/* ---- reading ------------------------------------------------------------------- */

void nnd_safetensors_close(NndSafetensors *st)
{
    if (!st)
        return;
    if (st->file_)
        fclose(st->file_);
    nnd_free(st->tensors);
    nnd_free(st->meta);
    nnd_free(st->pool_);
    memset(st, 0, sizeof *st);
}

/* A JSON value that must be a non-negative integer. */
static int json_count(const json_t *v, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

/* Checks one entry of the header and fills e (all but the name). */
static int check_entry(const char *path, const char *name, const json_t *v, int64_t data_len,
                       NndSafetensorsEntry *e, NndErr *err)
{
    Quoted q = quote(name);
    if (!json_is_object(v))
        return nnd_err(err, "%s: tensor '%s': entry is not a JSON object", path, q.s);
    const json_t *dtype = json_object_get(v, "dtype");
    const json_t *shape = json_object_get(v, "shape");
    const json_t *offsets = json_object_get(v, "data_offsets");
    if (!dtype)
        return nnd_err(err, "%s: tensor '%s': missing \"dtype\"", path, q.s);
    if (!shape)
        return nnd_err(err, "%s: tensor '%s': missing \"shape\"", path, q.s);
    if (!offsets)
        return nnd_err(err, "%s: tensor '%s': missing \"data_offsets\"", path, q.s);
    if (!json_is_string(dtype))
        return nnd_err(err, "%s: tensor '%s': \"dtype\" is not a string", path, q.s);
    if (!json_is_array(shape))
        return nnd_err(err, "%s: tensor '%s': \"shape\" is not an array", path, q.s);
    if (!json_is_array(offsets))
        return nnd_err(err, "%s: tensor '%s': \"data_offsets\" is not an array", path, q.s);

    const StDType *dt = st_dtype_by_name(json_string_value(dtype));
    if (!dt)
        return nnd_err(err, "%s: tensor '%s': unknown dtype '%s'", path, q.s,
                       quote(json_string_value(dtype)).s);
    e->dtype_name = dt->name;
    e->dtype = dt->dtype;

    size_t rank = json_array_size(shape);
    if (rank > NND_MAX_RANK)
        return nnd_err(err, "%s: tensor '%s': rank %zu is more than %d", path, q.s, rank,
                       (int)NND_MAX_RANK);
    e->rank = (int)rank;
    int empty = 0;
    for (size_t d = 0; d < rank; d++) {
        const json_t *dim = json_array_get(shape, d);
        if (!json_is_integer(dim))
            return nnd_err(err, "%s: tensor '%s': dimension %zu is not an integer", path, q.s, d);
        if (json_integer_value(dim) < 0)
            return nnd_err(err, "%s: tensor '%s': dimension %zu is negative (%lld)", path, q.s, d,
                           (long long)json_integer_value(dim));
        e->shape[d] = (int64_t)json_integer_value(dim);
        empty |= e->shape[d] == 0;
    }
    char dims[NND_MAX_RANK * 21 + 4];
    format_shape(dims, sizeof dims, e->rank, e->shape);
    /* Bits first: sub-byte dtypes (F4, F6) must fill whole bytes. */
    int64_t bits = dt->bits;
    for (int d = 0; d < e->rank && !empty; d++) {
        if (bits > INT64_MAX / e->shape[d])
            return nnd_err(err, "%s: tensor '%s': shape %s of %s overflows", path, q.s, dims,
                           dt->name);
        bits *= e->shape[d];
    }
    if (empty)
        bits = 0;

    int64_t begin, end;
    if (json_array_size(offsets) != 2 || json_count(json_array_get(offsets, 0), &begin) != 0 ||
        json_count(json_array_get(offsets, 1), &end) != 0)
        return nnd_err(err,
                       "%s: tensor '%s': \"data_offsets\" must be [begin, end], two "
                       "non-negative integers",
                       path, q.s);
    if (begin > end)
        return nnd_err(err, "%s: tensor '%s': data_offsets begin %lld is after end %lld", path, q.s,
                       (long long)begin, (long long)end);
    if (bits % 8 != 0)
        return nnd_err(err,
                       "%s: tensor '%s': wrong byte count: %s of shape %s is %lld bits, not a "
                       "whole number of bytes",
                       path, q.s, dt->name, dims, (long long)bits);
    if (end - begin != bits / 8)
        return nnd_err(err,
                       "%s: tensor '%s': wrong byte count: data_offsets [%lld, %lld] hold %lld "
                       "bytes, but %s of shape %s needs %lld",
                       path, q.s, (long long)begin, (long long)end, (long long)(end - begin),
                       dt->name, dims, (long long)(bits / 8));
    if (end > data_len)
        return nnd_err(err,
                       "%s: tensor '%s': data_offsets [%lld, %lld] run past the end of the "
                       "data (%lld bytes)",
                       path, q.s, (long long)begin, (long long)end, (long long)data_len);
    e->offset = begin; /* relative to the data until the tiling is checked */
    e->nbytes = end - begin;
    return 0;
}

static int entry_order(const void *a, const void *b)
{
    const NndSafetensorsEntry *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The tensors must cover [0, data_len) exactly once, in some order. */
static int check_tiling(const char *path, NndSafetensorsEntry *t, int n, int64_t data_len,
                        NndErr *err)
{
    if (n > 1)
        qsort(t, (size_t)n, sizeof *t, entry_order);
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].offset < at)
            return nnd_err(
                err, "%s: tensors '%s' and '%s' overlap (bytes %lld..%lld and %lld..%lld)", path,
                quote(t[i - 1].name).s, quote(t[i].name).s, (long long)t[i - 1].offset,
                (long long)(t[i - 1].offset + t[i - 1].nbytes), (long long)t[i].offset,
                (long long)(t[i].offset + t[i].nbytes));
        if (t[i].offset > at)
            return nnd_err(err,
                           "%s: gap in the data: bytes %lld..%lld before tensor '%s' belong "
                           "to no tensor",
                           path, (long long)at, (long long)t[i].offset, quote(t[i].name).s);
        at = t[i].offset + t[i].nbytes;
    }
    if (at < data_len)
        return nnd_err(err, "%s: %lld trailing bytes after the %s", path,
                       (long long)(data_len - at), n ? "last tensor" : "header");
    return 0;
}

/* Fills st from the parsed header: counts first, then one pool for every string. */
static int read_entries(NndSafetensors *st, const char *path, json_t *root, int64_t data_start,
                        int64_t data_len, NndErr *err)
{
    const char *key;
    json_t *v;
    size_t pool_size = strlen(path) + 1;
    int n = 0, n_meta = 0;
    json_t *md = NULL;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "__metadata__") == 0) {
            md = v;
            continue;
        }
        n++;
        pool_size += strlen(key) + 1;
    }
    if (md) {
        if (!json_is_object(md))
            return nnd_err(err, "%s: __metadata__ is not a JSON object", path);
        json_object_foreach(md, key, v)
        {
            if (!json_is_string(v))
                return nnd_err(err, "%s: __metadata__ value for '%s' is not a string", path,
                               quote(key).s);
            n_meta++;
            pool_size += strlen(key) + json_string_length(v) + 2;
        }
    }
    char *pool = st->pool_ = nnd_alloc(pool_size);
    st->tensors = n ? nnd_alloc((size_t)n * sizeof *st->tensors) : NULL;
    st->meta = n_meta ? nnd_alloc((size_t)n_meta * sizeof *st->meta) : NULL;
    if (!pool || (n && !st->tensors) || (n_meta && !st->meta))
        return out_of_memory(path, err);

    size_t at = 0;
#define POOL_COPY(dst, s)                                                                          \
    do {                                                                                           \
        size_t len_ = strlen(s) + 1;                                                               \
        memcpy(pool + at, (s), len_);                                                              \
        (dst) = pool + at;                                                                         \
        at += len_;                                                                                \
    } while (0)
    POOL_COPY(st->path, path);
    if (md) {
        json_object_foreach(md, key, v)
        {
            NndStrPair *p = &st->meta[st->n_meta++];
            POOL_COPY(p->key, key);
            POOL_COPY(p->value, json_string_value(v));
        }
    }
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        NndSafetensorsEntry *e = &st->tensors[st->n_tensors];
        memset(e, 0, sizeof *e);
        if (check_entry(path, key, v, data_len, e, err) != 0)
            return -1;
        POOL_COPY(e->name, key);
        st->n_tensors++;
    }
#undef POOL_COPY
    if (check_tiling(path, st->tensors, st->n_tensors, data_len, err) != 0)
        return -1;
    for (int i = 0; i < st->n_tensors; i++)
        st->tensors[i].offset += data_start;
    return 0;
}

int nnd_safetensors_open(NndSafetensors *st, const char *path, NndErr *err)
{
    memset(st, 0, sizeof *st);
    if (!path)
        return nnd_err(err, "(null): no file name given");
    /* Sizes are checked against the file, so its size must be known: no pipes or
     * devices (and opening a FIFO would block). */
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return nnd_err(err, "%s: is a directory", path);
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return nnd_err(err, "%s: not a regular file", path);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return nnd_err(err, "%s: cannot open: %s", path, strerror(errno));
    st->file_ = fp;
    char *header = NULL;
    json_t *root = NULL;
    if (fstat(fileno(fp), &sb) != 0) {
        nnd_err(err, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        nnd_err(err, "%s: not a regular file", path);
        goto fail;
    }
    int64_t file_size = (int64_t)sb.st_size;
    unsigned char len8[8];
    if (file_size < 8) {
        nnd_err(err, "%s: file is %lld bytes, shorter than the 8-byte header length", path,
                (long long)file_size);
        goto fail;
    }
    if (fread(len8, 1, 8, fp) != 8) {
        nnd_err(err, "%s: read error: %s", path, ferror(fp) ? strerror(errno) : "file shrank");
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)len8[i] << (8 * i);
    if (hlen > ST_MAX_HEADER) {
        nnd_err(err, "%s: header length %llu is absurd (the limit is %llu bytes)", path,
                (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > (uint64_t)(file_size - 8)) {
        nnd_err(err, "%s: header length %llu runs past the end of the %lld-byte file", path,
                (unsigned long long)hlen, (long long)file_size);
        goto fail;
    }
    header = nnd_alloc((size_t)hlen);
    if (!header) {
        out_of_memory(path, err);
        goto fail;
    }
    if (fread(header, 1, (size_t)hlen, fp) != (size_t)hlen) {
        nnd_err(err, "%s: read error: %s", path, ferror(fp) ? strerror(errno) : "file shrank");
        goto fail;
    }
    int64_t bad = utf8_invalid_at((const unsigned char *)header, (size_t)hlen);
    if (bad >= 0) {
        nnd_err(err, "%s: header is not valid UTF-8 (byte %lld of the header)", path,
                (long long)bad);
        goto fail;
    }
    json_error_t jerr;
    root = json_loadb(header, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            out_of_memory(path, err);
        else
            nnd_err(err, "%s: header is not valid JSON: %s (at byte %d of the header)", path,
                    jerr.text, jerr.position);
        goto fail;
    }
    if (!json_is_object(root)) {
        nnd_err(err, "%s: header is not a JSON object", path);
        goto fail;
    }
    int64_t data_start = 8 + (int64_t)hlen;
    if (read_entries(st, path, root, data_start, file_size - data_start, err) != 0)
        goto fail;
    json_decref(root);
    nnd_free(header);
    return 0;
fail:
    json_decref(root);
    nnd_free(header);
    nnd_safetensors_close(st);
    return -1;
}

const NndSafetensorsEntry *nnd_safetensors_find(const NndSafetensors *st, const char *name)
{
    if (!st || !name)
        return NULL;
    for (int i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0)
            return &st->tensors[i];
    return NULL;
}

const char *nnd_safetensors_meta(const NndSafetensors *st, const char *key)
{
    if (!st || !key)
        return NULL;
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[i].key, key) == 0)
            return st->meta[i].value;
    return NULL;
}

int nnd_safetensors_load(NndSafetensors *st, const char *name, NndTensor *out, NndErr *err)
{
    memset(out, 0, sizeof *out);
    if (!st || !st->file_)
        return nnd_err(err, "(null): safetensors file not open");
    const char *path = st->path;
    const NndSafetensorsEntry *e = nnd_safetensors_find(st, name);
    if (!e)
        return nnd_err(err, "%s: no tensor named '%s'", path, name ? quote(name).s : "(null)");
    Quoted q = quote(e->name);
    if (e->dtype == NND_DTYPE_COUNT)
        return nnd_err(err,
                       "%s: tensor '%s': unsupported dtype '%s' (F32, F64, I32 and BOOL can be "
                       "loaded)",
                       path, q.s, e->dtype_name);
    NndErr sub;
    if (nnd_tensor_alloc(out, e->dtype, e->rank, e->shape, &sub) != 0)
        return nnd_err(err, "%s: tensor '%s': %s", path, q.s, sub.msg);
    FILE *fp = st->file_;
    size_t n = (size_t)e->nbytes;
    unsigned char *p = out->data;
    if (fseeko(fp, (off_t)e->offset, SEEK_SET) != 0 || fread(p, 1, n, fp) != n) {
        nnd_err(err, "%s: tensor '%s': %s", path, q.s,
                ferror(fp) ? strerror(errno) : "the file ended early (changed since opened?)");
        clearerr(fp);
        nnd_tensor_free(out);
        return -1;
    }
    if (!host_is_little_endian())
        swap_elements(p, n, nnd_dtype_size(e->dtype));
    if (e->dtype == NND_BOOL)
        for (size_t i = 0; i < n; i++)
            if (p[i] > 1) {
                nnd_err(err, "%s: tensor '%s': BOOL element %zu is %u, not 0 or 1", path, q.s, i,
                        (unsigned)p[i]);
                nnd_tensor_free(out);
                return -1;
            }
    return 0;
}

int nnd_safetensors_load_into(NndSafetensors *st, const char *name, NndTensor *dst, NndErr *err)
{
    const NndSafetensorsEntry *en = nnd_safetensors_find(st, name);
    char want[NND_MAX_RANK * 22 + 4], have[NND_MAX_RANK * 22 + 4];
    nnd_shape_text(want, sizeof want, dst->rank, dst->shape);
    if (!en)
        return nnd_err(err, "%s: no tensor '%s' (the model's is %s %s)", st->path, name, want,
                       nnd_dtype_name(dst->dtype));
    nnd_shape_text(have, sizeof have, en->rank, en->shape);
    bool same = en->rank == dst->rank;
    for (int d = 0; same && d < dst->rank; d++)
        same = en->shape[d] == dst->shape[d];
    if (!same)
        return nnd_err(err, "%s: tensor '%s' is %s, but the model's '%s' is %s", st->path, name,
                       have, name, want);
    if ((en->dtype != NND_F32 && en->dtype != NND_F64) ||
        (dst->dtype != NND_F32 && dst->dtype != NND_F64))
        return nnd_err(err, "%s: tensor '%s' is %s; weights load from F32 or F64", st->path, name,
                       en->dtype_name);
    NndTensor t;
    if (nnd_safetensors_load(st, name, &t, err) != 0)
        return -1;
    int64_t n = nnd_tensor_numel(&t);
    if (t.dtype == dst->dtype)
        memcpy(dst->data, t.data, (size_t)n * nnd_dtype_size(t.dtype));
    else if (dst->dtype == NND_F32)
        for (int64_t k = 0; k < n; k++)
            ((float *)dst->data)[k] = (float)((const double *)t.data)[k];
    else
        for (int64_t k = 0; k < n; k++)
            ((double *)dst->data)[k] = (double)((const float *)t.data)[k];
    nnd_tensor_free(&t);
    return 0;
}
