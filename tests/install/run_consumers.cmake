# cmake -P script: install, then configure/build/run each consumer (see CMakeLists.txt).
set(PREFIX ${WORK}/prefix)
file(REMOVE_RECURSE ${WORK})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "ok: ${ARGN}\n${out}")
endfunction()

run(${CMAKE_COMMAND} --install ${FKB_BUILD} --prefix ${PREFIX})
# Every Keras reference case, with the tolerance of its precision.
file(STRINGS ${CASES}/cases.txt case_lines)
function(run_all_cases program)
  foreach(line IN LISTS case_lines)
    separate_arguments(fields UNIX_COMMAND "${line}")
    # Cases with several inputs or outputs (comma-separated sizes) need predict_multi: the
    # consumers below are single-input programs; tests/c and tests/fortran cover those.
    list(LENGTH fields n_fields)
    if(n_fields GREATER 5)
      list(GET fields 5 in_sizes)
      list(GET fields 6 out_sizes)
      if(in_sizes MATCHES "," OR out_sizes MATCHES ",")
        continue()
      endif()
    endif()
    list(GET fields 0 name)
    list(GET fields 1 dtype)
    if(dtype STREQUAL "float64")
      set(rtol 1e-12)
    else()
      set(rtol 1e-5)
    endif()
    run(${program} ${CASES}/${name} ${rtol})
  endforeach()
endfunction()

foreach(lang fortran c cpp)
  run(${CMAKE_COMMAND} -S ${SRC}/${lang} -B ${WORK}/${lang} -G ${GENERATOR}
      -DCMAKE_PREFIX_PATH=${PREFIX})
  run(${CMAKE_COMMAND} --build ${WORK}/${lang})
  run_all_cases(${WORK}/${lang}/consumer)
endforeach()

# The online-learning example: trains from a Fortran time loop and saves its state.
run(${CMAKE_COMMAND} -S ${SRC}/../../examples/online_learning -B ${WORK}/online -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${PREFIX})
run(${CMAKE_COMMAND} --build ${WORK}/online)
run(${WORK}/online/fkb_online ${CASES}/spcam_like_float32.fkb 100 ${WORK}/online/trained.fkb)

# The custom-layer example: a user's layer type compiled against the installed modules.
run(${CMAKE_COMMAND} -S ${SRC}/../../examples/custom_layer -B ${WORK}/custom -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${PREFIX})
run(${CMAKE_COMMAND} --build ${WORK}/custom)

# pkg-config: a plain compiler command line, as a Makefile-built host model would use.
find_program(PKG_CONFIG pkg-config)
find_program(CC NAMES cc gcc)
if(PKG_CONFIG AND CC)
  set(ENV{PKG_CONFIG_PATH} ${PREFIX}/lib/pkgconfig:${PREFIX}/lib64/pkgconfig)
  execute_process(COMMAND ${PKG_CONFIG} --cflags --libs fkb OUTPUT_VARIABLE flags
                  RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config does not know fkb")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  file(GLOB libdir LIST_DIRECTORIES true ${PREFIX}/lib ${PREFIX}/lib64)
  run(${CC} ${SRC}/c/main.c -o ${WORK}/pkgconfig_consumer ${flags} -lm -Wl,-rpath,${libdir})
  run_all_cases(${WORK}/pkgconfig_consumer)
endif()

# The C custom-layer example: a layer type written in C (fkb_register_layer_callbacks), built
# against the installed headers; it writes a demo model using it and runs it. The Fortran
# custom-layer example implements the same `scale_shift` type and must run that file too.
run(${CMAKE_COMMAND} -S ${SRC}/../../examples/custom_layer_c -B ${WORK}/custom_c -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${PREFIX})
run(${CMAKE_COMMAND} --build ${WORK}/custom_c)
run(${WORK}/custom_c/custom_layer_c --demo ${WORK}/custom_c/demo.fkb)
run(${WORK}/custom/custom_layer ${WORK}/custom_c/demo.fkb)
