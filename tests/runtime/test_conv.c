/* Convolution, pooling and embedding rows: every function against naive loops in
 * double, over strides 1 to 3, padding 0 to 2, dilation 1 and 2, groups 1, 2, 4 and
 * depthwise, kernels 1x1, 3x3, 5x5 and 2x3, non-square images, batches of 1 to 5, and
 * no pool or pools of 1 to 4 threads; the same thread count gives the same bits every
 * call; the two gradients are the adjoints of the convolution (checked by inner
 * products in f64); max pooling picks the first maximum and never the padding; and
 * when malloc fails the convolutions still give the right sums (plain loops); the
 * 5x5 and 3x3 convolutions by Winograd's minimal filtering are within the same bounds,
 * normwise.
 *
 * Inputs are multiples of 1/64 in [-1, 1], exact in float, so the f32 and f64 runs
 * multiply the same numbers and one double reference serves both.  Outputs start as
 * NaN, so an element left unwritten fails.
 *
 * With NND_CONV_BENCH set in the environment, the program instead times the
 * convolutions of the Fashion-MNIST CNN and prints GFLOP/s. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include "../../runtime/kernels.h"
#include "nnd_abi.h"

#include "helpers.h"

/* ---- malloc that can be made to fail ------------------------------------------------
 * The test is linked with -Wl,--wrap=malloc, so every malloc of the program (the
 * runtime library included) comes here.  While malloc_budget >= 0, that many more
 * calls succeed and the rest fail. */
void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);
static atomic_long malloc_budget = -1;

void *__wrap_malloc(size_t size)
{
    long b = atomic_load(&malloc_budget);
    while (b >= 0) {
        if (b == 0)
            return NULL;
        if (atomic_compare_exchange_weak(&malloc_budget, &b, b - 1))
            break;
    }
    return __real_malloc(size);
}

static uint64_t lcg(uint64_t *x)
{
    *x = *x * 6364136223846793005u + 1442695040888963407u;
    return *x >> 33;
}

/* A multiple of 1/64 in [-1, 1]: exact in float, products exact in double. */
static double draw(uint64_t *x) { return (double)((int64_t)(lcg(x) % 129) - 64) / 64.0; }

static double *new_doubles(size_t n)
{
    double *p = malloc((n ? n : 1) * sizeof(double));
    assert_non_null(p);
    return p;
}

static float *new_floats(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}

static void fill_nan_d(double *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
}

static void fill_nan_f(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
}

static void to_float(float *dst, const double *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)src[i];
}

static void to_double(double *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i];
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Checks got against ref within rel * bound elementwise. */
static void check_close(const double *got, const double *ref, const double *bound, size_t n,
                        double rel, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double tol = rel * bound[i] + 1e-300;
        if (!(fabs(got[i] - ref[i]) <= tol))
            fail_msg("%s: element %zu = %.17g, expected %.17g (tolerance %g)", what, i, got[i],
                     ref[i], tol);
    }
}

/* Checks got against ref within rel times the largest bound: Winograd's transforms mix
 * the terms of neighbouring outputs, so its rounding is bounded normwise (an output
 * whose terms are all 0 may come out as 1e-8 instead of 0), not elementwise. */
static void check_close_normwise(const double *got, const double *ref, const double *bound,
                                 size_t n, double rel, const char *what)
{
    double most = 0;
    for (size_t i = 0; i < n; i++)
        most = bound[i] > most ? bound[i] : most;
    for (size_t i = 0; i < n; i++) {
        double tol = rel * most + 1e-300;
        if (!(fabs(got[i] - ref[i]) <= tol))
            fail_msg("%s: element %zu = %.17g, expected %.17g (tolerance %g, normwise)", what, i,
                     got[i], ref[i], tol);
    }
}

/* ---- convolution ---------------------------------------------------------------------- */

static NndConvShape conv_shape(int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t kh,
                               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                               int64_t dh, int64_t dw, int64_t groups)
{
    NndConvShape s = {n, c, h, w, o, kh, kw, 0, 0, sh, sw, ph, pw, dh, dw, groups};
    s.oh = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
    s.ow = (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
    return s;
}

static int shape_valid(const NndConvShape *s)
{
    return s->h + 2 * s->ph - s->dh * (s->kh - 1) - 1 >= 0 &&
           s->w + 2 * s->pw - s->dw * (s->kw - 1) - 1 >= 0 && s->c % s->groups == 0 &&
           s->o % s->groups == 0;
}

static size_t x_size(const NndConvShape *s) { return (size_t)(s->n * s->c * s->h * s->w); }
static size_t w_size(const NndConvShape *s)
{
    return (size_t)(s->o * (s->c / s->groups) * s->kh * s->kw);
}
static size_t y_size(const NndConvShape *s) { return (size_t)(s->n * s->o * s->oh * s->ow); }

typedef enum { REF_Y, REF_DX, REF_DW } RefMode;

/* Every term x[xi] w[wi] of y[yi] = conv2d(x, w), visited once:
 *   REF_Y:  out (y)  += a (x)  * b (w)
 *   REF_DX: out (dx) += a (dy) * b (w)
 *   REF_DW: out (dw) += a (x)  * b (dy)
 * out is zeroed first. */
static void ref_conv(const NndConvShape *s, RefMode mode, const double *a, const double *b,
                     double *out)
{
    int64_t cg = s->c / s->groups, og = s->o / s->groups;
    memset(out, 0,
           (mode == REF_Y    ? y_size(s)
            : mode == REF_DX ? x_size(s)
                             : w_size(s)) *
               sizeof(double));
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t oc = 0; oc < s->o; oc++) {
            int64_t g = oc / og;
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    int64_t yi = ((n * s->o + oc) * s->oh + oy) * s->ow + ox;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t ki = 0; ki < s->kh; ki++)
                            for (int64_t kj = 0; kj < s->kw; kj++) {
                                int64_t iy = oy * s->sh - s->ph + ki * s->dh;
                                int64_t ix = ox * s->sw - s->pw + kj * s->dw;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w)
                                    continue;
                                int64_t xi = ((n * s->c + g * cg + ci) * s->h + iy) * s->w + ix;
                                int64_t wi = ((oc * cg + ci) * s->kh + ki) * s->kw + kj;
                                if (mode == REF_Y)
                                    out[yi] += a[xi] * b[wi];
                                else if (mode == REF_DX)
                                    out[xi] += a[yi] * b[wi];
                                else
                                    out[wi] += a[xi] * b[yi];
                            }
                }
        }
}

static void describe_conv(char *buf, size_t size, const NndConvShape *s, const char *what,
                          int threads)
{
    snprintf(buf, size,
             "%s x [%lld,%lld,%lld,%lld] w [%lld,%lld,%lld,%lld] stride %lldx%lld pad %lldx%lld "
             "dilation %lldx%lld groups %lld threads %d",
             what, (long long)s->n, (long long)s->c, (long long)s->h, (long long)s->w,
             (long long)s->o, (long long)(s->c / s->groups), (long long)s->kh, (long long)s->kw,
             (long long)s->sh, (long long)s->sw, (long long)s->ph, (long long)s->pw,
             (long long)s->dh, (long long)s->dw, (long long)s->groups, threads);
}

/* One problem: inputs, references and their bounds (the references over |inputs|). */
typedef struct ConvCase {
    NndConvShape s;
    size_t nx, nw, ny;
    double *x, *w, *dy;
    double *y, *dx, *dw; /* references */
    double *by, *bdx, *bdw; /* sum of |terms| per element */
    float *xf, *wf, *dyf;
} ConvCase;

