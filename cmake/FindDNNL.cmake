# Finds oneDNN 2.x (Debian: libdnnl-dev) and defines the imported target ember::dnnl, with DNNL_VERSION
# and DNNL_CPU_RUNTIME (OMP, TBB, SEQ, THREADPOOL: the threading runtime the library was built with).
# Not oneDNN's own dnnl-config.cmake: Debian's build has the OpenCL GPU runtime, so that file insists on
# the OpenCL headers (ocl-icd-opencl-dev, only a recommendation of libdnnl-dev), which ember never uses.
# DNNL_ROOT (environment) points at another installation prefix.
include(FindPackageHandleStandardArgs)
find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp HINTS ENV DNNL_ROOT PATH_SUFFIXES include)
find_library(DNNL_LIBRARY dnnl HINTS ENV DNNL_ROOT PATH_SUFFIXES lib lib64)
set(DNNL_VERSION "")
set(DNNL_CPU_RUNTIME "")
if(DNNL_INCLUDE_DIR AND EXISTS "${DNNL_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h")
  file(STRINGS "${DNNL_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h" _dnnl_version_lines
       REGEX "#define DNNL_VERSION_(MAJOR|MINOR|PATCH) ")
  foreach(_part IN ITEMS MAJOR MINOR PATCH)
    string(REGEX MATCH "DNNL_VERSION_${_part} ([0-9]+)" _m "${_dnnl_version_lines}")
    set(_dnnl_${_part} "${CMAKE_MATCH_1}")
  endforeach()
  set(DNNL_VERSION "${_dnnl_MAJOR}.${_dnnl_MINOR}.${_dnnl_PATCH}")
  file(STRINGS "${DNNL_INCLUDE_DIR}/oneapi/dnnl/dnnl_config.h" _dnnl_runtime REGEX "#define DNNL_CPU_RUNTIME ")
  string(REGEX MATCH "DNNL_RUNTIME_([A-Z]+)" _m "${_dnnl_runtime}")
  set(DNNL_CPU_RUNTIME "${CMAKE_MATCH_1}")
  unset(_dnnl_version_lines)
  unset(_dnnl_runtime)
  unset(_m)
endif()
find_package_handle_standard_args(DNNL REQUIRED_VARS DNNL_LIBRARY DNNL_INCLUDE_DIR VERSION_VAR DNNL_VERSION)
if(DNNL_FOUND AND NOT TARGET ember::dnnl)
  add_library(ember::dnnl UNKNOWN IMPORTED)
  set_target_properties(ember::dnnl PROPERTIES IMPORTED_LOCATION "${DNNL_LIBRARY}"
                                               INTERFACE_INCLUDE_DIRECTORIES "${DNNL_INCLUDE_DIR}")
endif()
mark_as_advanced(DNNL_INCLUDE_DIR DNNL_LIBRARY)
