# WEIR_STATIC: link every executable fully statically, so weir, weir-cni and
# weir-init run on a node that has none of libiptc, libnl, spdlog or fmt
# (weir-cni is copied into the host's /opt/cni/bin).
#
# Included from the root CMakeLists.txt after find_package(PkgConfig) and
# before the library look-ups, so the ordinary pkg_check_modules() and
# find_package(spdlog) calls there pick up what is set here:
#   - libip4tc/libip6tc/libnl/libmnl come from the archives built by
#     scripts/build-static-deps.sh (Debian ships no .a for them), libnftnl
#     from Debian's own archive, copied there with a .pc file;
#   - spdlog and fmt become header-only (Debian ships only their .so).
# With WEIR_NFTABLES=OFF (scripts/build-static.sh sets it when libmnl.a could
# not be built) libmnl and libnftnl are not needed.

set(WEIR_STATIC_PREFIX "${CMAKE_SOURCE_DIR}/build-static-deps/prefix"
    CACHE PATH "Prefix holding the static archives from scripts/build-static-deps.sh")
if(NOT EXISTS "${WEIR_STATIC_PREFIX}/lib/pkgconfig/libip4tc.pc")
  message(FATAL_ERROR "WEIR_STATIC: no static archives in ${WEIR_STATIC_PREFIX}; "
                      "run scripts/build-static-deps.sh (or scripts/build-static.sh) first")
endif()
if(WEIR_NFTABLES AND NOT EXISTS "${WEIR_STATIC_PREFIX}/lib/pkgconfig/libmnl.pc")
  message(FATAL_ERROR "WEIR_STATIC: no libmnl.a in ${WEIR_STATIC_PREFIX} (build-static-deps.sh could not build it); "
                      "configure with -DWEIR_NFTABLES=OFF for a static build without the nftables backend")
endif()

# Only our .pc files, so nothing resolves to the system's shared objects.
set(ENV{PKG_CONFIG_LIBDIR} "${WEIR_STATIC_PREFIX}/lib/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(CMAKE_FIND_LIBRARY_SUFFIXES .a)

# Sections per function and --gc-sections drop the library code weir never
# calls, which also keeps glibc's NSS functions (getpwnam, getaddrinfo, ...)
# out of the binaries: a static glibc cannot load NSS modules.
add_compile_options(-ffunction-sections -fdata-sections)
add_link_options(-static -Wl,--gc-sections)

find_package(Threads REQUIRED)

# Header-only stand-ins defining every target of fmt's and spdlog's export
# sets: their config files then see the targets exist and define nothing, so
# code linking spdlog::spdlog or fmt::fmt builds unchanged.
foreach(t fmt::fmt fmt::fmt-header-only)
  add_library(${t} INTERFACE IMPORTED)
  set_target_properties(${t} PROPERTIES INTERFACE_COMPILE_DEFINITIONS "FMT_HEADER_ONLY=1")
endforeach()
foreach(t spdlog::spdlog spdlog::spdlog_header_only)
  add_library(${t} INTERFACE IMPORTED)
  set_target_properties(${t} PROPERTIES
    INTERFACE_COMPILE_DEFINITIONS "SPDLOG_HEADER_ONLY;SPDLOG_FMT_EXTERNAL"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;fmt::fmt-header-only")
endforeach()

message(STATUS "WEIR_STATIC: static archives from ${WEIR_STATIC_PREFIX}, spdlog/fmt header-only")
