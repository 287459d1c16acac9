# tlsnic_unit_test(NAME SOURCES src... LIBS lib... [LABELS l...] [TIMEOUT s])
# Registers a cmocka test in CTest. Every unit test carries the "unit" label, which the
# sanitizer build in .ci/run selects; tests with threads also carry "threads", which the
# ThreadSanitizer build (scripts/test-tsan.sh) selects.
function(tlsnic_unit_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/common)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "unit;${T_LABELS}" TIMEOUT ${T_TIMEOUT})
endfunction()

# tlsnic_integration_test(NAME COMMAND cmd... [LABELS l...] [TIMEOUT s])
# Tests that need root, namespaces or external peers. Not run in the sanitizer build.
function(tlsnic_integration_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "COMMAND;LABELS" ${ARGN})
  add_test(NAME ${name} COMMAND ${T_COMMAND})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "integration;${T_LABELS}" TIMEOUT ${T_TIMEOUT})
endfunction()
