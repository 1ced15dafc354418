# All build options of kaoping in one place (STYLE.md "Build").
set(CMAKE_C_STANDARD 11)
set(CMAKE_C_STANDARD_REQUIRED ON)
set(CMAKE_C_EXTENSIONS OFF)
if(NOT CMAKE_BUILD_TYPE)
  set(CMAKE_BUILD_TYPE RelWithDebInfo CACHE STRING "Build type" FORCE)
endif()

set(KP_SANITIZE "" CACHE STRING "Sanitizers to build with, e.g. address,undefined")
set(KP_TEST_TIMEOUT 300 CACHE STRING "Default per-test timeout in seconds")
# libFuzzer binaries of tests/fuzz (clang only; tests/fuzz/run.sh configures it with
# KP_SANITIZE=fuzzer-no-link,address,undefined). The corpus replay tests are always built.
option(KP_FUZZ "Build the libFuzzer targets of tests/fuzz (clang)" OFF)

add_compile_options(-Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes
                    -Wshadow -Wformat=2 -Wno-format-nonliteral)
# POSIX APIs (clock_gettime, strdup, kill, ...) without GNU extensions.
add_compile_definitions(_POSIX_C_SOURCE=200809L)

if(KP_SANITIZE)
  add_compile_options(-fsanitize=${KP_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${KP_SANITIZE})
endif()
