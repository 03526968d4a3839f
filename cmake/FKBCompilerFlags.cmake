# Compiler flags of the FKB library. No -ffast-math/-Ofast: results must match Keras.
if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

set(FKB_Fortran_FLAGS "")
set(FKB_C_FLAGS "")
if(CMAKE_Fortran_COMPILER_ID STREQUAL "GNU")
  # -frecursive: local arrays on the stack, so predict is reentrant across threads.
  # -fwrapv: the integer hash used for legacy weight initialisation relies on wrap-around.
  list(APPEND FKB_Fortran_FLAGS
    $<$<COMPILE_LANGUAGE:Fortran>:-frecursive -fwrapv -fimplicit-none -Wall -Wno-unused-dummy-argument -Wno-maybe-uninitialized -Wno-uninitialized>)
elseif(CMAKE_Fortran_COMPILER_ID MATCHES "Intel")
  list(APPEND FKB_Fortran_FLAGS $<$<COMPILE_LANGUAGE:Fortran>:-recursive -fp-model=precise>)
endif()
if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  list(APPEND FKB_C_FLAGS $<$<COMPILE_LANGUAGE:C>:-Wall -Wextra>)
endif()