static void conv_case_init(ConvCase *c, const NndConvShape *s, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->s = *s;
    c->nx = x_size(s);
    c->nw = w_size(s);
    c->ny = y_size(s);
    c->x = new_doubles(c->nx);
    c->w = new_doubles(c->nw);
    c->dy = new_doubles(c->ny);
    uint64_t r = seed;
    for (size_t i = 0; i < c->nx; i++)
        c->x[i] = draw(&r);
    for (size_t i = 0; i < c->nw; i++)
        c->w[i] = draw(&r);
    for (size_t i = 0; i < c->ny; i++)
        c->dy[i] = draw(&r);
    c->y = new_doubles(c->ny);
    c->dx = new_doubles(c->nx);
    c->dw = new_doubles(c->nw);
    ref_conv(s, REF_Y, c->x, c->w, c->y);
    ref_conv(s, REF_DX, c->dy, c->w, c->dx);
    ref_conv(s, REF_DW, c->x, c->dy, c->dw);
    double *ax = new_doubles(c->nx), *aw = new_doubles(c->nw), *ady = new_doubles(c->ny);
    for (size_t i = 0; i < c->nx; i++)
        ax[i] = fabs(c->x[i]);
    for (size_t i = 0; i < c->nw; i++)
        aw[i] = fabs(c->w[i]);
    for (size_t i = 0; i < c->ny; i++)
        ady[i] = fabs(c->dy[i]);
    c->by = new_doubles(c->ny);
    c->bdx = new_doubles(c->nx);
    c->bdw = new_doubles(c->nw);
    ref_conv(s, REF_Y, ax, aw, c->by);
    ref_conv(s, REF_DX, ady, aw, c->bdx);
    ref_conv(s, REF_DW, ax, ady, c->bdw);
    free(ax);
    free(aw);
    free(ady);
    c->xf = new_floats(c->nx);
    c->wf = new_floats(c->nw);
    c->dyf = new_floats(c->ny);
    to_float(c->xf, c->x, c->nx);
    to_float(c->wf, c->w, c->nw);
    to_float(c->dyf, c->dy, c->ny);
}

static void conv_case_free(ConvCase *c)
{
    double *d[] = {c->x, c->w, c->dy, c->y, c->dx, c->dw, c->by, c->bdx, c->bdw};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        free(d[i]);
    free(c->xf);
    free(c->wf);
    free(c->dyf);
}

/* Tolerances: f32 within 1e-5 sqrt(terms) of the bound, f64 within 1e-12. */
static double rel_f32(int64_t terms) { return 1e-5 * sqrt((double)(terms > 1 ? terms : 1)); }

typedef enum { OP_FWD, OP_GIN, OP_GW, OP_COUNT } ConvOp;
static const char *const op_names[OP_COUNT] = {"conv2d", "grad_input", "grad_weight"};

static void conv_run_f32(NndPool *pool, const ConvCase *c, ConvOp op, float *out)
{
    if (op == OP_FWD)
        nnd_conv2d_f32(pool, &c->s, c->xf, c->wf, out);
    else if (op == OP_GIN)
        nnd_conv2d_grad_input_f32(pool, &c->s, c->dyf, c->wf, out);
    else
        nnd_conv2d_grad_weight_f32(pool, &c->s, c->xf, c->dyf, out);
}

static void conv_run_f64(NndPool *pool, const ConvCase *c, ConvOp op, double *out)
{
    if (op == OP_FWD)
        nnd_conv2d_f64(pool, &c->s, c->x, c->w, out);
    else if (op == OP_GIN)
        nnd_conv2d_grad_input_f64(pool, &c->s, c->dy, c->w, out);
    else
        nnd_conv2d_grad_weight_f64(pool, &c->s, c->x, c->dy, out);
}

static void conv_op_ref(const ConvCase *c, ConvOp op, const double **ref, const double **bound,
                        size_t *n, int64_t *terms)
{
    const NndConvShape *s = &c->s;
    int64_t og = s->o / s->groups, cg = s->c / s->groups;
    *ref = op == OP_FWD ? c->y : op == OP_GIN ? c->dx : c->dw;
    *bound = op == OP_FWD ? c->by : op == OP_GIN ? c->bdx : c->bdw;
    *n = op == OP_FWD ? c->ny : op == OP_GIN ? c->nx : c->nw;
    *terms = op == OP_FWD   ? cg * s->kh * s->kw
             : op == OP_GIN ? og * s->kh * s->kw
                            : s->n * s->oh * s->ow;
}

/* Every op in both dtypes on every pool, twice (the same bits), against the
 * references; then the adjoint identity <conv(x, w), dy> = <x, grad_input(dy, w)> =
 * <w, grad_weight(x, dy)> in f64. */
static void conv_case_check(const ConvCase *c)
{
    char what[512];
    size_t most = c->nx > c->ny ? c->nx : c->ny;
    most = most > c->nw ? most : c->nw;
    float *f1 = new_floats(most), *f2 = new_floats(most);
    double *d1 = new_doubles(most), *d2 = new_doubles(most), *conv = new_doubles(most);
    double *res64[OP_COUNT];
    for (int op = 0; op < OP_COUNT; op++)
        res64[op] = new_doubles(most);
    for (int t = 0; t <= TEST_THREADS; t++) {
        for (int op = 0; op < OP_COUNT; op++) {
            const double *ref, *bound;
            size_t n;
            int64_t terms;
            conv_op_ref(c, (ConvOp)op, &ref, &bound, &n, &terms);

            fill_nan_f(f1, n);
            fill_nan_f(f2, n);
            conv_run_f32(pools[t], c, (ConvOp)op, f1);
            conv_run_f32(pools[t], c, (ConvOp)op, f2);
            describe_conv(what, sizeof what, &c->s, op_names[op], t);
            to_double(conv, f1, n);
            (wino_chosen(&c->s) ? check_close_normwise : check_close)(conv, ref, bound, n,
                                                                      rel_f32(terms), what);
            if (memcmp(f1, f2, n * sizeof(float)) != 0)
                fail_msg("%s (f32): two calls differ", what);

            fill_nan_d(d1, n);
            fill_nan_d(d2, n);
            conv_run_f64(pools[t], c, (ConvOp)op, d1);
            conv_run_f64(pools[t], c, (ConvOp)op, d2);
            check_close(d1, ref, bound, n, 1e-12, what);
            if (memcmp(d1, d2, n * sizeof(double)) != 0)
                fail_msg("%s (f64): two calls differ", what);
            memcpy(res64[op], d1, n * sizeof(double));
        }
        /* every inner product sums the same terms; bound them by the sum of |terms| */
        double fwd = dot(res64[OP_FWD], c->dy, c->ny);
        double gin = dot(c->x, res64[OP_GIN], c->nx);
        double gw = dot(c->w, res64[OP_GW], c->nw);
        double mag = 0;
        for (size_t i = 0; i < c->ny; i++)
            mag += c->by[i] * fabs(c->dy[i]);
        describe_conv(what, sizeof what, &c->s, "adjoint", t);
        if (!(fabs(fwd - gin) <= 1e-12 * mag + 1e-300 && fabs(fwd - gw) <= 1e-12 * mag + 1e-300))
            fail_msg("%s: <y, dy> %.17g, <x, dx> %.17g, <w, dw> %.17g", what, fwd, gin, gw);
    }
    free(f1);
    free(f2);
    free(d1);
    free(d2);
    free(conv);
    for (int op = 0; op < OP_COUNT; op++)
        free(res64[op]);
}

