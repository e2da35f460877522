# Unit tests: every tests/unit/test_*.c is one executable and one ctest test.
file(GLOB UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(src ${UNIT_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE cairn_agent cairn_restore cairn_engine)
  add_test(NAME unit/${name} COMMAND ${name})
  set_tests_properties(unit/${name} PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77)
endforeach()

# End-to-end tests: every tests/e2e/*.sh runs with the built binary.
file(GLOB E2E_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/e2e/*.sh)
# lib.sh is the helper library the tests source, not a test.
list(FILTER E2E_TESTS EXCLUDE REGEX "/lib(_[a-z0-9]+)?\\.sh$")
foreach(script ${E2E_TESTS})
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME e2e/${name} COMMAND bash ${script})
  set_tests_properties(e2e/${name} PROPERTIES
    ENVIRONMENT "CAIRN=$<TARGET_FILE:cairn>;CAIRN_SRC=${CMAKE_SOURCE_DIR}"
    TIMEOUT 900
    SKIP_RETURN_CODE 77)
endforeach()

# Fuzz targets: each tests/fuzz/fuzz_*.c is built with a replay driver and run
# over its committed corpus (tests/fuzz/corpus/<name>) in every build, so the
# sanitizer build checks every corpus input. With -DCAIRN_FUZZ=ON and clang,
# real libFuzzer binaries are built too (scripts/fuzz.sh runs them).
option(CAIRN_FUZZ "Build libFuzzer targets (needs clang)" OFF)
file(GLOB FUZZ_TARGETS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_*.c)
foreach(src ${FUZZ_TARGETS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(replay_${name} ${src} ${CMAKE_SOURCE_DIR}/tests/fuzz/replay.c)
  target_link_libraries(replay_${name} PRIVATE cairn_agent cairn_restore cairn_engine)
  add_test(NAME fuzz/${name} COMMAND replay_${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${name})
  if(CAIRN_FUZZ)
    add_executable(${name} ${src})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE cairn_agent cairn_restore cairn_engine)
  endif()
endforeach()
