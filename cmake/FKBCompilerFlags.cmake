# Compiler flags of the FKB library. No -ffast-math/-Ofast: results must match Keras.
if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

option(FKB_NATIVE_ARCH "Tune for this machine's CPU (-march=native); OFF for portable binaries" ON)

set(FKB_Fortran_FLAGS "")
set(FKB_C_FLAGS "")
if(CMAKE_Fortran_COMPILER_ID STREQUAL "GNU")
  # -frecursive: local arrays on the stack, so predict is reentrant across threads.
  # -fwrapv: the integer hash used for legacy weight initialisation relies on wrap-around.
  list(APPEND FKB_Fortran_FLAGS
    $<$<COMPILE_LANGUAGE:Fortran>:-frecursive -fwrapv -fimplicit-none -Wall -Wno-unused-dummy-argument -Wno-maybe-uninitialized -Wno-uninitialized>)
  # Vectorised elementwise kernels (activations) need vector compares/blends: the CPU's own
  # instruction set, and -fno-trapping-math so that gfortran may if-convert (FKB never enables
  # floating-point traps itself). -ffp-contract=off keeps a*b+c as two IEEE roundings, like
  # the reference, instead of fusing it into an FMA. None of these changes a result.
  list(APPEND FKB_Fortran_FLAGS $<$<COMPILE_LANGUAGE:Fortran>:-fno-trapping-math -ffp-contract=off>)
  if(FKB_NATIVE_ARCH AND NOT CMAKE_CROSSCOMPILING)
    list(APPEND FKB_Fortran_FLAGS $<$<COMPILE_LANGUAGE:Fortran>:-march=native>)
  endif()
elseif(CMAKE_Fortran_COMPILER_ID MATCHES "Intel")
  list(APPEND FKB_Fortran_FLAGS $<$<COMPILE_LANGUAGE:Fortran>:-recursive -fp-model=precise>)
endif()
if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  list(APPEND FKB_C_FLAGS $<$<COMPILE_LANGUAGE:C>:-Wall -Wextra>)
endif()