static uint64_t case_seed(int i) { return 0x9e3779b97f4a7c15u * (uint64_t)(i + 1); }

static void check_shape(const NndConvShape *s, int index)
{
    ConvCase c;
    conv_case_init(&c, s, case_seed(index));
    conv_case_check(&c);
    conv_case_free(&c);
}

/* The grid: kernels x strides x padding x dilation x groups (channels per group
 * vary; depthwise has groups == c and a channel multiplier of 1 or 2), with batches
 * and image sizes cycling so that every combination meets a few of each. */
static void test_conv_grid(void **state)
{
    static const int64_t kernels[][2] = {{1, 1}, {3, 3}, {5, 5}, {2, 3}};
    int cases = 0, index = 0;
    for (int k = 0; k < 4; k++)
        for (int64_t st = 1; st <= 3; st++)
            for (int64_t pad = 0; pad <= 2; pad++)
                for (int64_t dil = 1; dil <= 2; dil++)
                    for (int gk = 0; gk < 4; gk++, index++) {
                        int64_t n = 1 + index % 5, h = 7 + index % 4, w = 9 + index % 3 * 2;
                        int64_t groups, c, o;
                        if (gk < 3) {
                            groups = (int64_t)1 << gk;
                            c = groups * (1 + index % 3);
                            o = groups * (2 + index % 2);
                        } else {
                            c = 4 + index % 3 * 2;
                            groups = c;
                            o = c * (1 + index % 2);
                        }
                        NndConvShape s = conv_shape(n, c, h, w, o, kernels[k][0], kernels[k][1], st,
                                                    st, pad, pad, dil, dil, groups);
                        if (!shape_valid(&s))
                            continue;
                        check_shape(&s, index);
                        cases++;
                    }
    print_message("%d shapes, 3 ops, f32 and f64, 5 pools\n", cases);
    assert_true(cases > 200);
}

/* Different strides, padding and dilation along the two axes, and shapes big enough
 * to be cut into several tiles and split across threads. */
static void test_conv_shapes(void **state)
{
    const NndConvShape shapes[] = {
        conv_shape(2, 3, 9, 7, 4, 3, 3, 1, 2, 2, 0, 1, 2, 1),
        conv_shape(3, 4, 6, 11, 6, 2, 3, 2, 1, 0, 2, 2, 1, 2),
        conv_shape(1, 2, 5, 5, 2, 5, 5, 1, 1, 2, 2, 1, 1, 1), /* one output per padded row */
        conv_shape(2, 1, 1, 9, 3, 1, 3, 1, 1, 0, 1, 1, 1, 1), /* one row */
        conv_shape(4, 3, 4, 4, 5, 1, 1, 2, 2, 0, 0, 1, 1, 1), /* 1x1 with stride */
        conv_shape(4, 3, 4, 4, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1), /* 1x1 with padding */
        /* columns over 1 MiB: tiles, starting mid-row */
        conv_shape(2, 64, 39, 41, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1),
        conv_shape(2, 64, 33, 29, 4, 5, 5, 2, 2, 2, 2, 1, 1, 1),
        /* one image: tiles so that the threads share it */
        conv_shape(1, 32, 25, 29, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1),
        conv_shape(3, 32, 20, 21, 8, 3, 3, 2, 1, 1, 0, 1, 2, 2), /* strides, dilation */
        conv_shape(5, 64, 12, 10, 64, 1, 1, 1, 1, 0, 0, 1, 1, 1), /* pointwise */
        conv_shape(2, 16, 40, 36, 16, 1, 1, 1, 1, 0, 0, 1, 1, 4), /* pointwise, groups */
        conv_shape(3, 24, 17, 19, 48, 3, 3, 1, 1, 1, 1, 1, 1, 24), /* depthwise, x2 */
        conv_shape(2, 32, 14, 14, 64, 5, 5, 1, 1, 2, 2, 1, 1, 1), /* the CNN's second layer */
        conv_shape(5, 1, 28, 28, 32, 5, 5, 1, 1, 2, 2, 1, 1, 1), /* its first */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        assert_true(shape_valid(&shapes[i]));
        check_shape(&shapes[i], 1000 + (int)i);
    }
}

/* op by Winograd's way, called directly (bf16: the operands rounded first) */
static int wino_op(NndPool *pool, const NndConvShape *s, ConvOp op, const float *x, const float *w,
                   const float *dy, float *out, int bf16)
{
    return op == OP_FWD   ? wino_conv2d(pool, s, x, w, out, bf16, 0, NULL)
           : op == OP_GIN ? wino_conv2d_grad_input(pool, s, dy, w, out, bf16)
                          : wino_conv2d_grad_weight(pool, s, x, dy, out, bf16);
}

/* Every op of s by Winograd's way on every pool, twice (the same bits), against the
 * references; its buffers (the caller's kept scratch) hold NaNs first: none may leak. */
static void check_winograd(const NndConvShape *s, int index)
{
    enum { JUNK_BYTES = 8 << 20 };
    ConvCase c;
    conv_case_init(&c, s, case_seed(index));
    size_t most = c.nx > c.ny ? c.nx : c.ny;
    most = most > c.nw ? most : c.nw;
    float *f[2] = {new_floats(most), new_floats(most)};
    double *got = new_doubles(most);
    char what[512];
    for (int t = 0; t <= TEST_THREADS; t++)
        for (int op = 0; op < OP_COUNT; op++) {
            const double *ref, *bound;
            size_t n;
            int64_t terms;
            conv_op_ref(&c, (ConvOp)op, &ref, &bound, &n, &terms);
            for (int k = 0; k < 2; k++) {
                fill_nan_f(f[k], n);
                void *junk = thread_scratch(SCRATCH_PARTS, JUNK_BYTES);
                assert_non_null(junk);
                memset(junk, 0xff, JUNK_BYTES);
                assert_int_equal(wino_op(pools[t], s, (ConvOp)op, c.xf, c.wf, c.dyf, f[k], 0), 0);
            }
            describe_conv(what, sizeof what, s, op_names[op], t);
            to_double(got, f[0], n);
            check_close_normwise(got, ref, bound, n, rel_f32(terms), what);
            if (memcmp(f[0], f[1], n * sizeof(float)) != 0)
                fail_msg("%s (Winograd): two calls differ", what);
        }
    free(f[0]);
    free(f[1]);
    free(got);
    conv_case_free(&c);
}

/* Winograd's F(2x2, 5x5) and F(4x4, 3x3) (winograd.c), called directly (so that it is tested on
 * CPUs where nnd_conv2d_f32 would not choose it) on every pool, twice (the same bits), against the
 * references; then through the public functions, which take it where the CPU has AVX-512.  Shapes:
 * outputs of odd sizes (tiles cut by the edge), every padding it takes (0 to 4, different along the
 * two axes), 16 and 48 channels (the products' 16-wide remainder), one image of one tile, and
 * batches whose tiles leave the last block short; the CNN's second layer; the same for 3x3 kernels.
 */
