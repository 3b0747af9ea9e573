# `cmake --install`: the static library, every public header under include/ember, and a CMake package
# (emberConfig.cmake) so that consumers write find_package(ember CONFIG REQUIRED).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The include directory consumers get comes from ember's $<INSTALL_INTERFACE:include/ember>.
install(TARGETS ember EXPORT emberTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ember.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ember)
foreach(dir IN ITEMS runtime kernels nn parallel data)
  install(DIRECTORY ${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ember/${dir}
          FILES_MATCHING PATTERN "*.h" PATTERN "*.cuh")
endforeach()

set(EMBER_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/ember)
set(EMBER_CUDA_TOOLKIT_ROOT "")
if(EMBER_WITH_CUDA)
  get_filename_component(EMBER_CUDA_TOOLKIT_ROOT "${CUDAToolkit_BIN_DIR}" DIRECTORY)   # a hint for consumers
endif()
install(EXPORT emberTargets NAMESPACE ember:: DESTINATION ${EMBER_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/emberConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/emberConfig.cmake INSTALL_DESTINATION ${EMBER_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/emberConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/emberConfig.cmake ${PROJECT_BINARY_DIR}/emberConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindCUDNN.cmake ${PROJECT_SOURCE_DIR}/cmake/FindNCCL.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindDNNL.cmake
        DESTINATION ${EMBER_CMAKE_DIR})
