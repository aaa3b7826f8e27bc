/* histogram: private to the runtime and its tests (nnd_histogram is in nnd_runtime.h). */
#ifndef NND_HISTOGRAM_H
#define NND_HISTOGRAM_H

#include <stdbool.h>

/* For tests: the widest path nnd_histogram may take for f32 values: 2 its AVX-512
 * one (the default), 1 its AVX2 one, 0 the generic one; returns the one it will take
 * (2 on a CPU with AVX-512 F, BW, DQ and VL, 1 on one with AVX2). */
int histogram_vector_path(int widest);

#endif
