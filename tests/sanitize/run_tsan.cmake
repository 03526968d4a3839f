# cmake -P script: configure and build tests/sanitize with -fsanitize=thread, then run.
set(flags "-fsanitize=thread -g -O1")
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SRC}/tests/sanitize -B ${TSAN_DIR} -G ${GENERATOR}
  -DFKB_SOURCE=${SRC} -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS=${flags}"
  "-DCMAKE_Fortran_FLAGS=${flags}" "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread"
  "-DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread"
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the sanitizer build failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${TSAN_DIR} RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the sanitizer build failed")
endif()
execute_process(COMMAND ${TSAN_DIR}/test_c_threads ${CASES} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "test_c_threads under ThreadSanitizer failed (exit ${rc})")
endif()