static void test_conv_winograd(void **state)
{
    const NndConvShape shapes[] = {
        conv_shape(2, 32, 14, 14, 64, 5, 5, 1, 1, 2, 2, 1, 1, 1),
        conv_shape(3, 16, 9, 7, 48, 5, 5, 1, 1, 2, 1, 1, 1, 1), /* odd outputs */
        conv_shape(2, 48, 8, 11, 16, 5, 5, 1, 1, 0, 3, 1, 1, 1), /* 4 x 10 */
        conv_shape(1, 16, 5, 6, 32, 5, 5, 1, 1, 0, 0, 1, 1, 1), /* one row of tiles */
        conv_shape(1, 16, 2, 1, 16, 5, 5, 1, 1, 2, 2, 1, 1, 1), /* one tile, cut */
        conv_shape(5, 32, 6, 5, 32, 5, 5, 1, 1, 4, 3, 1, 1, 1), /* padding past the kernel */
        conv_shape(7, 16, 12, 13, 16, 5, 5, 1, 1, 1, 2, 1, 1, 1), /* 7 x 42 tiles: 10 blocks */
        /* F(4x4, 3x3) */
        conv_shape(2, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1),
        conv_shape(3, 16, 9, 7, 48, 3, 3, 1, 1, 1, 0, 1, 1, 1), /* 9 x 5: tiles cut */
        conv_shape(2, 48, 6, 11, 16, 3, 3, 1, 1, 2, 0, 1, 1, 1), /* 8 x 9 */
        conv_shape(1, 16, 3, 3, 32, 3, 3, 1, 1, 0, 0, 1, 1, 1), /* one output */
        conv_shape(9, 16, 10, 13, 16, 3, 3, 1, 1, 1, 2, 1, 1, 1), /* 9 x 12 tiles: 4 blocks */
        /* rows of 16 columns and more (the input's copy transposes 16 x 16 blocks) */
        conv_shape(2, 16, 5, 37, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1),
        conv_shape(2, 32, 6, 16, 16, 5, 5, 1, 1, 2, 0, 1, 1, 1),
    };
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        assert_true(shape_valid(&shapes[si]) && wino_fits(&shapes[si]));
        check_winograd(&shapes[si], 3000 + (int)si);
        check_shape(&shapes[si], 3000 + (int)si);
    }
    /* a batch cut into chunks of images (each chunk's padded copies at most 64 KiB):
     * the same results as in one piece, the weight gradient summed over the chunks */
    const NndConvShape chunked[] = {
        conv_shape(7, 16, 12, 13, 16, 5, 5, 1, 1, 1, 2, 1, 1, 1),
        conv_shape(9, 16, 10, 13, 32, 3, 3, 1, 1, 1, 2, 1, 1, 1),
    };
    wino_set_chunk_bytes(64 << 10);
    for (size_t i = 0; i < sizeof chunked / sizeof chunked[0]; i++)
        check_winograd(&chunked[i], 3100 + (int)i);
    wino_set_chunk_bytes(0);
    /* what it does not take */
    NndConvShape no[] = {
        conv_shape(2, 16, 8, 8, 16, 3, 3, 1, 1, 3, 3, 1, 1, 1), /* 3x3, padding 3 */
        conv_shape(2, 16, 8, 8, 16, 7, 7, 1, 1, 3, 3, 1, 1, 1), /* 7x7 */
        conv_shape(2, 16, 8, 8, 16, 5, 5, 2, 2, 2, 2, 1, 1, 1), /* stride 2 */
        conv_shape(2, 16, 12, 12, 16, 5, 5, 1, 1, 2, 2, 2, 2, 1), /* dilation 2 */
        conv_shape(2, 32, 8, 8, 32, 5, 5, 1, 1, 2, 2, 1, 1, 2), /* groups */
        conv_shape(2, 8, 8, 8, 16, 5, 5, 1, 1, 2, 2, 1, 1, 1), /* 8 input channels */
        conv_shape(2, 16, 8, 8, 24, 5, 5, 1, 1, 2, 2, 1, 1, 1), /* 24 output channels */
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_false(wino_fits(&no[i]));
}

/* The forward with its epilogue (nnd_conv2d_*_ep: bias, relu, both) against the
 * forward and the epilogue after it as the step's loop computes it, bit for bit: f32
 * (im2col, pointwise, Winograd where the CPU has AVX-512), bf16 and f64, on every
 * pool; outputs of NaN, negatives and zeros included. */
static void test_conv_epilogue(void **state)
{
    const NndConvShape shapes[] = {
        conv_shape(3, 1, 12, 12, 8, 5, 5, 1, 1, 2, 2, 1, 1, 1), /* the CNN's first: im2col */
        conv_shape(2, 32, 14, 14, 64, 5, 5, 1, 1, 2, 2, 1, 1, 1), /* its second: Winograd */
        conv_shape(2, 16, 9, 7, 32, 3, 3, 1, 1, 1, 0, 1, 1, 1), /* 3x3, tiles cut */
        conv_shape(2, 6, 5, 5, 4, 1, 1, 1, 1, 0, 0, 1, 1, 2), /* pointwise, groups */
        conv_shape(2, 3, 7, 8, 5, 3, 2, 2, 1, 1, 0, 1, 1, 1), /* strided */
    };
    static const int eps[] = {NND_EP_BIAS, NND_EP_RELU, NND_EP_BIAS | NND_EP_RELU};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const NndConvShape *s = &shapes[si];
        assert_true(shape_valid(s));
        size_t nx = x_size(s), nw = w_size(s), ny = (size_t)(s->n * s->o * s->oh * s->ow);
        size_t plane = (size_t)(s->oh * s->ow);
        float *xf = new_floats(nx), *wf = new_floats(nw), *bf = new_floats((size_t)s->o);
        float *want = new_floats(ny), *got = new_floats(ny);
        double *xd = new_doubles(nx), *wd = new_doubles(nw), *bd = new_doubles((size_t)s->o);
        double *wantd = new_doubles(ny), *gotd = new_doubles(ny);
        for (size_t i = 0; i < nx; i++)
            xf[i] = (float)(xd[i] = i % 13 == 5 ? NAN : (double)((int)(i * 37 % 29) - 14) / 16);
        for (size_t i = 0; i < nw; i++)
            wf[i] = (float)(wd[i] = (double)((int)(i * 53 % 23) - 11) / 32);
        for (int64_t o = 0; o < s->o; o++)
            bf[o] = (float)(bd[o] = (double)((int)(o * 7 % 9) - 4) / 8);
        for (int t = 0; t <= TEST_THREADS; t++)
            for (int e = 0; e < 3; e++) {
                char what[256];
                snprintf(what, sizeof what, "conv epilogue %d, shape %zu, %d threads", eps[e], si,
                         t);
                for (int bf16 = 0; bf16 < 2; bf16++) {
                    (bf16 ? nnd_conv2d_bf16 : nnd_conv2d_f32)(pools[t], s, xf, wf, want);
                    for (size_t i = 0; i < ny; i++) {
                        float b = bf[i / plane % (size_t)s->o];
                        float v = eps[e] & NND_EP_BIAS ? want[i] + b : want[i];
                        want[i] = eps[e] & NND_EP_RELU ? (v <= 0 ? 0 : v) : v;
                    }
                    fill_nan_f(got, ny);
                    (bf16 ? nnd_conv2d_bf16_ep : nnd_conv2d_f32_ep)(pools[t], s, xf, wf, got,
                                                                    eps[e], bf);
                    if (memcmp(want, got, ny * sizeof(float)) != 0)
                        fail_msg("%s: %s differs from the loop after it", what,
                                 bf16 ? "bf16" : "f32");
                }
                nnd_conv2d_f64(pools[t], s, xd, wd, wantd);
                for (size_t i = 0; i < ny; i++) {
                    double b = bd[i / plane % (size_t)s->o];
                    double v = eps[e] & NND_EP_BIAS ? wantd[i] + b : wantd[i];
                    wantd[i] = eps[e] & NND_EP_RELU ? (v <= 0 ? 0 : v) : v;
                }
                fill_nan_d(gotd, ny);
                nnd_conv2d_f64_ep(pools[t], s, xd, wd, gotd, eps[e], bd);
                if (memcmp(wantd, gotd, ny * sizeof(double)) != 0)
                    fail_msg("%s: f64 differs from the loop after it", what);
            }
        free(xf);
        free(wf);
        free(bf);
        free(want);
        free(got);
        free(xd);
        free(wd);
        free(bd);
        free(wantd);
        free(gotd);
    }
}

