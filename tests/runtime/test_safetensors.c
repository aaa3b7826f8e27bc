/* safetensors: round trips, the exact bytes written, atomic replacement, a corpus of
 * hostile files (each rejected with its own message), fault injection, and random
 * damage to valid files. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include "helpers.h"

/* ---- helpers ------------------------------------------------------------------- */

/* A tensor of the given shape with values that depend on (seed, index). */
static void make_tensor(NndTensor *t, NndDType dtype, int rank, const int64_t *shape, int seed)
{
    NndErr err;
    assert_int_equal(nnd_tensor_alloc(t, dtype, rank, shape, &err), 0);
    int64_t n = nnd_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = nnd_random_u64((uint64_t)seed, 7, (uint64_t)i);
        switch (dtype) {
        case NND_F32: ((float *)t->data)[i] = (float)((double)(int64_t)(r % 2001) / 8 - 125); break;
        case NND_F64:
            ((double *)t->data)[i] = nnd_random_normal((uint64_t)seed, 8, (uint64_t)i);
            break;
        case NND_I32: ((int32_t *)t->data)[i] = (int32_t)(uint32_t)r; break;
        default: ((unsigned char *)t->data)[i] = (unsigned char)(r & 1); break;
        }
    }
}

static size_t tensor_bytes(const NndTensor *t)
{
    return (size_t)nnd_tensor_numel(t) * nnd_dtype_size(t->dtype);
}

static void assert_same_tensor(const NndTensor *a, const NndTensor *b)
{
    assert_int_equal(a->dtype, b->dtype);
    assert_int_equal(a->rank, b->rank);
    for (int d = 0; d < a->rank; d++)
        assert_int_equal(a->shape[d], b->shape[d]);
    if (tensor_bytes(a))
        assert_memory_equal(a->data, b->data, tensor_bytes(a));
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)size + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    *n = (size_t)size;
    return p;
}

static void assert_file_is(const char *path, const char *text, size_t len)
{
    size_t n;
    unsigned char *p = read_all(path, &n);
    assert_int_equal(n, len);
    assert_memory_equal(p, text, n);
    free(p);
}

/* How many files in NND_TEST_TMP are temporaries of name (name.tmp.XXXXXX). */
static int count_temps(const char *dir, const char *name)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s.tmp.", name);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* Writes a file from its parts: hlen (or strlen(json) when hlen is UINT64_MAX), the
 * JSON text, then data_len bytes of data (NULL: 0, 1, 0, 1, ...). */
static void write_st(const char *path, uint64_t hlen, const char *json, const char *data,
                     size_t data_len)
{
    Bytes b = {0};
    bytes_le(&b, hlen == UINT64_MAX ? strlen(json) : hlen, 8);
    bytes_str(&b, json);
    for (size_t i = 0; i < data_len; i++)
        bytes_u8(&b, data ? (unsigned char)data[i] : (unsigned)(i % 2));
    write_file(path, b.p, b.n);
    bytes_free(&b);
}

