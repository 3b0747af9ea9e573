// EMBER_ISA_CLONES: AVX2 and AVX-512 clones of a hot CPU loop next to the baseline one (Note [CPU ISA clones]).
#pragma once

// Note [CPU ISA clones] is in kernels/cpu/softmax.cpp, which defines the same macro for itself.
#ifndef EMBER_ISA_CLONES
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EMBER_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EMBER_ISA_CLONES
#endif
#endif
