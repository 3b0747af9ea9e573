# The install test, run by CTest as `cmake -P`: installs ember from EMBER_BUILD_DIR into the scratch PREFIX,
# then configures, builds and runs the separate consumer project against it. Any failing step fails the test.
foreach(var IN ITEMS EMBER_BUILD_DIR PREFIX CONSUMER_SOURCE CONSUMER_BUILD GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run_step name)
  message(STATUS "install test: ${name}: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install test: ${name} failed (${rc})")
  endif()
endfunction()

# Start from nothing, so a stale prefix or consumer cache cannot hide a broken package.
file(REMOVE_RECURSE "${PREFIX}" "${CONSUMER_BUILD}")

set(config_args)
if(BUILD_TYPE)
  set(config_args --config ${BUILD_TYPE})
endif()
run_step(install ${CMAKE_COMMAND} --install ${EMBER_BUILD_DIR} --prefix ${PREFIX} ${config_args})

foreach(expected IN ITEMS include/ember/ember.h include/ember/runtime/tensor.h)
  if(NOT EXISTS "${PREFIX}/${expected}")
    message(FATAL_ERROR "install test: ${PREFIX}/${expected} was not installed")
  endif()
endforeach()

set(configure_args
    -S ${CONSUMER_SOURCE} -B ${CONSUMER_BUILD} -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${PREFIX}
    -DEXPECTED_PREFIX=${PREFIX}
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(BUILD_TYPE)
  list(APPEND configure_args -DCMAKE_BUILD_TYPE=${BUILD_TYPE})
endif()
if(CXX_COMPILER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()
if(CXX_COMPILER_LAUNCHER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER_LAUNCHER=${CXX_COMPILER_LAUNCHER})
endif()
run_step(configure ${CMAKE_COMMAND} ${configure_args})
run_step(build ${CMAKE_COMMAND} --build ${CONSUMER_BUILD} ${config_args})

if(EXISTS "${CONSUMER_BUILD}/consumer")
  set(consumer "${CONSUMER_BUILD}/consumer")
else()
  set(consumer "${CONSUMER_BUILD}/${BUILD_TYPE}/consumer")   # multi-config generators
endif()
run_step(run ${consumer})
