# cmake -DIN=services/registry.txt -DOUT=x.c -P registry.cmake
# Writes the table behind sb/registry.h from the registry file.
file(STRINGS ${IN} lines)
set(rows "")
set(n 0)
foreach(l ${lines})
  string(STRIP "${l}" l)
  if(l STREQUAL "" OR l MATCHES "^#")
    continue()
  endif()
  string(REGEX MATCH "^([a-z][a-z0-9_]*)[ \t]+([0-9]+)[ \t]+([0-9]+)$" m "${l}")
  if(NOT m)
    message(FATAL_ERROR "${IN}: bad line '${l}' (want: name grpc_port admin_port)")
  endif()
  string(APPEND rows "    {\"${CMAKE_MATCH_1}\", ${CMAKE_MATCH_2}, ${CMAKE_MATCH_3}},\n")
  math(EXPR n "${n} + 1")
endforeach()
file(WRITE ${OUT}.tmp "/* generated from services/registry.txt by cmake/registry.cmake; do not edit */
#include \"sb/registry.h\"
const sb_registry_entry_t sb_registry[] = {
${rows}};
const size_t sb_registry_n = ${n};
")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