/* ---- round trips ----------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    static const struct {
        const char *name;
        NndDType dtype;
        int rank;
        int64_t shape[NND_MAX_RANK];
    } specs[] = {
        {"layer0.weight", NND_F32, 2, {3, 5}},
        {"layer0.bias", NND_F32, 1, {5}},
        {"scalar", NND_F32, 0, {0}},
        {"empty", NND_F32, 2, {0, 4}},
        {"empty.huge", NND_F64, 3, {INT64_MAX / 2, 0, INT64_MAX / 2}},
        {"f64.a", NND_F64, 1, {7}},
        {"f64.cube", NND_F64, 3, {2, 2, 2}},
        {"i32.labels", NND_I32, 1, {11}},
        {"i32.col", NND_I32, 2, {3, 1}},
        {"mask", NND_BOOL, 1, {13}},
        {"mask2d", NND_BOOL, 2, {2, 3}},
        {"rank8", NND_F32, 8, {1, 2, 1, 2, 1, 2, 1, 2}},
        {"名前", NND_I32, 1, {1}},
    };
    enum { N = sizeof specs / sizeof specs[0] };
    NndTensor ts[N];
    NndNamedTensor named[N];
    for (int i = 0; i < N; i++) {
        make_tensor(&ts[i], specs[i].dtype, specs[i].rank, specs[i].shape, i + 1);
        named[i] = (NndNamedTensor){specs[i].name, &ts[i]};
    }
    /* Bit patterns that must survive exactly. */
    float *w = ts[0].data;
    w[0] = -0.0f;
    w[1] = INFINITY;
    w[2] = NAN;
    ((int32_t *)ts[7].data)[0] = INT32_MIN;
    ((int32_t *)ts[7].data)[1] = INT32_MAX;
    const NndStrPair meta[] = {{"format", "pt"}, {"note", "üñí \"quoted\"\n"}, {"empty", ""}};

    const char *path = tmp_path("st_round.safetensors");
    NndErr err;
    assert_int_equal(nnd_safetensors_write(path, named, N, meta, 3, &err), 0);

    NndSafetensors st;
    int rc = nnd_safetensors_open(&st, path, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    assert_string_equal(st.path, path);
    assert_int_equal(st.n_tensors, N);
    assert_int_equal(st.n_meta, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(st.meta[i].key, meta[i].key);
        assert_string_equal(st.meta[i].value, meta[i].value);
        assert_string_equal(nnd_safetensors_meta(&st, meta[i].key), meta[i].value);
    }
    assert_null(nnd_safetensors_meta(&st, "absent"));
    /* Listed in the order of their data, which is the order given; the data starts
     * 8-byte aligned, right after the padded header. */
    int64_t at = st.tensors[0].offset;
    assert_int_equal(at % 8, 0);
    for (int i = 0; i < N; i++) {
        const NndSafetensorsEntry *e = &st.tensors[i];
        assert_string_equal(e->name, specs[i].name);
        assert_ptr_equal(nnd_safetensors_find(&st, specs[i].name), e);
        assert_int_equal(e->dtype, specs[i].dtype);
        assert_int_equal(e->rank, specs[i].rank);
        for (int d = 0; d < e->rank; d++)
            assert_int_equal(e->shape[d], specs[i].shape[d]);
        assert_int_equal(e->offset, at);
        assert_int_equal(e->nbytes, (int64_t)tensor_bytes(&ts[i]));
        at += e->nbytes;
    }
    assert_string_equal(st.tensors[5].dtype_name, "F64");
    assert_string_equal(st.tensors[9].dtype_name, "BOOL");
    /* Loaded in another order than written. */
    for (int i = N - 1; i >= 0; i--) {
        NndTensor got;
        rc = nnd_safetensors_load(&st, specs[i].name, &got, &err);
        if (rc != 0)
            fail_msg("%s", err.msg);
        assert_same_tensor(&got, &ts[i]);
        nnd_tensor_free(&got);
    }
    nnd_safetensors_close(&st);
    nnd_safetensors_close(&st); /* closing twice is harmless */
    assert_null(st.tensors);

    size_t n;
    unsigned char *bytes = read_all(path, &n);
    assert_int_equal((int64_t)n, at);
    free(bytes);
    for (int i = 0; i < N; i++)
        nnd_tensor_free(&ts[i]);
}

/* The bytes themselves: compact JSON with __metadata__ first, spaces up to a
 * multiple of 8, little-endian data. */