/* Under precision = bf16 (wino_conv2d*(..., 1)): the convolutions of the operands
 * rounded to bf16 (nnd_bf16_round), as the bf16 products and the interpreter take
 * them, summed in f32: within the normwise bound of f64 sums over the rounded
 * operands, and outside it for the sums over the unrounded ones. */
static void test_conv_winograd_bf16(void **state)
{
    const NndConvShape shapes[] = {
        conv_shape(2, 16, 9, 7, 32, 5, 5, 1, 1, 2, 1, 1, 1, 1),
        conv_shape(3, 32, 8, 6, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1),
    };
    char what[512];
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const NndConvShape *sh = &shapes[si];
        size_t n[3] = {x_size(sh), w_size(sh), y_size(sh)};
        float *in[3];
        double *exact[3], *rounded[3], *mag[3];
        uint64_t r = case_seed(4000 + (int)si);
        for (int k = 0; k < 3; k++) { /* x, w, dy: not bf16 values */
            in[k] = new_floats(n[k]);
            exact[k] = new_doubles(n[k]);
            rounded[k] = new_doubles(n[k]);
            mag[k] = new_doubles(n[k]);
            for (size_t i = 0; i < n[k]; i++) {
                in[k][i] = (float)(draw(&r) * 1.1 + 0.0007);
                exact[k][i] = in[k][i];
                rounded[k][i] = nnd_bf16_round(in[k][i]);
                mag[k][i] = fabs(rounded[k][i]);
            }
        }
        size_t most = n[0] > n[2] ? n[0] : n[2];
        most = most > n[1] ? most : n[1];
        double *ref = new_doubles(most), *ref_exact = new_doubles(most), *bound = new_doubles(most),
               *got = new_doubles(most);
        float *f = new_floats(most);
        static const RefMode modes[OP_COUNT] = {REF_Y, REF_DX, REF_DW};
        static const int ins[OP_COUNT][2] = {{0, 1}, {2, 1}, {0, 2}}, outs[OP_COUNT] = {2, 0, 1};
        for (int op = 0; op < OP_COUNT; op++) {
            int a = ins[op][0], b = ins[op][1];
            size_t no = n[outs[op]];
            ref_conv(sh, modes[op], rounded[a], rounded[b], ref);
            ref_conv(sh, modes[op], exact[a], exact[b], ref_exact);
            ref_conv(sh, modes[op], mag[a], mag[b], bound);
            int64_t terms = op == OP_FWD   ? sh->c * sh->kh * sh->kw
                            : op == OP_GIN ? sh->o * sh->kh * sh->kw
                                           : sh->n * sh->oh * sh->ow;
            for (int t = 0; t <= TEST_THREADS; t++) {
                fill_nan_f(f, no);
                assert_int_equal(wino_op(pools[t], sh, (ConvOp)op, in[0], in[1], in[2], f, 1), 0);
                describe_conv(what, sizeof what, sh, op_names[op], t);
                to_double(got, f, no);
                check_close_normwise(got, ref, bound, no, rel_f32(terms), what);
                double off = 0, most_bound = 0;
                for (size_t i = 0; i < no; i++) {
                    off = fmax(off, fabs(got[i] - ref_exact[i]));
                    most_bound = fmax(most_bound, bound[i]);
                }
                /* the same check against the unrounded sums fails */
                if (!(off > rel_f32(terms) * most_bound))
                    fail_msg("%s (bf16): %g from the sums of unrounded operands: not rounded?",
                             what, off);
            }
        }
        for (int k = 0; k < 3; k++) {
            free(in[k]);
            free(exact[k]);
            free(rounded[k]);
            free(mag[k]);
        }
        free(ref);
        free(ref_exact);
        free(bound);
        free(got);
        free(f);
    }
}

/* A worked example: 3x3 input 1..9, kernel [[1, 0], [0, -1]]: every output is
 * x[i, j] - x[i+1, j+1] = -4; with padding 1 and stride 2 the first three windows
 * see one element of x (times -1) and the last sees two. */
static void test_conv_known_values(void **state)
{
    const double x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[4] = {1, 0, 0, -1};
    double y[4];
    NndConvShape s = conv_shape(1, 1, 3, 3, 1, 2, 2, 1, 1, 0, 0, 1, 1, 1);
    nnd_conv2d_f64(NULL, &s, x, w, y);
    for (int i = 0; i < 4; i++)
        assert_true(y[i] == -4);
    /* padded by 1, stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1) */
    s = conv_shape(1, 1, 3, 3, 1, 2, 2, 2, 2, 1, 1, 1, 1, 1);
    assert_true(s.oh == 2 && s.ow == 2);
    nnd_conv2d_f64(NULL, &s, x, w, y);
    const double expect[4] = {-1, -3, -7, 5 - 9};
    for (int i = 0; i < 4; i++)
        assert_true(y[i] == expect[i]);
}

/* Nothing to sum: outputs of zeros (c / groups channels of none, or an empty batch
 * leaving the weight gradient 0). */
static void test_conv_empty(void **state)
{
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1}, dw[4] = {NAN, NAN, NAN, NAN};
    NndConvShape s = conv_shape(0, 1, 2, 2, 1, 2, 2, 1, 1, 0, 0, 1, 1, 1);
    for (int t = 0; t <= TEST_THREADS; t++) {
        nnd_conv2d_f32(pools[t], &s, x, w, NULL);
        nnd_conv2d_grad_input_f32(pools[t], &s, x, w, NULL);
        nnd_conv2d_grad_weight_f32(pools[t], &s, x, x, dw);
        for (int i = 0; i < 4; i++)
            assert_true(dw[i] == 0);
    }
}

/* Without memory for the columns and the weight gradient's per-chunk sums (the
 * threads' kept buffers, thread_scratch), and when malloc fails for any number of
 * allocations first succeeding, the convolutions give the same sums (by plain loops
 * where columns are missing). */
static void test_conv_no_memory(void **state)
{
    const NndConvShape shapes[] = {
        conv_shape(4, 4, 9, 8, 6, 3, 3, 2, 1, 1, 2, 1, 2, 2),
        conv_shape(3, 6, 7, 7, 6, 2, 3, 1, 1, 1, 0, 2, 1, 6),
        conv_shape(5, 8, 6, 6, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1),
        conv_shape(2, 16, 6, 7, 16, 5, 5, 1, 1, 2, 2, 1, 1, 1), /* Winograd's */
    };
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        ConvCase c;
        conv_case_init(&c, &shapes[si], case_seed(2000 + (int)si));
        size_t most = c.nx > c.ny ? c.nx : c.ny;
        most = most > c.nw ? most : c.nw;
        float *f = new_floats(most);
        double *d = new_doubles(most), *conv = new_doubles(most);
        char what[512];
        for (int t = 0; t <= TEST_THREADS; t++)
            for (long budget = 0; budget <= 5; budget++)
                for (int op = 0; op < OP_COUNT; op++) {
                    thread_scratch_fail(budget % 2 == 0);
                    const double *ref, *bound;
                    size_t n;
                    int64_t terms;
                    conv_op_ref(&c, (ConvOp)op, &ref, &bound, &n, &terms);
                    fill_nan_f(f, n);
                    fill_nan_d(d, n);
                    atomic_store(&malloc_budget, budget);
                    conv_run_f32(pools[t], &c, (ConvOp)op, f);
                    atomic_store(&malloc_budget, budget);
                    conv_run_f64(pools[t], &c, (ConvOp)op, d);
                    atomic_store(&malloc_budget, -1);
                    thread_scratch_fail(false);
                    describe_conv(what, sizeof what, &c.s, op_names[op], t);
                    to_double(conv, f, n);
                    (wino_chosen(&c.s) ? check_close_normwise : check_close)(conv, ref, bound, n,
                                                                             rel_f32(terms), what);
                    check_close(d, ref, bound, n, 1e-12, what);
                }
        free(f);
        free(d);
        free(conv);
        conv_case_free(&c);
    }
}

