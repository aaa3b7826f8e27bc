/* clones: VECTOR_CLONES marks a function of the runtime written for the compiler to
 * vectorize: it is compiled for x86-64-v4 (AVX-512), v3 (AVX2) and the baseline, and
 * the best one the CPU runs is chosen when the program loads (GCC's target_clones);
 * elsewhere it is one plain function.  Private to the runtime. */
#ifndef NND_CLONES_H
#define NND_CLONES_H

#if defined(__GNUC__) && defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef VECTOR_CLONES
#define VECTOR_CLONES
#endif

#endif