static void test_exact_bytes(void **state)
{
    NndTensor a, b;
    int64_t two = 2, one = 1;
    NndErr err;
    assert_int_equal(nnd_tensor_alloc(&a, NND_F32, 1, &two, &err), 0);
    assert_int_equal(nnd_tensor_alloc(&b, NND_I32, 1, &one, &err), 0);
    ((float *)a.data)[0] = 1.0f;
    ((float *)a.data)[1] = -2.0f;
    ((int32_t *)b.data)[0] = 0x01020304;
    const NndNamedTensor named[] = {{"b", &b}, {"a", &a}};
    const NndStrPair meta[] = {{"k", "v"}};
    const char *path = tmp_path("st_exact.safetensors");
    assert_int_equal(nnd_safetensors_write(path, named, 2, meta, 1, &err), 0);
    const char *json = "{\"__metadata__\":{\"k\":\"v\"},"
                       "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    size_t jl = strlen(json), padded = (jl + 7) / 8 * 8;
    Bytes want = {0};
    bytes_le(&want, padded, 8);
    bytes_str(&want, json);
    for (size_t i = jl; i < padded; i++)
        bytes_u8(&want, ' ');
    bytes_put(&want, "\x04\x03\x02\x01", 4);
    bytes_put(&want, "\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);
    size_t n;
    unsigned char *got = read_all(path, &n);
    assert_int_equal(n, want.n);
    assert_memory_equal(got, want.p, n);
    free(got);
    bytes_free(&want);

    /* No tensors and no metadata: "{}" and six spaces. */
    const char *empty = tmp_path("st_empty.safetensors");
    assert_int_equal(nnd_safetensors_write(empty, NULL, 0, NULL, 0, &err), 0);
    assert_file_is(empty, "\x08\0\0\0\0\0\0\0{}      ", 16);
    NndSafetensors st;
    assert_int_equal(nnd_safetensors_open(&st, empty, &err), 0);
    assert_int_equal(st.n_tensors, 0);
    assert_int_equal(st.n_meta, 0);
    nnd_safetensors_close(&st);
    nnd_tensor_free(&a);
    nnd_tensor_free(&b);
}

static void test_load_by_name(void **state)
{
    /* A file as another writer might make it: keys out of data order, an unpadded
     * header, dtypes we list but cannot load, extra keys in an entry. */
    const char *json =
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12],\"extra\":1},"
        "\"h\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]},"
        "\"q\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[12,13]},"
        "\"i\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[13,21]}}";
    const char *path = tmp_path("st_byname.safetensors");
    write_st(path, UINT64_MAX, json, NULL, 21);
    NndSafetensors st;
    NndErr err;
    int rc = nnd_safetensors_open(&st, path, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(st.n_tensors, 4);
    assert_string_equal(st.tensors[0].name, "h");
    assert_string_equal(st.tensors[1].name, "w");
    assert_int_equal(st.tensors[1].offset, 8 + (int64_t)strlen(json) + 4);
    const NndSafetensorsEntry *h = nnd_safetensors_find(&st, "h");
    assert_non_null(h);
    assert_string_equal(h->dtype_name, "BF16");
    assert_int_equal(h->dtype, NND_DTYPE_COUNT);
    assert_null(nnd_safetensors_find(&st, "nope"));

    NndTensor t;
    assert_int_equal(nnd_safetensors_load(&st, "w", &t, &err), 0);
    assert_int_equal(t.dtype, NND_F32);
    assert_int_equal(t.rank, 1);
    assert_int_equal(t.shape[0], 2);
    assert_memory_equal(t.data, "\0\1\0\1\0\1\0\1", 8);
    nnd_tensor_free(&t);

    rc = nnd_safetensors_load(&st, "nope", &t, &err);
    assert_load_error(rc, &err, path, "no tensor named 'nope'");
    assert_null(t.data);
    rc = nnd_safetensors_load(&st, "h", &t, &err);
    assert_load_error(rc, &err, path, "unsupported dtype 'BF16'");
    assert_null(t.data);
    rc = nnd_safetensors_load(&st, "i", &t, &err);
    assert_load_error(rc, &err, path, "unsupported dtype 'I64'");
    nnd_safetensors_close(&st);

    /* Load after close, and a file cut short after it was opened. */
    assert_int_equal(nnd_safetensors_load(&st, "w", &t, &err), -1);
    assert_int_equal(nnd_safetensors_open(&st, path, &err), 0);
    assert_int_equal(truncate(path, 8 + (off_t)strlen(json) + 6), 0);
    rc = nnd_safetensors_load(&st, "w", &t, &err);
    assert_load_error(rc, &err, path, "ended early");
    assert_null(t.data);
    nnd_safetensors_close(&st);

    rc = nnd_safetensors_open(&st, tmp_path("st_no_such_file"), &err);
    assert_load_error(rc, &err, tmp_path("st_no_such_file"), "cannot open");
    rc = nnd_safetensors_open(&st, NND_TEST_TMP, &err);
    assert_load_error(rc, &err, NND_TEST_TMP, "is a directory");
    assert_null(st.file_);
    const char *fifo = tmp_path("st_fifo");
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0666), 0);
    rc = nnd_safetensors_open(&st, fifo, &err);
    assert_load_error(rc, &err, fifo, "not a regular file");
    unlink(fifo);
    nnd_safetensors_close(&st);
}

/* ---- writing safely -------------------------------------------------------------- */

static const char *const OLD = "old contents\n";

static void assert_untouched(const char *path, const char *name)
{
    assert_file_is(path, OLD, strlen(OLD));
    assert_int_equal(count_temps(NND_TEST_TMP, name), 0);
}