/* ---- pooling ---------------------------------------------------------------------------- */

static NndPoolShape pool_shape(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                               int64_t sh, int64_t sw, int64_t ph, int64_t pw)
{
    NndPoolShape s = {n, c, h, w, 0, 0, kh, kw, sh, sw, ph, pw};
    s.oh = (h + 2 * ph - kh) / sh + 1;
    s.ow = (w + 2 * pw - kw) / sw + 1;
    return s;
}

/* The reference choice: scan the whole window, skip the padding, keep the first
 * strict maximum; a NaN beats numbers, the first NaN winning.  -1: no position. */
static int64_t ref_argmax(const NndPoolShape *s, const double *plane, int64_t i, int64_t j)
{
    int64_t best = -1;
    for (int64_t a = 0; a < s->kh; a++)
        for (int64_t b = 0; b < s->kw; b++) {
            int64_t iy = i * s->sh - s->ph + a, ix = j * s->sw - s->pw + b;
            if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w)
                continue;
            double v = plane[iy * s->w + ix];
            if (best < 0)
                best = iy * s->w + ix;
            else if (!isnan(plane[best]) && (isnan(v) || v > plane[best]))
                best = iy * s->w + ix;
        }
    return best;
}

static void describe_pool(char *buf, size_t size, const NndPoolShape *s, const char *what,
                          int threads)
{
    snprintf(buf, size,
             "%s [%lld,%lld,%lld,%lld] kernel %lldx%lld stride %lldx%lld pad %lldx%lld threads %d",
             what, (long long)s->n, (long long)s->c, (long long)s->h, (long long)s->w,
             (long long)s->kh, (long long)s->kw, (long long)s->sh, (long long)s->sw,
             (long long)s->ph, (long long)s->pw, threads);
}

/* Exact comparison, NaN matching NaN. */
static void check_same(const double *got, const double *ref, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (!(got[i] == ref[i] || (isnan(got[i]) && isnan(ref[i]))))
            fail_msg("%s: element %zu = %.17g, expected %.17g", what, i, got[i], ref[i]);
}

/* gather and scatter against the reference choice, exactly, in both dtypes on every
 * pool; x is given (ties, -inf, NaN), v and d are drawn. */
static void check_maxpool(const NndPoolShape *s, const double *x, uint64_t seed)
{
    size_t nx = (size_t)(s->n * s->c * s->h * s->w), ny = (size_t)(s->n * s->c * s->oh * s->ow);
    double *v = new_doubles(nx), *d = new_doubles(ny);
    double *gather = new_doubles(ny), *scatter = new_doubles(nx);
    uint64_t r = seed;
    for (size_t i = 0; i < nx; i++)
        v[i] = draw(&r);
    for (size_t i = 0; i < ny; i++)
        d[i] = draw(&r);
    memset(scatter, 0, nx * sizeof(double));
    for (int64_t pl = 0; pl < s->n * s->c; pl++)
        for (int64_t i = 0; i < s->oh; i++)
            for (int64_t j = 0; j < s->ow; j++) {
                int64_t at = ref_argmax(s, x + pl * s->h * s->w, i, j);
                int64_t yi = (pl * s->oh + i) * s->ow + j;
                gather[yi] = at >= 0 ? v[pl * s->h * s->w + at] : 0;
                if (at >= 0)
                    scatter[pl * s->h * s->w + at] += d[yi];
            }
    float *xf = new_floats(nx), *vf = new_floats(nx), *df = new_floats(ny);
    float *of = new_floats(nx > ny ? nx : ny);
    double *od = new_doubles(nx > ny ? nx : ny), *conv = new_doubles(nx > ny ? nx : ny);
    double *masked = new_doubles(nx);
    to_float(xf, x, nx);
    to_float(vf, v, nx);
    to_float(df, d, ny);
    char what[256];
    /* f32 2x2 windows: AVX-512 lanes, AVX2 lanes (where the CPU has them), then the
     * plain loops */
    for (int path = 2; path >= 0; path--) {
        if (vector_path(path) != path)
            continue;
        for (int t = 0; t <= TEST_THREADS; t++) {
            describe_pool(what, sizeof what, s, "maxpool_gather", t);
            fill_nan_f(of, ny);
            nnd_maxpool_gather_f32(pools[t], s, xf, vf, of);
            to_double(conv, of, ny);
            check_same(conv, gather, ny, what);
            fill_nan_d(od, ny);
            nnd_maxpool_gather_f64(pools[t], s, x, v, od);
            check_same(od, gather, ny, what);
            /* max_pool2d(x) is gather(x, x) */
            nnd_maxpool_gather_f64(pools[t], s, x, x, od);
            nnd_maxpool_gather_f32(pools[t], s, xf, xf, of);
            for (int64_t pl = 0; pl < s->n * s->c; pl++)
                for (int64_t i = 0; i < s->oh; i++)
                    for (int64_t j = 0; j < s->ow; j++) {
                        int64_t at = ref_argmax(s, x + pl * s->h * s->w, i, j);
                        if (at < 0)
                            continue;
                        int64_t yi = (pl * s->oh + i) * s->ow + j;
                        double e = x[pl * s->h * s->w + at], g = od[yi], gf = of[yi];
                        if (!(e == g || (isnan(e) && isnan(g))))
                            fail_msg("%s: max %g, expected %g", what, g, e);
                        if (!((float)e == gf || (isnan(e) && isnan(gf))))
                            fail_msg("%s: f32 max %g, expected %g", what, gf, e);
                    }

            describe_pool(what, sizeof what, s, "maxpool_scatter", t);
            fill_nan_f(of, nx);
            nnd_maxpool_scatter_f32(pools[t], s, xf, df, of);
            to_double(conv, of, nx);
            check_same(conv, scatter, nx, what);
            fill_nan_d(od, nx);
            nnd_maxpool_scatter_f64(pools[t], s, x, d, od);
            check_same(od, scatter, nx, what);

            /* with relu's mask as its epilogue (x > 0 ? scatter : 0, the mask being
             * x itself, as in a step): the same bits as the mask after it */
            describe_pool(what, sizeof what, s, "maxpool_scatter masked", t);
            for (size_t i = 0; i < nx; i++)
                masked[i] = x[i] > 0 ? scatter[i] : 0;
            fill_nan_f(of, nx);
            nnd_maxpool_scatter_f32_ep(pools[t], s, xf, df, of, NND_EP_MASK, xf);
            to_double(conv, of, nx);
            check_same(conv, masked, nx, what);
            fill_nan_d(od, nx);
            nnd_maxpool_scatter_f64_ep(pools[t], s, x, d, od, NND_EP_MASK, x);
            check_same(od, masked, nx, what);
        }
    }
    vector_path(2);
    free(v);
    free(d);
    free(gather);
    free(scatter);
    free(xf);
    free(vf);
    free(df);
    free(of);
    free(od);
    free(conv);
    free(masked);
}

