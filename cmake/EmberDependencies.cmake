# Finds what ember builds against. Each dependency is a Debian package (scripts/deps.sh installs them).
include_guard(GLOBAL)

find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(ZLIB REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
# Note [OpenBLAS flavour]
# ember's CPU loops use OpenMP. Debian's default OpenBLAS is the pthreads build, whose threads spin for
# ~0.1 s after every threaded GEMM and then fight OpenMP's threads for the cores (measured: a 1M-float
# add right after a GEMM took 15x longer, a CNN training step 2x). The OpenMP build of OpenBLAS
# (libopenblas-openmp-dev) shares OpenMP's thread pool, so we link that one by its full path (the
# directory lands in the RPATH, so the loader does not pick the pthreads build through the
# libopenblas.so.0 alternative). Without it we fall back to whatever FindBLAS finds, with a warning.
# EMBER_OPENBLAS_ROOT moves the whole Debian layout elsewhere: bench/gpu_check.sh unpacks the .deb files
# into a private prefix on machines without a package registry.
set(EMBER_OPENBLAS_ROOT /usr CACHE PATH
    "Prefix of the OpenMP build of OpenBLAS in Debian's layout (lib/<arch>/openblas-openmp, include/<arch>/openblas-openmp)")
set(_ember_openblas_dir ${EMBER_OPENBLAS_ROOT}/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp)
find_library(EMBER_OPENBLAS_LIBRARY NAMES openblas PATHS ${_ember_openblas_dir} NO_DEFAULT_PATH)
find_path(EMBER_OPENBLAS_INCLUDE_DIR cblas.h
          PATHS ${EMBER_OPENBLAS_ROOT}/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
if(EMBER_OPENBLAS_LIBRARY AND EMBER_OPENBLAS_INCLUDE_DIR)
  set(EMBER_BLAS_LIBRARIES ${EMBER_OPENBLAS_LIBRARY})
  set(EMBER_CBLAS_INCLUDE_DIR ${EMBER_OPENBLAS_INCLUDE_DIR})
  set(EMBER_BLAS_OPENMP ON)
else()
  message(WARNING "ember: the OpenMP build of OpenBLAS (Debian: libopenblas-openmp-dev) was not found; using "
                  "the default BLAS, whose threads may contend with OpenMP")
  set(BLA_VENDOR OpenBLAS)
  find_package(BLAS REQUIRED)
  set(EMBER_BLAS_LIBRARIES ${BLAS_LIBRARIES})
  find_path(EMBER_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas openblas-pthread x86_64-linux-gnu/openblas-pthread
            REQUIRED)
  set(EMBER_BLAS_OPENMP OFF)
endif()

# The CUDA backend: AUTO builds it whenever nvcc is found, ON insists on it, OFF never builds it.
set(EMBER_WITH_CUDA OFF)
if(NOT EMBER_CUDA MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "EMBER_CUDA must be AUTO, ON or OFF (got '${EMBER_CUDA}')")
endif()
if(NOT EMBER_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # "90" is sm_90 SASS plus compute_90 PTX (H100/H200; the PTX lets newer GPUs JIT it). It must be set
    # before enable_language: CUDA 13 dropped the architectures CMake 3.25 would otherwise probe with.
    set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures to build for (90 = sm_90 + PTX)")
    enable_language(CUDA)
    # Note [CUDA 20 with CMake 3.25]: CMake 3.25 knows no C++20 flag for nvcc (3.26 does), so a target
    # with .cu files and cxx_std_20 fails to generate with "requires the language dialect CUDA20".
    # nvcc >= 12 accepts -std=c++20; tell CMake so. Newer CMake defines these itself.
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(CMAKE_CUDA_EXTENSIONS OFF)
    find_package(CUDAToolkit REQUIRED)
    find_package(CUDNN 9 REQUIRED)
    find_package(NCCL REQUIRED)
    set(EMBER_WITH_CUDA ON)
  elseif(EMBER_CUDA STREQUAL "ON")
    message(FATAL_ERROR "EMBER_CUDA=ON but no CUDA compiler (nvcc) was found; put nvcc on PATH (or set "
                        "CUDACXX=/path/to/nvcc), or configure with -DEMBER_CUDA=OFF")
  endif()
endif()
if(EMBER_WITH_CUDA)
  message(STATUS "ember: CUDA backend ON (EMBER_CUDA=${EMBER_CUDA}, nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
                 "architectures ${CMAKE_CUDA_ARCHITECTURES})")
else()
  message(STATUS "ember: CUDA backend OFF (EMBER_CUDA=${EMBER_CUDA}); every CUDA request throws ember::Error")
endif()

# Note [MPI]
# Process groups (parallel/distributed.h) run their CPU collectives, and bootstrap NCCL, over MPI's C API
# (Debian: libopenmpi-dev, openmpi-bin; any MPI-3 library works). MPI_CXX_SKIP_MPICXX keeps the deprecated
# C++ bindings out. The ember target does not exist yet when this file runs, so its link to MPI is
# deferred to the end of the directory that included this file. PRIVATE: no public header includes
# mpi.h; the static library still exports the link ($<LINK_ONLY:MPI::MPI_CXX>), which is why
# emberConfig.cmake finds MPI again for consumers.
set(MPI_CXX_SKIP_MPICXX ON)
find_package(MPI REQUIRED COMPONENTS CXX)
message(STATUS "ember: MPI ${MPI_CXX_VERSION} (${MPIEXEC_EXECUTABLE}) for process groups")
cmake_language(DEFER CALL target_link_libraries ember PRIVATE MPI::MPI_CXX)
# How tests and examples launch ranks: EMBER_MPIEXEC_FLAGS after `-np N`, EMBER_MPI_TEST_ENV for CTest's
# ENVIRONMENT. For Open MPI: shared memory between the ranks (vader), no core binding (other jobs share the
# cores), more ranks than cores allowed, root allowed (containers); one OpenMP thread per rank always.
set(EMBER_MPIEXEC_FLAGS ${MPIEXEC_PREFLAGS})
set(EMBER_MPI_TEST_ENV OMP_NUM_THREADS=1)
execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _ember_mpiexec_version ERROR_QUIET
                TIMEOUT 30)
set(EMBER_MPI_IS_OPEN_MPI OFF)
if(_ember_mpiexec_version MATCHES "Open MPI|OpenRTE")
  set(EMBER_MPI_IS_OPEN_MPI ON)
  list(APPEND EMBER_MPIEXEC_FLAGS --oversubscribe --bind-to none --mca btl self,vader)
  list(APPEND EMBER_MPI_TEST_ENV OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
endif()
unset(_ember_mpiexec_version)

# Note [oneDNN]
# CPU convolution runs on oneDNN (Debian: libdnnl-dev, the library LibTorch uses on the CPU) when it is
# there: AUTO uses it when found, ON insists on it, OFF keeps ember's own im2col + OpenBLAS path
# (kernels/cpu/conv.cpp) for everything. ember's code is written against oneDNN 2.x's API (3.0 dropped
# the operation descriptors) and needs its OpenMP build: oneDNN then runs in the same libgomp pool as
# ember's loops and OpenBLAS, with the thread count ember's OpenMP settings give (Note [oneDNN
# convolution] in kernels/cpu/onednn.cpp); a TBB or sequential build would not. PRIVATE link, found
# again by emberConfig.cmake as MPI is.
set(EMBER_DNNL AUTO CACHE STRING "CPU convolution through oneDNN 2.x: AUTO (when found), ON or OFF")
set_property(CACHE EMBER_DNNL PROPERTY STRINGS AUTO ON OFF)
if(NOT EMBER_DNNL MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "EMBER_DNNL must be AUTO, ON or OFF (got '${EMBER_DNNL}')")
endif()
set(EMBER_WITH_DNNL OFF)
if(NOT EMBER_DNNL STREQUAL "OFF")
  find_package(DNNL 2)
  set(_ember_dnnl_why "")
  if(NOT DNNL_FOUND)
    set(_ember_dnnl_why "oneDNN was not found (Debian: libdnnl-dev; or set DNNL_ROOT)")
  elseif(DNNL_VERSION VERSION_GREATER_EQUAL 3)
    set(_ember_dnnl_why "oneDNN ${DNNL_VERSION} at ${DNNL_LIBRARY} is 3.x; ember uses the 2.x API")
  elseif(NOT DNNL_CPU_RUNTIME STREQUAL "OMP")
    set(_ember_dnnl_why "oneDNN at ${DNNL_LIBRARY} was built with the ${DNNL_CPU_RUNTIME} CPU runtime; ember needs OpenMP's")
  endif()
  if(_ember_dnnl_why STREQUAL "")
    set(EMBER_WITH_DNNL ON)
    message(STATUS "ember: oneDNN ${DNNL_VERSION} (${DNNL_CPU_RUNTIME} runtime, ${DNNL_LIBRARY}) for CPU convolution")
    cmake_language(DEFER CALL target_link_libraries ember PRIVATE ember::dnnl)
  elseif(EMBER_DNNL STREQUAL "ON")
    message(FATAL_ERROR "EMBER_DNNL=ON but ${_ember_dnnl_why}")
  else()
    message(STATUS "ember: oneDNN OFF: ${_ember_dnnl_why}; CPU convolution runs im2col + OpenBLAS")
  endif()
  unset(_ember_dnnl_why)
else()
  message(STATUS "ember: oneDNN OFF (EMBER_DNNL=OFF); CPU convolution runs im2col + OpenBLAS")
endif()
