/* npy: NumPy's .npy format, versions 1.0, 2.0 and 3.0.
 *
 *   file     := "\x93NUMPY" major minor hlen header data
 *   hlen     := u16 little-endian (1.0) | u32 little-endian (2.0, 3.0)
 *   header   := a Python dict literal, padded with spaces and a newline:
 *               {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 *   data     := the array, C order
 *
 * The header is parsed, not evaluated: only the three keys, strings, True/False and
 * tuples of non-negative integers are accepted. */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* numpy itself refuses headers over 10000 bytes unless told otherwise. */
enum { NPY_MAX_HEADER = 1 << 20 };

typedef struct NpyHeader {
    RawType type;
    int fortran_order;
    int rank; /* may exceed NND_MAX_RANK; only the first dims are kept */
    int64_t shape[NND_MAX_RANK];
} NpyHeader;

typedef struct NpyParser {
    const char *path; /* borrowed */
    const char *s; /* the header text; not NUL-terminated */
    int64_t len;
    int64_t pos;
    NndErr *err;
} NpyParser;

static int npy_syntax(NpyParser *p, const char *what)
{
    /* Quote the header, printable characters only, so the message stays one line. */
    char text[121];
    int64_t n = 0, end = p->len;
    while (end > 0 && (p->s[end - 1] == '\n' || p->s[end - 1] == ' '))
        end--;
    for (int64_t i = 0; i < end && n < (int64_t)sizeof text - 1; i++) {
        unsigned char c = (unsigned char)p->s[i];
        text[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    text[n] = 0;
    return nnd_err(p->err, "%s: bad NPY header: %s at offset %lld in \"%s%s\"", p->path, what,
                   (long long)p->pos, text, end > n ? "..." : "");
}

static int npy_peek(NpyParser *p)
{
    while (p->pos < p->len && strchr(" \t\r\n", p->s[p->pos]) && p->s[p->pos])
        p->pos++;
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static int npy_expect(NpyParser *p, char c, const char *what)
{
    if (npy_peek(p) != (unsigned char)c)
        return npy_syntax(p, what);
    p->pos++;
    return 0;
}

/* string := "'" chars "'" | '"' chars '"', without escapes */
static int npy_string(NpyParser *p, char *buf, size_t size)
{
    int q = npy_peek(p);
    if (q != '\'' && q != '"')
        return npy_syntax(p, "expected a string");
    int64_t start = ++p->pos;
    while (p->pos < p->len && p->s[p->pos] != q) {
        char c = p->s[p->pos];
        if (c == '\\' || c == '\n' || c == 0)
            return npy_syntax(p, "unsupported character in a string");
        p->pos++;
    }
    if (p->pos >= p->len)
        return npy_syntax(p, "unterminated string");
    if ((size_t)(p->pos - start) >= size)
        return npy_syntax(p, "string too long");
    memcpy(buf, p->s + start, (size_t)(p->pos - start));
    buf[p->pos - start] = 0;
    p->pos++;
    return 0;
}

/* bool := 'True' | 'False' */
static int npy_bool(NpyParser *p, int *v)
{
    npy_peek(p);
    const char *rest = p->s + p->pos;
    int64_t left = p->len - p->pos;
    if (left >= 4 && memcmp(rest, "True", 4) == 0) {
        p->pos += 4;
        *v = 1;
    } else if (left >= 5 && memcmp(rest, "False", 5) == 0) {
        p->pos += 5;
        *v = 0;
    } else {
        return npy_syntax(p, "expected True or False");
    }
    return 0;
}

/* tuple := '(' [int (',' int)* [',']] ')'
 * int := digits ['L']  (Python 2 wrote long integers with an L) */
static int npy_tuple(NpyParser *p, NpyHeader *h)
{
    if (npy_expect(p, '(', "expected a tuple") != 0)
        return -1;
    h->rank = 0;
    for (;;) {
        int c = npy_peek(p);
        if (c == ')')
            break;
        if (c < '0' || c > '9')
            return npy_syntax(p, "expected a non-negative integer");
        int64_t v = 0;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
            int d = p->s[p->pos] - '0';
            if (v > (INT64_MAX - d) / 10)
                return npy_syntax(p, "dimension does not fit in 64 bits");
            v = v * 10 + d;
            p->pos++;
        }
        if (p->pos < p->len && p->s[p->pos] == 'L')
            p->pos++;
        if (h->rank < NND_MAX_RANK)
            h->shape[h->rank] = v;
        if (h->rank < 1000)
            h->rank++;
        c = npy_peek(p);
        if (c == ',')
            p->pos++;
        else if (c != ')')
            return npy_syntax(p, "expected ',' or ')' in the shape");
    }
    p->pos++;
    return 0;
}

static int npy_descr(NpyParser *p, const char *descr, RawType *t)
{
    static const struct {
        const char *code;
        RawKind kind;
    } codes[] = {
        {"f4", RAW_F32}, {"f8", RAW_F64}, {"u1", RAW_U8},  {"i1", RAW_I8},
        {"i2", RAW_I16}, {"i4", RAW_I32}, {"i8", RAW_I64}, {"b1", RAW_BOOL},
    };
    char order = descr[0];
    for (size_t i = 0; order && i < sizeof codes / sizeof codes[0]; i++) {
        if (strcmp(descr + 1, codes[i].code) != 0)
            continue;
        int single = raw_size(codes[i].kind) == 1;
        if (order == '>' && !single)
            return nnd_err(p->err, "%s: big-endian dtype '%s' is not supported", p->path, descr);
        if (order == '<' || (single && (order == '|' || order == '>'))) {
            t->kind = codes[i].kind;
            t->big_endian = 0;
            return 0;
        }
        break;
    }
    return nnd_err(p->err,
                   "%s: unsupported dtype '%s' (supported: <f4 <f8 |u1 |i1 <i2 <i4 <i8 |b1)",
                   p->path, descr);
}

/* dict := '{' [item (',' item)* [',']] '}'
 * item := string ':' value */
static int npy_dict(NpyParser *p, NpyHeader *h)
{
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0;
    char descr[64] = "";
    if (npy_expect(p, '{', "expected '{'") != 0)
        return -1;
    for (;;) {
        if (npy_peek(p) == '}')
            break;
        char key[64];
        if (npy_string(p, key, sizeof key) != 0)
            return -1;
        if (npy_expect(p, ':', "expected ':' after a key") != 0)
            return -1;
        int *seen;
        int rc;
        if (strcmp(key, "descr") == 0) {
            seen = &seen_descr;
            if (npy_peek(p) == '[')
                return nnd_err(p->err, "%s: structured dtypes are not supported", p->path);
            rc = npy_string(p, descr, sizeof descr);
        } else if (strcmp(key, "fortran_order") == 0) {
            seen = &seen_fortran;
            rc = npy_bool(p, &h->fortran_order);
        } else if (strcmp(key, "shape") == 0) {
            seen = &seen_shape;
            rc = npy_tuple(p, h);
        } else {
            char what[96];
            snprintf(what, sizeof what, "unknown key '%s'", key);
            return npy_syntax(p, what);
        }
        if (rc != 0)
            return -1;
        if (*seen) {
            char what[96];
            snprintf(what, sizeof what, "duplicate key '%s'", key);
            return npy_syntax(p, what);
        }
        *seen = 1;
        int c = npy_peek(p);
        if (c == ',')
            p->pos++;
        else if (c != '}')
            return npy_syntax(p, "expected ',' or '}'");
    }
    p->pos++;
    if (npy_peek(p) != -1)
        return npy_syntax(p, "unexpected text after the dict");
    if (!seen_descr || !seen_fortran || !seen_shape)
        return nnd_err(p->err, "%s: bad NPY header: missing key '%s'", p->path,
                       !seen_descr     ? "descr"
                       : !seen_fortran ? "fortran_order"
                                       : "shape");
    if (npy_descr(p, descr, &h->type) != 0)
        return -1;
    if (h->fortran_order)
        return nnd_err(p->err,
                       "%s: fortran_order is True; only C-order arrays are supported "
                       "(save with np.ascontiguousarray)",
                       p->path);
    return 0;
}

static int npy_header(DataFile *f, NpyHeader *h, int64_t *nbytes, NndErr *err)
{
    unsigned char pre[12];
    int64_t got = data_read(f, pre, 8, err);
    if (got < 0)
        return -1;
    if (got < 6 || memcmp(pre, "\x93NUMPY", 6) != 0)
        return nnd_err(err, "%s: bad magic: not an NPY file (expected \\x93NUMPY)", f->path);
    if (got < 8)
        return nnd_err(err, "%s: truncated: the file ends inside the NPY preamble", f->path);
    int major = pre[6], minor = pre[7];
    if (major < 1 || major > 3 || minor != 0)
        return nnd_err(err, "%s: unsupported NPY version %d.%d (supported: 1.0, 2.0, 3.0)", f->path,
                       major, minor);
    int width = major == 1 ? 2 : 4;
    got = data_read(f, pre + 8, width, err);
    if (got < 0)
        return -1;
    if (got < width)
        return nnd_err(err, "%s: truncated: the file ends inside the NPY preamble", f->path);
    int64_t hlen = pre[8] | pre[9] << 8;
    if (width == 4)
        hlen |= (int64_t)pre[10] << 16 | (int64_t)pre[11] << 24;
    if (hlen > data_file_limit(f) - f->pos)
        return nnd_err(err, "%s: truncated: header length %lld goes past the end of the file",
                       f->path, (long long)hlen);
    if (hlen > NPY_MAX_HEADER)
        return nnd_err(err, "%s: bad header: header length %lld is larger than %d", f->path,
                       (long long)hlen, (int)NPY_MAX_HEADER);
    char *text = nnd_alloc((size_t)hlen + 1);
    if (!text)
        return nnd_err(err, "%s: out of memory", f->path);
    got = data_read(f, text, hlen, err);
    int rc = -1;
    if (got >= 0 && got < hlen)
        nnd_err(err, "%s: truncated: the file ends inside the %lld-byte NPY header", f->path,
                (long long)hlen);
    if (got == hlen) {
        NpyParser p = {f->path, text, hlen, 0, err};
        rc = npy_dict(&p, h);
    }
    nnd_free(text);
    if (rc != 0)
        return -1;
    if (h->rank > NND_MAX_RANK)
        return nnd_err(err, "%s: bad header: rank %d is not in 1..%d", f->path, h->rank,
                       (int)NND_MAX_RANK);
    if (data_check_shape(f, h->rank, h->shape, h->type.kind, nbytes, err) != 0)
        return -1;
    return data_check_body(f, h->rank, h->shape, h->type, *nbytes, err);
}

/* load: read the body into out; rows (load 0): map the body if it can be, else
 * load it; neither: the header only. */
static int npy_open(const char *path, NndRole role, const NndLoadOptions *opts, int load,
                    NndRows **rows, NndTensor *out, NndErr *err)
{
    if (rows)
        *rows = NULL;
    memset(out, 0, sizeof *out);
    NndLoadOptions o;
    if (data_options(path, opts, &o, err) != 0)
        return -1;
    DataFile f;
    if (data_open(&f, path, err) != 0)
        return -1;
    NpyHeader h = {0};
    int64_t nbytes = 0;
    int rc = npy_header(&f, &h, &nbytes, err);
    if (rc == 0 && rows)
        rc = data_map_rows(&f, h.rank, h.shape, h.type, role, &o, rows);
    if (rc == 0 && (load || (rows && !*rows))) {
        rc = data_read_body(&f, h.rank, h.shape, h.type, nbytes, role, &o, out, err);
    } else if (rc == 0) {
        out->dtype = data_out_dtype(h.type.kind, role, &o);
        out->rank = h.rank;
        memcpy(out->shape, h.shape, sizeof(int64_t) * (size_t)h.rank);
    }
    data_close(&f);
    return rc;
}

int nnd_npy_load(const char *path, NndRole role, const NndLoadOptions *opts, NndTensor *out,
                 NndErr *err)
{
    return npy_open(path, role, opts, 1, NULL, out, err);
}

int nnd_npy_probe(const char *path, NndRole role, const NndLoadOptions *opts, NndTensor *out,
                  NndErr *err)
{
    return npy_open(path, role, opts, 0, NULL, out, err);
}

int nnd_npy_write(const char *path, const NndTensor *t, NndErr *err)
{
    static const char *const descr[NND_DTYPE_COUNT] = {"<f4", "<f8", "<i4", "|b1"};
    if ((unsigned)t->dtype >= NND_DTYPE_COUNT || t->rank < 0 || t->rank > NND_MAX_RANK)
        return nnd_err(err, "%s: cannot write a tensor of dtype %d and rank %d as NPY", path,
                       (int)t->dtype, t->rank);
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     descr[t->dtype]);
    for (int i = 0; i < t->rank; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld%s", (long long)t->shape[i],
                      t->rank == 1 || i < t->rank - 1 ? ", " : "");
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    /* version 1.0: magic, version, u16 length; the whole preamble a multiple of 64 */
    size_t hlen = (size_t)n + 1, pre = 10;
    hlen += (64 - (pre + hlen) % 64) % 64;
    size_t data = (size_t)nnd_tensor_numel(t) * nnd_dtype_size(t->dtype);
    char *buf = malloc(pre + hlen + data);
    if (!buf)
        return nnd_err(err, "%s: out of memory for %zu bytes", path, pre + hlen + data);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memset(buf + pre, ' ', hlen);
    memcpy(buf + pre, dict, (size_t)n);
    buf[pre + hlen - 1] = '\n';
    if (data)
        memcpy(buf + pre + hlen, t->data, data); /* little-endian hosts only, as the loaders */
    int rc = nnd_write_file_atomic(path, buf, pre + hlen + data, err);
    free(buf);
    return rc;
}

int nnd_npy_map(const char *path, NndRole role, const NndLoadOptions *opts, NndTensor *out,
                NndRows **rows, NndErr *err)
{
    return npy_open(path, role, opts, 0, rows, out, err);
}