static const NndPoolShape *pool_shapes(size_t *count)
{
    static NndPoolShape shapes[12];
    shapes[0] = pool_shape(2, 3, 8, 8, 2, 2, 2, 2, 0, 0);
    shapes[1] = pool_shape(3, 2, 7, 9, 3, 3, 2, 2, 1, 1);
    shapes[2] = pool_shape(1, 4, 6, 5, 3, 3, 1, 1, 1, 1);
    shapes[3] = pool_shape(2, 2, 7, 8, 2, 3, 1, 2, 1, 1);
    shapes[4] = pool_shape(2, 3, 11, 12, 5, 5, 3, 3, 2, 2);
    shapes[5] = pool_shape(4, 1, 5, 6, 1, 1, 1, 1, 0, 0);
    shapes[6] = pool_shape(1, 3, 9, 7, 3, 2, 2, 1, 0, 1);
    shapes[7] = pool_shape(5, 8, 28, 28, 2, 2, 2, 2, 0, 0); /* the CNN's */
    shapes[8] = pool_shape(2, 2, 1, 7, 1, 3, 1, 2, 0, 1);
    shapes[9] = pool_shape(3, 5, 10, 10, 4, 4, 2, 3, 2, 1);
    shapes[10] = pool_shape(2, 3, 7, 9, 2, 2, 2, 2, 0, 0); /* 2x2 fast path, odd edges */
    shapes[11] = pool_shape(2, 2, 6, 71, 2, 2, 2, 2, 0, 0); /* 35 windows a row: 16, 16, 3 */
    *count = sizeof shapes / sizeof shapes[0];
    return shapes;
}

/* Values in {-2, -1, -0.5}: many ties, and all below the padding's 0, so a window that
 * counted its padding would pick it. */
static void test_maxpool_ties(void **state)
{
    size_t count;
    const NndPoolShape *shapes = pool_shapes(&count);
    for (size_t k = 0; k < count; k++) {
        const NndPoolShape *s = &shapes[k];
        size_t nx = (size_t)(s->n * s->c * s->h * s->w);
        double *x = new_doubles(nx);
        uint64_t r = case_seed(3000 + (int)k);
        static const double vals[3] = {-2, -1, -0.5};
        for (size_t i = 0; i < nx; i++)
            x[i] = vals[lcg(&r) % 3];
        check_maxpool(s, x, case_seed(3100 + (int)k));
        /* and distinct values: the unique maximum */
        for (size_t i = 0; i < nx; i++)
            x[i] = draw(&r) + (double)i * 1e-6;
        check_maxpool(s, x, case_seed(3200 + (int)k));
        free(x);
    }
}

/* -inf everywhere (each window picks its first position inside x), -inf mixed with
 * numbers, and NaNs (a NaN wins, the first of them). */
static void test_maxpool_special(void **state)
{
    size_t count;
    const NndPoolShape *shapes = pool_shapes(&count);
    for (size_t k = 0; k < count; k++) {
        const NndPoolShape *s = &shapes[k];
        size_t nx = (size_t)(s->n * s->c * s->h * s->w);
        double *x = new_doubles(nx);
        for (size_t i = 0; i < nx; i++)
            x[i] = -INFINITY;
        check_maxpool(s, x, case_seed(4000 + (int)k));
        uint64_t r = case_seed(4100 + (int)k);
        for (size_t i = 0; i < nx; i++) {
            uint64_t u = lcg(&r) % 8;
            x[i] = u == 0 ? NAN : u < 4 ? -INFINITY : draw(&r);
        }
        check_maxpool(s, x, case_seed(4200 + (int)k));
        free(x);
    }
    /* padding wider than half the kernel (PyTorch forbids it): windows wholly in the
     * padding gather 0 and scatter nothing */
    {
        NndPoolShape s = pool_shape(2, 3, 1, 2, 1, 1, 1, 1, 1, 1);
        assert_true(s.oh == 3 && s.ow == 4);
        double x[12];
        uint64_t r = 99;
        for (int i = 0; i < 12; i++)
            x[i] = draw(&r);
        check_maxpool(&s, x, 98);
    }
    /* a worked example: 4x4, 2x2 windows, stride 2 */
    const double x[16] = {1, 3, 2, 2, 3, 0, 2, 1, -1, -5, NAN, 4, -2, -1, 4, NAN};
    double y[4], dx[16];
    const double d[4] = {10, 20, 30, 40};
    NndPoolShape s = pool_shape(1, 1, 4, 4, 2, 2, 2, 2, 0, 0);
    nnd_maxpool_gather_f64(NULL, &s, x, x, y);
    assert_true(y[0] == 3 && y[1] == 2 && y[2] == -1 && isnan(y[3]));
    nnd_maxpool_scatter_f64(NULL, &s, x, d, dx);
    const double expect[16] = {0, 10, 20, 0, 0, 0, 0, 0, 30, 0, 40, 0, 0, 0, 0, 0};
    for (int i = 0; i < 16; i++)
        assert_true(dx[i] == expect[i]);
}

/* avg_pool2d against sums / (kh kw), its gradient against the reference scatter, and
 * the adjoint identity <avgpool(x), dy> = <x, avgpool_grad(dy)>. */
static void test_avgpool(void **state)
{
    size_t count;
    const NndPoolShape *shapes = pool_shapes(&count);
    char what[256];
    for (size_t k = 0; k < count; k++) {
        const NndPoolShape *s = &shapes[k];
        size_t nx = (size_t)(s->n * s->c * s->h * s->w), ny = (size_t)(s->n * s->c * s->oh * s->ow);
        double *x = new_doubles(nx), *dy = new_doubles(ny);
        double *y = new_doubles(ny), *by = new_doubles(ny), *dx = new_doubles(nx);
        double *bdx = new_doubles(nx);
        uint64_t r = case_seed(5000 + (int)k);
        for (size_t i = 0; i < nx; i++)
            x[i] = draw(&r);
        for (size_t i = 0; i < ny; i++)
            dy[i] = draw(&r);
        memset(dx, 0, nx * sizeof(double));
        memset(bdx, 0, nx * sizeof(double));
        double div = (double)(s->kh * s->kw);
        for (int64_t pl = 0; pl < s->n * s->c; pl++)
            for (int64_t i = 0; i < s->oh; i++)
                for (int64_t j = 0; j < s->ow; j++) {
                    int64_t yi = (pl * s->oh + i) * s->ow + j;
                    double sum = 0, mag = 0;
                    for (int64_t a = 0; a < s->kh; a++)
                        for (int64_t b = 0; b < s->kw; b++) {
                            int64_t iy = i * s->sh - s->ph + a, ix = j * s->sw - s->pw + b;
                            if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w)
                                continue;
                            int64_t xi = (pl * s->h + iy) * s->w + ix;
                            sum += x[xi];
                            mag += fabs(x[xi]);
                            dx[xi] += dy[yi] / div;
                            bdx[xi] += fabs(dy[yi]) / div;
                        }
                    y[yi] = sum / div;
                    by[yi] = mag / div;
                }
        float *xf = new_floats(nx), *dyf = new_floats(ny), *of = new_floats(nx > ny ? nx : ny);
        double *od = new_doubles(nx > ny ? nx : ny), *od2 = new_doubles(nx > ny ? nx : ny);
        double *conv = new_doubles(nx > ny ? nx : ny);
        to_float(xf, x, nx);
        to_float(dyf, dy, ny);
        int64_t terms = s->kh * s->kw;
        for (int t = 0; t <= TEST_THREADS; t++) {
            describe_pool(what, sizeof what, s, "avgpool", t);
            fill_nan_f(of, ny);
            nnd_avgpool_f32(pools[t], s, xf, of);
            to_double(conv, of, ny);
            check_close(conv, y, by, ny, rel_f32(terms), what);
            fill_nan_d(od, ny);
            nnd_avgpool_f64(pools[t], s, x, od);
            check_close(od, y, by, ny, 1e-14, what);

            describe_pool(what, sizeof what, s, "avgpool_grad", t);
            fill_nan_f(of, nx);
            nnd_avgpool_grad_f32(pools[t], s, dyf, of);
            to_double(conv, of, nx);
            check_close(conv, dx, bdx, nx, rel_f32(terms), what);
            fill_nan_d(od2, nx);
            nnd_avgpool_grad_f64(pools[t], s, dy, od2);
            check_close(od2, dx, bdx, nx, 1e-14, what);

            double lhs = dot(od, dy, ny), rhs = dot(x, od2, nx), mag = 0;
            for (size_t i = 0; i < ny; i++)
                mag += by[i] * fabs(dy[i]);
            if (!(fabs(lhs - rhs) <= 1e-13 * mag + 1e-300))
                fail_msg("%s: <y, dy> %.17g, <x, dx> %.17g", what, lhs, rhs);
        }
        free(x);
        free(dy);
        free(y);
        free(by);
        free(dx);
        free(bdx);
        free(xf);
        free(dyf);
        free(of);
        free(od);
        free(od2);
        free(conv);
    }
}

