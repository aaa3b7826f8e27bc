/* clones: VECTOR_CLONES marks a function of the runtime written for the compiler to
 * vectorize: it is compiled for x86-64-v4 (AVX-512), v3 (AVX2) and the baseline, and
 * the best one the CPU runs is chosen when the program loads (GCC's target_clones);
 * elsewhere it is one plain function.  Private to the runtime. */
#ifndef NND_CLONES_H
#define NND_CLONES_H

/* (not under ThreadSanitizer: the clones' resolvers run before its runtime starts,
 * and the program dies at load) */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NND_NO_CLONES 1
#endif
#endif
#ifdef __SANITIZE_THREAD__
#define NND_NO_CLONES 1
#endif

#if defined(__GNUC__) && defined(__x86_64__) && defined(__has_attribute) && !defined(NND_NO_CLONES)
#if __has_attribute(target_clones)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef VECTOR_CLONES
#define VECTOR_CLONES
#endif

#endif