static void test_write_rejects(void **state)
{
    const char *name = "st_reject.safetensors";
    const char *path = tmp_path(name);
    write_file(path, OLD, strlen(OLD));
    NndTensor a, bad;
    int64_t three = 3;
    NndErr err;
    assert_int_equal(nnd_tensor_alloc(&a, NND_F32, 1, &three, &err), 0);
    struct {
        NndNamedTensor t[2];
        int n;
        NndStrPair meta[2];
        int n_meta;
        const char *needle;
    } cases[] = {
        {{{"a", &a}, {"a", &a}}, 2, {{0}}, 0, "tensor name 'a' appears twice"},
        {{{"__metadata__", &a}}, 1, {{0}}, 0, "cannot be called __metadata__"},
        {{{"a", NULL}}, 1, {{0}}, 0, "tensor 'a' is NULL"},
        {{{NULL, &a}}, 1, {{0}}, 0, "tensor 0 has no name"},
        {{{"bad\xff", &a}}, 1, {{0}}, 0, "is not valid UTF-8"},
        {{{"b", &bad}}, 1, {{0}}, 0, "cannot write dtype 7"},
        {{{"a", &a}}, 1, {{"k", "1"}, {"k", "2"}}, 2, "metadata key 'k' appears twice"},
        {{{"a", &a}}, 1, {{"k", NULL}}, 1, "NULL key or value"},
    };
    bad = a;
    bad.dtype = (NndDType)7;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = nnd_safetensors_write(path, cases[i].t, cases[i].n, cases[i].meta, cases[i].n_meta,
                                       &err);
        assert_load_error(rc, &err, path, cases[i].needle);
        assert_untouched(path, name);
    }
    NndTensor nodata = a;
    nodata.data = NULL;
    NndNamedTensor nd = {"x", &nodata};
    assert_load_error(nnd_safetensors_write(path, &nd, 1, NULL, 0, &err), &err, path, "no data");
    NndTensor neg = a;
    neg.shape[0] = -1;
    NndNamedTensor ng = {"x", &neg};
    assert_load_error(nnd_safetensors_write(path, &ng, 1, NULL, 0, &err), &err, path,
                      "dimension 0 is negative");
    assert_untouched(path, name);
    nnd_tensor_free(&a);
}

static void test_atomic_write(void **state)
{
    const char *name = "st_atomic.safetensors";
    const char *path = tmp_path(name);
    NndTensor big;
    int64_t shape[2] = {256, 1024};
    make_tensor(&big, NND_F32, 2, shape, 3);
    NndNamedTensor named = {"big", &big};
    NndErr err;

    /* The directory does not exist: nothing is created. */
    const char *nodir = tmp_path("st_no_such_dir/x.safetensors");
    int rc = nnd_safetensors_write(nodir, &named, 1, NULL, 0, &err);
    assert_load_error(rc, &err, nodir, "cannot create a temporary file");

    /* Targets that are not regular files are refused before anything is written
     * (renaming over them would replace a directory, a device or a FIFO). */
    const char *dir_name = "st_atomic_dir";
    const char *dir = tmp_path(dir_name);
    mkdir(dir, 0777);
    rc = nnd_safetensors_write(dir, &named, 1, NULL, 0, &err);
    assert_load_error(rc, &err, dir, "not a regular file (a directory)");
    assert_int_equal(count_temps(NND_TEST_TMP, dir_name), 0);
    struct stat sb;
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    const char *fifo = tmp_path("st_atomic_fifo");
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    rc = nnd_write_file_atomic(fifo, "x", 1, &err);
    assert_load_error(rc, &err, fifo, "not a regular file (a FIFO)");
    assert_int_equal(lstat(fifo, &sb), 0);
    assert_true(S_ISFIFO(sb.st_mode));
    unlink(fifo);
    /* A symbolic link is written through: the file it points to is replaced, the
     * link stays a link; a link to nothing is refused. */
    const char *real = tmp_path("st_atomic_real.safetensors");
    const char *link = tmp_path("st_atomic_link.safetensors");
    write_file(real, OLD, strlen(OLD));
    unlink(link);
    assert_int_equal(symlink("st_atomic_real.safetensors", link), 0);
    assert_int_equal(nnd_safetensors_write(link, &named, 1, NULL, 0, &err), 0);
    assert_int_equal(lstat(link, &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    NndSafetensors through;
    assert_int_equal(nnd_safetensors_open(&through, real, &err), 0);
    assert_int_equal(through.n_tensors, 1);
    nnd_safetensors_close(&through);
    assert_int_equal(count_temps(NND_TEST_TMP, "st_atomic_real.safetensors"), 0);
    unlink(link);
    assert_int_equal(symlink("st_atomic_missing.safetensors", link), 0);
    rc = nnd_safetensors_write(link, &named, 1, NULL, 0, &err);
    assert_load_error(rc, &err, link, "a symbolic link to a file that cannot be reached");
    unlink(link);
    unlink(real);

    /* The disk fills up mid-write (a file size limit, which holds for root too): the
     * old file stays as it was. */
    write_file(path, OLD, strlen(OLD));
    struct rlimit saved, small;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small = saved;
    small.rlim_cur = 64 * 1024;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    rc = nnd_safetensors_write(path, &named, 1, NULL, 0, &err);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, old_handler);
    assert_load_error(rc, &err, path, "write failed");
    assert_untouched(path, name);

    /* A directory we may not write to (unless we are root, who may). */
    const char *ro_name = "st_readonly";
    const char *ro = tmp_path(ro_name);
    mkdir(ro, 0777);
    char target[600];
    snprintf(target, sizeof target, "%s/x.safetensors", ro);
    write_file(target, OLD, strlen(OLD));
    assert_int_equal(chmod(ro, 0555), 0);
    if (access(ro, W_OK) != 0) {
        rc = nnd_safetensors_write(target, &named, 1, NULL, 0, &err);
        assert_load_error(rc, &err, target, "cannot create a temporary file");
        assert_file_is(target, OLD, strlen(OLD));
        assert_int_equal(count_temps(ro, "x.safetensors"), 0);
    } else {
        print_message("running as root: skipping the read-only directory case\n");
    }
    assert_int_equal(chmod(ro, 0777), 0);

    /* Success replaces the file and keeps its permissions. */
    assert_int_equal(chmod(path, 0640), 0);
    rc = nnd_safetensors_write(path, &named, 1, NULL, 0, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0640);
    assert_int_equal(count_temps(NND_TEST_TMP, name), 0);
    NndSafetensors st;
    assert_int_equal(nnd_safetensors_open(&st, path, &err), 0);
    NndTensor got;
    assert_int_equal(nnd_safetensors_load(&st, "big", &got, &err), 0);
    assert_same_tensor(&got, &big);
    nnd_tensor_free(&got);
    nnd_safetensors_close(&st);

    /* A relative path: the directory to sync is ".". */
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(NND_TEST_TMP), 0);
    rc = nnd_safetensors_write("st_relative.safetensors", &named, 1, NULL, 0, &err);
    assert_int_equal(chdir(cwd), 0);
    if (rc != 0)
        fail_msg("%s", err.msg);
    nnd_tensor_free(&big);
}

