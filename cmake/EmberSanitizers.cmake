# Sanitizer builds (scripts/sanitize.sh; CI runs them from scripts/test.sh).
#
#   -DEMBER_SANITIZE=address;undefined   AddressSanitizer + UndefinedBehaviorSanitizer (GCC or clang)
#   -DEMBER_SANITIZE=thread              ThreadSanitizer
#
# The flags apply to every target of this project (library, tests, benchmarks, examples), compiled and
# linked, so that no instrumented object meets an uninstrumented main. Any UBSan finding is fatal
# (-fno-sanitize-recover), so a test that triggers one fails instead of printing and passing.
#
# Also, in a sanitizer build:
#  - EMBER_ISA_CLONES is defined empty: GCC's target_clones resolve through ifunc resolvers that the loader
#    runs before the sanitizer runtime is initialised, and instrumented resolvers crash there (seen with
#    TSan: every test binary died at load time). The baseline loops are what the build then tests.
#  - The CUDA backend is off (the sanitizers cannot see device memory, and nothing CUDA runs here); the
#    scripts configure with EMBER_CUDA=OFF, and this file refuses the combination.
set(EMBER_MPI_LAUNCHED_TEST_ENV "")   # extra environment of tests under the MPI launcher (below)
set(EMBER_SANITIZE "" CACHE STRING "Sanitizers for every target: empty, 'address;undefined' or 'thread'")

if(EMBER_SANITIZE)
  set(ember_known_sanitizers address undefined thread leak)
  foreach(s IN LISTS EMBER_SANITIZE)
    if(NOT s IN_LIST ember_known_sanitizers)
      message(FATAL_ERROR "EMBER_SANITIZE: unknown sanitizer '${s}' (known: ${ember_known_sanitizers})")
    endif()
  endforeach()
  if("thread" IN_LIST EMBER_SANITIZE AND "address" IN_LIST EMBER_SANITIZE)
    message(FATAL_ERROR "EMBER_SANITIZE: 'thread' and 'address' cannot be combined in one build")
  endif()
  if(EMBER_WITH_CUDA)
    message(FATAL_ERROR "EMBER_SANITIZE needs the CPU-only build: configure with -DEMBER_CUDA=OFF")
  endif()
  list(JOIN EMBER_SANITIZE "," ember_sanitize_list)
  set(ember_sanitize_flags -fsanitize=${ember_sanitize_list} -fno-omit-frame-pointer)
  if("undefined" IN_LIST EMBER_SANITIZE)
    list(APPEND ember_sanitize_flags -fno-sanitize-recover=undefined)
  endif()
  add_compile_options(${ember_sanitize_flags})
  # GCC's flow-based -W(maybe-)uninitialized misfire on sanitizer-instrumented code (GCC documents false
  # warnings under -fsanitize=thread; seen here on copies of an empty std::optional at -O1); normal builds
  # keep them, and scripts/sanitize.sh builds without -Werror.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    add_compile_options(-Wno-maybe-uninitialized -Wno-uninitialized)
  endif()
  add_link_options(${ember_sanitize_flags})
  # Processes started by the MPI launcher run without LeakSanitizer: Open MPI's components are dlopen'ed and
  # unloaded again at MPI_Finalize, and the one-time allocations they keep show up as leaks in stacks of
  # unloaded (unnamed) modules, which no suppression by library can match. ASan's other checks stay on in
  # them, and the same code paths run with leak checking in the world-of-one and single-process tests.
  # Added to the environment of every launcher test (EMBER_MPI_LAUNCHED_TEST_ENV; the options are those of
  # the configuring shell, which scripts/sanitize.sh sets).
  if("address" IN_LIST EMBER_SANITIZE)
    set(EMBER_MPI_LAUNCHED_TEST_ENV "ASAN_OPTIONS=$ENV{ASAN_OPTIONS}:detect_leaks=0")
  endif()
  add_compile_definitions(EMBER_ISA_CLONES=)
  add_compile_definitions(EMBER_SANITIZER_BUILD=1)
  message(STATUS "ember: sanitizer build (${ember_sanitize_list}); ISA clones off")
endif()
