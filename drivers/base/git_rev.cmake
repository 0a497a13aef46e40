# Run at every build (cmake -P) in a git checkout: writes OUT, a header that defines
# STATION_GIT_REV as `git describe --always --dirty` of SOURCE_DIR, so that `station
# --version` names the commit a binary was built from, not the one its build directory was
# configured at. OUT is rewritten only when the name changed (nothing is recompiled
# otherwise). If git fails, an existing OUT is kept and a new one says "unknown".
# The project's policies (a script run with -P has none set).
cmake_minimum_required(VERSION 3.18)
execute_process(COMMAND "${GIT}" -C "${SOURCE_DIR}" describe --always --dirty
                OUTPUT_VARIABLE rev OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR rev STREQUAL "")
  if(EXISTS "${OUT}")
    return()
  endif()
  set(rev "unknown")
endif()
# A tag may hold characters that do not belong in a C string; they become '_'.
string(REGEX REPLACE "[^A-Za-z0-9._+-]" "_" rev "${rev}")
set(text "/* Written by git_rev.cmake at build time. */\n#define STATION_GIT_REV \"${rev}\"\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