/* ---- hostile files --------------------------------------------------------------- */

/* An entry that is valid on its own: F32 [2] at bytes 0..8. */
#define GOOD "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"
#define ENTRY(dtype, shape, offsets)                                                               \
    "{\"dtype\":" dtype ",\"shape\":" shape ",\"data_offsets\":" offsets "}"

typedef struct Hostile {
    const char *json; /* NULL: raw is the whole file */
    uint64_t hlen; /* UINT64_MAX: strlen(json) */
    size_t data_len;
    const char *needle;
    const char *load; /* non-NULL: the header is fine; loading this tensor fails */
    const char *raw; /* the data (NULL: 0, 1, 0, 1, ...), or without json the file */
    size_t raw_len; /* without json */
} Hostile;

static const Hostile hostile[] = {
    {NULL, 0, 0, "shorter than the 8-byte header length", NULL, "\x05\0\0\0\0", 5},
    {"{}", (uint64_t)1 << 40, 0, "header length 1099511627776 is absurd", NULL, NULL, 0},
    {"{}", 101 << 20, 0, "is absurd (the limit is 104857600 bytes)", NULL, NULL, 0},
    {"{}", 100, 20, "header length 100 runs past the end of the 30-byte file", NULL, NULL, 0},
    {"{\"a\xff\":" GOOD "}", UINT64_MAX, 8, "header is not valid UTF-8 (byte 3", NULL, NULL, 0},
    {"{\"\xc0\xaf\":" GOOD "}", UINT64_MAX, 8, "UTF-8 (byte 2", NULL, NULL, 0},
    {"{\"\xed\xa0\x80\":" GOOD "}", UINT64_MAX, 8, "not valid UTF-8", NULL, NULL, 0},
    {"{\"a\":", UINT64_MAX, 0, "header is not valid JSON", NULL, NULL, 0},
    {"", UINT64_MAX, 0, "not valid JSON: '[' or '{' expected", NULL, NULL, 0},
    {"{\"a\":" GOOD ",\"a\":" GOOD "}", UINT64_MAX, 16, "duplicate object key", NULL, NULL, 0},
    {"{\"a\\u0000\":" GOOD "}", UINT64_MAX, 8, "NUL byte in object key", NULL, NULL, 0},
    {"{} x", UINT64_MAX, 0, "end of file expected", NULL, NULL, 0},
    {"[1, 2]", UINT64_MAX, 0, "header is not a JSON object", NULL, NULL, 0},
    {"{\"a\":3}", UINT64_MAX, 0, "tensor 'a': entry is not a JSON object", NULL, NULL, 0},
    {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", UINT64_MAX, 8, "missing \"dtype\"", NULL,
     NULL, 0},
    {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", UINT64_MAX, 8, "missing \"shape\"", NULL,
     NULL, 0},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", UINT64_MAX, 8, "missing \"data_offsets\"", NULL,
     NULL, 0},
    {"{\"a\":" ENTRY("5", "[2]", "[0,8]") "}", UINT64_MAX, 8, "\"dtype\" is not a string", NULL,
     NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "{}", "[0,8]") "}", UINT64_MAX, 8, "\"shape\" is not an array",
     NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[2]", "\"0,8\"") "}", UINT64_MAX, 8,
     "\"data_offsets\" is not an array", NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"Q4\"", "[2]", "[0,8]") "}", UINT64_MAX, 8, "unknown dtype 'Q4'", NULL, NULL,
     0},
    {"{\"a\":" ENTRY("\"f32\"", "[2]", "[0,8]") "}", UINT64_MAX, 8, "unknown dtype 'f32'", NULL,
     NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[1,1,1,1,1,1,1,1,2]", "[0,8]") "}", UINT64_MAX, 8,
     "rank 9 is more than 8", NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[1,2.0]", "[0,8]") "}", UINT64_MAX, 8,
     "dimension 1 is not an integer", NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[\"2\"]", "[0,8]") "}", UINT64_MAX, 8,
     "dimension 0 is not an integer", NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[-2]", "[0,8]") "}", UINT64_MAX, 8, "dimension 0 is negative (-2)",
     NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[4611686018427387904,4]", "[0,8]") "}", UINT64_MAX, 8,
     "shape 4611686018427387904x4 of F32 overflows", NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[99999999999999999999]", "[0,8]") "}", UINT64_MAX, 8,
     "too big integer", NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[2]", "[0]") "}", UINT64_MAX, 8,
     "\"data_offsets\" must be [begin, end]", NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[2]", "[-8,0]") "}", UINT64_MAX, 8, "two non-negative integers",
     NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[2]", "[0,8.0]") "}", UINT64_MAX, 8, "must be [begin, end], two",
     NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[2]", "[8,0]") "}", UINT64_MAX, 8,
     "data_offsets begin 8 is after end 0", NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[2]", "[0,4]") "}", UINT64_MAX, 4, "wrong byte count", NULL, NULL,
     0},
    {"{\"a\":" ENTRY("\"F4\"", "[3]", "[0,1]") "}", UINT64_MAX, 1,
     "shape 3 is 12 bits, not a whole number", NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[2]", "[0,8]") "}", UINT64_MAX, 4,
     "run past the end of the data (4 bytes)", NULL, NULL, 0},
    {"{\"a\":" GOOD ",\"b\":" ENTRY("\"F32\"", "[2]", "[4,12]") "}", UINT64_MAX, 12,
     "tensors 'a' and 'b' overlap", NULL, NULL, 0},
    {"{\"a\":" GOOD ",\"b\":" GOOD "}", UINT64_MAX, 8, "overlap (bytes 0..8 and 0..8)", NULL, NULL,
     0},
    {"{\"a\":" GOOD ",\"b\":" ENTRY("\"F32\"", "[2]", "[12,20]") "}", UINT64_MAX, 20,
     "gap in the data: bytes 8..12 before tensor 'b'", NULL, NULL, 0},
    {"{\"a\":" ENTRY("\"F32\"", "[2]", "[4,12]") "}", UINT64_MAX, 12, "bytes 0..4 before tensor",
     NULL, NULL, 0},
    {"{\"a\":" GOOD "}", UINT64_MAX, 12, "4 trailing bytes after the last tensor", NULL, NULL, 0},
    {"{}", UINT64_MAX, 3, "3 trailing bytes after the header", NULL, NULL, 0},
    {"{\"__metadata__\":[]}", UINT64_MAX, 0, "__metadata__ is not a JSON object", NULL, NULL, 0},
    {"{\"__metadata__\":{\"k\":1}}", UINT64_MAX, 0, "__metadata__ value for 'k' is not a string",
     NULL, NULL, 0},
    {"{\"m\":" ENTRY("\"BOOL\"", "[2]", "[0,2]") "}", UINT64_MAX, 2,
     "BOOL element 1 is 2, not 0 or 1", "m", "\1\2", 0},
    {"{\"h\":" ENTRY("\"F16\"", "[2]", "[0,4]") "}", UINT64_MAX, 4, "unsupported dtype 'F16'", "h",
     NULL, 0},
};

