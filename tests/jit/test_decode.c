/* The decode function (compiler/decode.h, the sampler's key/value cache) against
 * the forward function: a tiny GPT of the stdlib's TransformerBlocks gives the same logits at
 * every position, fed one token at a time, to 1e-12 in f64 and 1e-5 in f32; text
 * sampled with and without the cache is the same; a model that is not causal is
 * found out and sampled without the cache; a forward function the pass cannot
 * follow (a mean over the positions) is refused with the reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compile.h"
#include "model.h"
#include "sample.h"

#define GPT(CAUSAL, OUT)                                                                           \
    "use nn\nuse optim\nlet T = 8\n"                                                               \
    "model Gpt(V = 256, C = 8, H = 2) {\n"                                                         \
    "    tok = Embedding(V, C, init = normal(0, 0.5))\n"                                           \
    "    pos = Embedding(T, C, init = normal(0, 0.5))\n"                                           \
    "    b1 = TransformerBlock(C, H, " CAUSAL ", init = normal(0, 0.5))\n"                         \
    "    b2 = TransformerBlock(C, H, " CAUSAL ", init = normal(0, 0.5))\n"                         \
    "    lnf = LayerNorm(C)\n"                                                                     \
    "    fn forward(x: [B, T] i32) -> [B, T, V] {\n"                                               \
    "        h = b2(b1(tok(x) + pos(i32(arange(T)))))\n" OUT "    }\n"                             \
    "}\n"                                                                                          \
    "train {\n"                                                                                    \
    "    data train = text(\"%s\", context = T)\n"                                                 \
    "    net = Gpt()\n"                                                                            \
    "    loss = cross_entropy(net(x), y)\n"                                                        \
    "    opt = SGD(lr = 0.1)\n"                                                                    \
    "    batch = 1\n"                                                                              \
    "    steps = 1\n"                                                                              \
    "}\n"

typedef struct Setup {
    Frontend fe;
    Program *p;
    Model m;
    Executable x;
    NndPool *pool;
    double *hypers;
    Sampler s;
} Setup;

/* A few bytes of text to train on (never read: nothing trains here). */
static char corpus[64];

static void setup(Setup *u, const char *path, const char *fmt, NndDType dt)
{
    memset(u, 0, sizeof *u);
    if (!corpus[0]) {
        snprintf(corpus, sizeof corpus, "/tmp/nnd_decode_XXXXXX");
        int fd = mkstemp(corpus);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "the quick brown fox\n", 20), 20);
        close(fd);
    }
    char src[4096];
    snprintf(src, sizeof src, fmt, corpus);
    frontend_init(&u->fe);
    CompileOptions co = {.float_dtype = dt};
    u->p = compile(&u->fe, path, src, &co);
    if (!u->p) {
        char *d = diags_render(&u->fe.diags);
        print_error("%s", d);
        free(d);
        fail();
    }
    char err[512];
    assert_true(model_init(u->p, &u->m, err, sizeof err));
    ExecOptions eo = {.engine = ENGINE_JIT, .max_batch = 1, .forward_only = true};
    if (!executable_build(&u->x, u->p, &eo, err, sizeof err))
        fail_msg("%s", err);
    NndErr pe;
    u->pool = nnd_pool_create(1, &pe);
    u->hypers = program_hyper_values(u->p);
    if (!sampler_init(&u->s, u->p, &u->x, u->m.param_ptrs, u->m.state_ptrs, u->hypers, u->pool,
                      true, err, sizeof err))
        fail_msg("%s", err);
}

static void teardown(Setup *u)
{
    sampler_free(&u->s);
    free(u->hypers);
    executable_free(&u->x);
    model_free(&u->m);
    nnd_pool_destroy(u->pool);
    program_free(u->p);
    frontend_free(&u->fe);
}

