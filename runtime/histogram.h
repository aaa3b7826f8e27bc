/* histogram: private to the runtime and its tests (nnd_histogram is in nnd_runtime.h). */
#ifndef NND_HISTOGRAM_H
#define NND_HISTOGRAM_H

#include <stdbool.h>

/* For tests: whether nnd_histogram may take its AVX-512 path for f32 values (the
 * default: yes); returns whether it will (the CPU has AVX-512 F, BW, DQ and VL). */
bool histogram_vector_path(bool on);

#endif