static void test_hostile(void **state)
{
    size_t n = sizeof hostile / sizeof hostile[0];
    for (size_t i = 0; i < n; i++) {
        const Hostile *h = &hostile[i];
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(h->needle, hostile[j].needle);
        char name[64];
        snprintf(name, sizeof name, "st_hostile_%02zu.safetensors", i);
        const char *path = tmp_path(name);
        if (h->json)
            write_st(path, h->hlen, h->json, h->raw, h->data_len);
        else
            write_file(path, h->raw, h->raw_len);
        TestAlloc ta;
        test_alloc_install(&ta, 0);
        NndSafetensors st;
        NndErr err;
        int rc = nnd_safetensors_open(&st, path, &err);
        if (h->load) {
            if (rc != 0)
                fail_msg("case %zu: %s", i, err.msg);
            NndTensor t;
            rc = nnd_safetensors_load(&st, h->load, &t, &err);
            assert_null(t.data);
            nnd_safetensors_close(&st);
        } else {
            assert_null(st.file_);
            assert_null(st.tensors);
        }
        long live = ta.live;
        test_alloc_remove(&ta);
        assert_int_equal(live, 0);
        /* Nothing is allocated from a declared size: the largest request stays near
         * the size of the file. */
        assert_true(ta.max_size <= 4096);
        assert_load_error(rc, &err, path, h->needle);
    }
    print_message("%zu hostile files rejected\n", n);
}