/* Every position's logits from the cache match the forward function's. */
static void check_positions(const char *path, const char *src, NndDType dt, double tol)
{
    Setup u;
    setup(&u, path, src, dt);
    if (!u.s.cache)
        fail_msg("no cache: %s", u.s.why);
    int32_t tok[64];
    for (int i = 0; i < 64; i++)
        tok[i] = (int32_t)((i * 37 + 3) % u.s.V);
    char err[256];
    for (int64_t n = 1; n <= u.s.T; n += u.s.T - 1) {
        double d = sampler_compare(&u.s, tok, n, err, sizeof err);
        if (d < 0)
            fail_msg("%s", err);
        if (d > tol)
            fail_msg("%s, %s, %lld tokens: the cache's logits differ by %g (relative)", path,
                     dt == NND_F64 ? "f64" : "f32", (long long)n, d);
    }
    teardown(&u);
}

static void test_positions(void **state)
{
    (void)state;
    check_positions("gpt.nnd", GPT("causal = true", "        matmul(lnf(h), transpose(tok.W))\n"),
                    NND_F64, 1e-12);
    check_positions("gpt.nnd", GPT("causal = true", "        matmul(lnf(h), transpose(tok.W))\n"),
                    NND_F32, 1e-5);
}

/* Sampled text: the same with and without the cache while the context is not full;
 * past it (the cache restarts from T/2 bytes) still the bytes asked for. */
static void test_text(void **state)
{
    (void)state;
    Setup u;
    setup(&u, "gpt.nnd", GPT("causal = true", "        matmul(lnf(h), transpose(tok.W))\n"),
          NND_F32);
    assert_non_null(u.s.cache);
    char err[256], *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    FILE *fa = open_memstream(&a, &na), *fb;
    assert_int_equal(sampler_generate(&u.s, "ab", 6, 1.0, 0, 3, fa, err, sizeof err), 6);
    fclose(fa);
    SamplerCache *keep = u.s.cache;
    u.s.cache = NULL; /* the forward function alone */
    fb = open_memstream(&b, &nb);
    assert_int_equal(sampler_generate(&u.s, "ab", 6, 1.0, 0, 3, fb, err, sizeof err), 6);
    fclose(fb);
    u.s.cache = keep;
    assert_int_equal(na, 8);
    assert_int_equal(nb, 8);
    assert_memory_equal(a, b, 8);
    free(a);
    free(b);
    fa = open_memstream(&a, &na);
    assert_int_equal(sampler_generate(&u.s, "a", 40, 1.0, 0, 4, fa, err, sizeof err), 40);
    fclose(fa);
    assert_int_equal(na, 41);
    assert_non_null(u.s.cache);
    free(a);
    teardown(&u);
}

/* Not causal: the first comparison finds it, and the text comes without the cache. */
static void test_not_causal(void **state)
{
    (void)state;
    Setup u;
    setup(&u, "gpt.nnd", GPT("causal = false", "        matmul(lnf(h), transpose(tok.W))\n"),
          NND_F64);
    assert_non_null(u.s.cache); /* the pass itself cannot tell */
    char err[256], *a = NULL;
    size_t na = 0;
    FILE *fa = open_memstream(&a, &na);
    assert_int_equal(sampler_generate(&u.s, "abc", 4, 1.0, 0, 3, fa, err, sizeof err), 4);
    fclose(fa);
    free(a);
    assert_null(u.s.cache);
    assert_non_null(strstr(u.s.why, "not causal"));
    teardown(&u);
}

/* A mean over the positions: no decode function, and why. */
static void test_refused(void **state)
{
    (void)state;
    Setup u;
    setup(&u, "gpt.nnd",
          GPT("causal = true", "        h = h - mean(h, axis = 1, keepdims = true)\n"
                               "        matmul(lnf(h), transpose(tok.W))\n"),
          NND_F64);
    assert_null(u.s.cache);
    assert_non_null(strstr(u.s.why, "a reduction over the time axis"));
    teardown(&u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_not_causal),
        cmocka_unit_test(test_refused),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (corpus[0])
        unlink(corpus);
    return rc;
}