/* ---- embedding rows ------------------------------------------------------------------------ */

/* take_rows copies rows; scatter_rows adds them back (repeated indices summed) into
 * zeros; they are adjoint: <take(T), D> = <T, scatter(D)>. */
static void test_rows(void **state)
{
    enum { V = 7, D = 5, N = 12 };
    const int32_t idx[N] = {3, 0, 6, 3, 3, 1, 0, 5, 2, 6, 3, 4};
    double table[V * D], src[N * D], out[N * D], back[V * D], expect[V * D];
    float tf[V * D], sf[N * D], of[N * D], bf[V * D];
    uint64_t r = 77;
    for (int i = 0; i < V * D; i++)
        tf[i] = (float)(table[i] = draw(&r));
    for (int i = 0; i < N * D; i++)
        sf[i] = (float)(src[i] = draw(&r));
    nnd_take_rows_f64(table, idx, N, D, out);
    nnd_take_rows_f32(tf, idx, N, D, of);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < D; k++) {
            assert_true(out[i * D + k] == table[idx[i] * D + k]);
            assert_true(of[i * D + k] == tf[idx[i] * D + k]);
        }
    for (int i = 0; i < V * D; i++) {
        back[i] = NAN;
        bf[i] = NAN;
        expect[i] = 0;
    }
    for (int i = 0; i < N; i++)
        for (int k = 0; k < D; k++)
            expect[idx[i] * D + k] += src[i * D + k];
    nnd_scatter_rows_f64(src, idx, N, D, V, back);
    nnd_scatter_rows_f32(sf, idx, N, D, V, bf);
    for (int i = 0; i < V * D; i++) {
        assert_true(back[i] == expect[i]);
        assert_true(bf[i] == (float)expect[i]);
    }
    /* adjoint: exact, as every product and sum here is */
    assert_true(dot(out, src, N * D) == dot(table, back, V * D));
    /* no rows: scatter still zeroes */
    nnd_scatter_rows_f64(src, idx, 0, D, V, back);
    for (int i = 0; i < V * D; i++)
        assert_true(back[i] == 0);
}

/* ---- the benchmark ---------------------------------------------------------------------- */

/* GFLOP/s of one op: the best of 8 windows of 100 ms (a shared machine's noise
 * only ever slows a window down). */
static double bench_one(NndPool *pool, const NndConvShape *s, ConvOp op, const float *x,
                        const float *w, const float *dy, float *out)
{
    double flops = 2.0 * (double)(s->n * s->o * s->oh * s->ow) * (double)(s->c / s->groups) *
                   (double)(s->kh * s->kw);
    double best = 0;
    for (int window = 0; window < 8; window++) {
        int64_t reps = 0, t0 = nnd_clock_ns(), t1;
        do {
            if (op == OP_FWD)
                nnd_conv2d_f32(pool, s, x, w, out);
            else if (op == OP_GIN)
                nnd_conv2d_grad_input_f32(pool, s, dy, w, out);
            else
                nnd_conv2d_grad_weight_f32(pool, s, x, dy, out);
            reps++;
            t1 = nnd_clock_ns();
        } while (t1 - t0 < 100000000);
        double rate = flops * (double)reps / (double)(t1 - t0);
        best = rate > best ? rate : best;
    }
    return best;
}

static int run_bench(void)
{
    const NndConvShape shapes[] = {
        conv_shape(64, 1, 28, 28, 32, 5, 5, 1, 1, 2, 2, 1, 1, 1),
        conv_shape(64, 32, 14, 14, 64, 5, 5, 1, 1, 2, 2, 1, 1, 1),
    };
    if (setup_pools(NULL) != 0)
        return 1;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const NndConvShape *s = &shapes[i];
        size_t nx = x_size(s), nw = w_size(s), ny = y_size(s);
        size_t most = nx > ny ? nx : ny;
        float *x = new_floats(nx), *w = new_floats(nw), *dy = new_floats(ny);
        float *out = new_floats(most > nw ? most : nw);
        uint64_t r = 1;
        for (size_t k = 0; k < nx; k++)
            x[k] = (float)draw(&r);
        for (size_t k = 0; k < nw; k++)
            w[k] = (float)draw(&r);
        for (size_t k = 0; k < ny; k++)
            dy[k] = (float)draw(&r);
        for (int t = 1; t <= 2; t++) {
            printf("x [%lld,%lld,%lld,%lld] w [%lld,%lld,%lld,%lld] pad %lld, %d thread%s:",
                   (long long)s->n, (long long)s->c, (long long)s->h, (long long)s->w,
                   (long long)s->o, (long long)s->c, (long long)s->kh, (long long)s->kw,
                   (long long)s->ph, t, t > 1 ? "s" : "");
            for (int op = 0; op < OP_COUNT; op++)
                printf("  %s %.1f GFLOP/s", op_names[op],
                       bench_one(pools[t], s, (ConvOp)op, x, w, dy, out));
            printf("\n");
        }
        free(x);
        free(w);
        free(dy);
        free(out);
    }
    teardown_pools(NULL);
    return 0;
}

int main(void)
{
    if (getenv("NND_CONV_BENCH"))
        return run_bench();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_known_values),
        cmocka_unit_test(test_conv_grid),
        cmocka_unit_test(test_conv_shapes),
        cmocka_unit_test(test_conv_winograd),
        cmocka_unit_test(test_conv_winograd_bf16),
        cmocka_unit_test(test_conv_epilogue),
        cmocka_unit_test(test_conv_empty),
        cmocka_unit_test(test_conv_no_memory),
        cmocka_unit_test(test_maxpool_ties),
        cmocka_unit_test(test_maxpool_special),
        cmocka_unit_test(test_avgpool),
        cmocka_unit_test(test_rows),
    };
    return cmocka_run_group_tests(tests, setup_pools, teardown_pools);
}
