// EMBER_ISA_CLONES: AVX2 and AVX-512 clones of a hot CPU loop next to the baseline one (Note [CPU ISA clones]).
#pragma once

// Note [CPU ISA clones] is in kernels/cpu/softmax.cpp. Sanitizer builds define EMBER_ISA_CLONES empty on the
// command line (cmake/EmberSanitizers.cmake): no ifunc resolver runs before the sanitizer runtime is up.
#ifndef EMBER_ISA_CLONES
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EMBER_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EMBER_ISA_CLONES
#endif
#endif
