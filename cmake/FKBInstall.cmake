# Installs libfkb, the C/C++ headers, the Fortran modules, the CMake package
# (find_package(FKB) -> FKB::fkb) and a pkg-config file.
include(CMakePackageConfigHelpers)

install(TARGETS fkb EXPORT FKBTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES include/fkb/fkb.h include/fkb/fkb.hpp
              ${PROJECT_BINARY_DIR}/include/fkb/fkb_version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/fkb)
install(DIRECTORY ${PROJECT_BINARY_DIR}/mod/ DESTINATION ${FKB_INSTALL_MODDIR})

set(FKB_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/FKB)
install(EXPORT FKBTargets NAMESPACE FKB:: DESTINATION ${FKB_CMAKE_DIR})
export(EXPORT FKBTargets NAMESPACE FKB:: FILE ${PROJECT_BINARY_DIR}/FKBTargets.cmake)

configure_package_config_file(cmake/FKBConfig.cmake.in ${PROJECT_BINARY_DIR}/FKBConfig.cmake
  INSTALL_DESTINATION ${FKB_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/FKBConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/FKBConfig.cmake ${PROJECT_BINARY_DIR}/FKBConfigVersion.cmake
        DESTINATION ${FKB_CMAKE_DIR})

if(BUILD_SHARED_LIBS)
  set(FKB_PC_PRIVATE_LIBS "")
else()
  set(FKB_PC_PRIVATE_LIBS "-lgfortran -lm")
endif()
configure_file(cmake/fkb.pc.in ${PROJECT_BINARY_DIR}/fkb.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/fkb.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
