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
foreach(lang fortran c cpp)
  run(${CMAKE_COMMAND} -S ${SRC}/${lang} -B ${WORK}/${lang} -G ${GENERATOR}
      -DCMAKE_PREFIX_PATH=${PREFIX})
  run(${CMAKE_COMMAND} --build ${WORK}/${lang})
  run(${WORK}/${lang}/consumer ${CASES}/spcam_like_float32)
endforeach()

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
  run(${WORK}/pkgconfig_consumer ${CASES}/spcam_like_float32)
endif()
