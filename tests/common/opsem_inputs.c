#include "opsem_inputs.h"

#include <float.h>
#include <math.h>

void opsem_push_around(DoubleVec *v, double x)
{
    vec_push(v, x);
    vec_push(v, nextafter(x, INFINITY));
    vec_push(v, nextafter(x, -INFINITY));
    float f = (float)x;
    vec_push(v, (double)nextafterf(f, INFINITY));
    vec_push(v, (double)nextafterf(f, -INFINITY));
}

void opsem_unary_values(DoubleVec *v)
{
    static const double special[] = {
        0,           -0.0,           INFINITY,     -INFINITY,     NAN,
        -NAN,        DBL_MIN,        -DBL_MIN,     DBL_TRUE_MIN,  -DBL_TRUE_MIN,
        0x1.8p-1070, -0x1.234p-1050, 1e-310,       DBL_MAX,       -DBL_MAX,
        FLT_MIN,     -FLT_MIN,       FLT_TRUE_MIN, -FLT_TRUE_MIN, 0x1.8p-140,
        FLT_MAX,     -FLT_MAX,       0x1p24,       0x1p31,        -0x1p31,
        0x1p53,      0x1p53 + 2,     1e22,         -1e22,         1e300,
        0x1p1023,    1e-300};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        vec_push(v, special[i]);
    for (int k = -40; k <= 40; k++) {
        opsem_push_around(v, k);
        vec_push(v, k + 0.5);
    }
    static const double branch[] = {0.625,
                                    -0.625,
                                    88.72283905206835,
                                    88.7228,
                                    89,
                                    -87.33654475055310898657,
                                    -87.34,
                                    -103.972077,
                                    -104,
                                    -150,
                                    709.782712893384,
                                    709.79,
                                    -708.3964185322641,
                                    -745.1332191019411,
                                    -746,
                                    0.70710678118654752,
                                    1.4142135623730951,
                                    0.5,
                                    1e-5,
                                    -1e-5,
                                    M_PI,
                                    M_PI / 2,
                                    -M_PI,
                                    2 * M_PI,
                                    1e6 * M_PI,
                                    9.01,
                                    19.06,
                                    22,
                                    36.7,
                                    44.36,
                                    1e-8,
                                    -1e-8};
    for (size_t i = 0; i < sizeof branch / sizeof branch[0]; i++)
        opsem_push_around(v, branch[i]);
}

void opsem_pair_values(DoubleVec *v)
{
    static const double x[] = {0,
                               -0.0,
                               INFINITY,
                               -INFINITY,
                               NAN,
                               DBL_TRUE_MIN,
                               -DBL_TRUE_MIN,
                               DBL_MIN,
                               DBL_MAX,
                               -DBL_MAX,
                               FLT_TRUE_MIN,
                               FLT_MIN,
                               FLT_MAX,
                               1,
                               -1,
                               2,
                               -2,
                               0.5,
                               -0.5,
                               3,
                               -3,
                               0.1,
                               1.0 / 3,
                               1e-300,
                               1e300,
                               10,
                               -10,
                               1.5,
                               2.5,
                               -2.5,
                               7,
                               1e10,
                               -1e-10,
                               100,
                               -100,
                               65504,
                               0x1p-1022 * 3,
                               1e-320,
                               1e8,
                               1e-8,
                               -7.25};
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        vec_push(v, x[i]);
    vec_push(v, nextafter(2, 3));
    vec_push(v, nextafter(2, 1));
    vec_push(v, (double)nextafterf(2, 3));
    vec_push(v, (double)nextafterf(2, 1));
}

void tuple_add(Tuples *t, int arity, const double *x)
{
    for (int k = 0; k < arity; k++)
        vec_push(&t->in[k], x[k]);
    t->n++;
}

void tuples_free(Tuples *t)
{
    for (int k = 0; k < 3; k++)
        vec_free(&t->in[k]);
}