/* ---- fault injection --------------------------------------------------------------- */

static void write_sample(const char *path)
{
    NndTensor ts[4];
    int64_t s0[2] = {4, 5}, s1[1] = {9}, s2[1] = {6}, s3[3] = {2, 3, 2};
    make_tensor(&ts[0], NND_F32, 2, s0, 11);
    make_tensor(&ts[1], NND_F64, 1, s1, 12);
    make_tensor(&ts[2], NND_I32, 1, s2, 13);
    make_tensor(&ts[3], NND_BOOL, 3, s3, 14);
    const NndNamedTensor named[] = {{"w", &ts[0]}, {"d", &ts[1]}, {"i", &ts[2]}, {"b", &ts[3]}};
    const NndStrPair meta[] = {{"epoch", "3"}, {"lr", "0.01"}};
    NndErr err;
    int rc = nnd_safetensors_write(path, named, 4, meta, 2, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    for (int i = 0; i < 4; i++)
        nnd_tensor_free(&ts[i]);
}

/* Opens path and loads every tensor; -1 at the first failure. */
static int open_and_load_all(const char *path, NndErr *err)
{
    NndSafetensors st;
    if (nnd_safetensors_open(&st, path, err) != 0)
        return -1;
    int rc = 0;
    for (int i = 0; i < st.n_tensors && rc == 0; i++) {
        NndTensor t;
        rc = nnd_safetensors_load(&st, st.tensors[i].name, &t, err);
        if (rc == 0)
            nnd_tensor_free(&t);
        else
            assert_null(t.data);
    }
    nnd_safetensors_close(&st);
    return rc;
}

static void test_faults(void **state)
{
    const char *path = tmp_path("st_faults.safetensors");
    write_sample(path);
    long n;
    for (n = 1; n < 1000; n++) {
        TestAlloc ta;
        NndErr err;
        test_alloc_install(&ta, n);
        int rc = open_and_load_all(path, &err);
        long live = ta.live, calls = ta.calls;
        test_alloc_remove(&ta);
        assert_int_equal(live, 0);
        if (rc == 0) {
            assert_true(calls < n);
            break;
        }
        assert_load_error(rc, &err, path, "out of memory");
    }
    print_message("open and load: %ld allocations, each failed once\n", n - 1);
    /* The header, the string pool, the entries, the metadata, four tensors. */
    assert_int_equal(n - 1, 8);

    /* Writing: each failure leaves the old file and no temporary behind. */
    const char *name = "st_faults_w.safetensors";
    const char *wpath = tmp_path(name);
    NndTensor t;
    int64_t shape[2] = {3, 3};
    make_tensor(&t, NND_F64, 2, shape, 5);
    NndNamedTensor named = {"t", &t};
    NndStrPair meta = {"k", "v"};
    for (n = 1; n < 1000; n++) {
        write_file(wpath, OLD, strlen(OLD));
        TestAlloc ta;
        NndErr err;
        test_alloc_install(&ta, n);
        int rc = nnd_safetensors_write(wpath, &named, 1, &meta, 1, &err);
        long live = ta.live, calls = ta.calls;
        test_alloc_remove(&ta);
        assert_int_equal(live, 0);
        if (rc == 0) {
            assert_true(calls < n);
            break;
        }
        assert_load_error(rc, &err, wpath, "out of memory");
        /* The header, the target's path, the temporary's; the last allocation
         * comes after the rename: the new file is in place. */
        if (n < 4)
            assert_untouched(wpath, name);
    }
    print_message("write: %ld allocations, each failed once\n", n - 1);
    assert_int_equal(n - 1, 4);
    nnd_tensor_free(&t);
}

/* ---- random damage --------------------------------------------------------------- */

/* Any outcome is fine except a crash, a leak, or a failure without a message naming
 * the file; an accepted file's entries must tile its data exactly. */
static void test_random_damage(void **state)
{
    const char *good_path = tmp_path("st_damage_good.safetensors");
    write_sample(good_path);
    size_t n;
    unsigned char *good = read_all(good_path, &n);
    size_t hend = 8;
    for (int i = 0; i < 8; i++)
        hend += (size_t)good[i] << (8 * i);
    unsigned char *buf = malloc(n + 64);
    assert_non_null(buf);
    const char *path = tmp_path("st_damage.safetensors");
    static const char json_chars[] = "{}[]\",:0123456789- .eE\\u";
    int accepted = 0, loaded = 0;
    enum { TRIALS = 3000 };
    for (uint64_t trial = 0; trial < TRIALS; trial++) {
        uint64_t r = nnd_random_u64(21, 0, trial);
        uint64_t q = nnd_random_u64(22, 0, trial);
        size_t len = n;
        memcpy(buf, good, n);
        switch (r % 7) {
        case 0: /* flip a few bits anywhere */
            for (int k = 0; k < 1 + (int)(q % 3); k++)
                buf[nnd_random_u64(23, trial, (uint64_t)k) % n] ^=
                    (unsigned char)(1 << (q >> 8) % 8);
            break;
        case 1: /* change a digit of the header */
        case 2: {
            size_t at = 8 + (size_t)(q % (hend - 8));
            while (at < hend && (buf[at] < '0' || buf[at] > '9'))
                at++;
            if (at < hend)
                buf[at] = (unsigned char)('0' + (q >> 32) % 10);
            break;
        }
        case 3: /* put a JSON character somewhere in the header */
            buf[8 + (size_t)(q % (hend - 8))] =
                (unsigned char)json_chars[(q >> 32) % (sizeof json_chars - 1)];
            break;
        case 4: /* cut */ len = (size_t)(q % n); break;
        case 5: /* append */
            for (int k = 0; k < 1 + (int)(q % 40); k++)
                buf[len++] = (unsigned char)(q >> (k % 56));
            break;
        default: { /* change the header length */
            uint64_t h = hend - 8;
            int64_t delta = (int64_t)(q % 17) - 8;
            h = (q >> 40) % 4 == 0 ? q : h + (uint64_t)delta;
            for (int i = 0; i < 8; i++)
                buf[i] = (unsigned char)(h >> (8 * i));
            break;
        }
        }
        write_file(path, buf, len);
        TestAlloc ta;
        test_alloc_install(&ta, 0);
        NndSafetensors st;
        NndErr err;
        int rc = nnd_safetensors_open(&st, path, &err);
        if (rc == 0) {
            accepted++;
            int64_t at = -1;
            for (int i = 0; i < st.n_tensors; i++) {
                const NndSafetensorsEntry *e = &st.tensors[i];
                if (at < 0)
                    at = e->offset;
                assert_int_equal(e->offset, at);
                at += e->nbytes;
                NndTensor t;
                NndErr lerr;
                int lrc = nnd_safetensors_load(&st, e->name, &t, &lerr);
                if (lrc == 0) {
                    loaded++;
                    assert_int_equal((int64_t)tensor_bytes(&t), e->nbytes);
                    nnd_tensor_free(&t);
                } else {
                    assert_load_error(lrc, &lerr, path, "");
                }
            }
            if (at >= 0)
                assert_int_equal(at, (int64_t)len);
            nnd_safetensors_close(&st);
        }
        long live = ta.live;
        size_t max = ta.max_size;
        test_alloc_remove(&ta);
        assert_int_equal(live, 0);
        /* Allocations follow what the file holds, never what it declares (the list
         * of entries may outgrow a tiny file). */
        if (max > 2 * len + 4096)
            fail_msg("trial %d: allocated %zu bytes for a file of %zu", (int)trial, max, len);
        if (rc != 0)
            assert_load_error(rc, &err, path, "");
    }
    print_message("%d of %d damaged files accepted, %d tensors loaded from them\n", accepted,
                  (int)TRIALS, loaded);
    free(buf);
    free(good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_load_by_name), cmocka_unit_test(test_write_rejects),
        cmocka_unit_test(test_atomic_write), cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_faults),       cmocka_unit_test(test_random_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
