/* mathfn: the scalar maths generated code may call (see nnd_runtime.h). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <time.h>

#include "nnd_abi.h"

int64_t nnd_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

float nnd_expf(float x) { return expf(x); }
float nnd_logf(float x) { return logf(x); }
float nnd_tanhf(float x) { return tanhf(x); }
float nnd_sinf(float x) { return sinf(x); }
float nnd_cosf(float x) { return cosf(x); }
float nnd_powf(float x, float y) { return powf(x, y); }
double nnd_exp(double x) { return exp(x); }
double nnd_log(double x) { return log(x); }
double nnd_tanh(double x) { return tanh(x); }
double nnd_sin(double x) { return sin(x); }
double nnd_cos(double x) { return cos(x); }
double nnd_pow(double x, double y) { return pow(x, y); }

int64_t nnd_check_finite(const void *p, int64_t n, int32_t dtype, NndStepArgs *args, int64_t node)
{
    int64_t bad = 0;
    double first = 0;
    if (dtype == NND_F64) {
        const double *v = p;
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(v[i]) && bad++ == 0)
                first = v[i];
    } else {
        const float *v = p;
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(v[i]) && bad++ == 0)
                first = (double)v[i];
    }
    if (bad) {
        args->status = NND_STATUS_NONFINITE;
        args->bad_node = node;
        args->bad_count = bad;
        args->bad_value = first;
    }
    return bad;
}
