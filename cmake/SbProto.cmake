# The contracts at build time; generated code lives only in the build tree.
#
# sb_proto_library(<target> <dir> [SYSTEM <proto>...]): compiles every
#   <dir>/**/*.proto (google/api/*.proto and sb/api/options.proto included)
#   with protoc-c into the static library <target>, plus the SYSTEM protos
#   found under SB_PROTOBUF_INCLUDE (google/protobuf/descriptor.proto: the
#   option protos extend it and protoc-c emits an #include for every import).
#
# sb_api_table(<out.c>): the API table (sb/api.h) from every .proto of
#   SB_PROTO_DIR: protoc writes the descriptor set with source info (the rpc
#   comments become OpenAPI summaries) and the option protos as Python, then
#   tools/gen_api.py (Debian's python3-protobuf) writes <out.c>. Regenerated
#   when a .proto or the script changes.
find_program(PROTOC protoc REQUIRED)
find_path(SB_PROTOBUF_INCLUDE google/protobuf/descriptor.proto PATHS /usr/include REQUIRED
          DOC "where google/protobuf/descriptor.proto lives (libprotobuf-dev)")
# Debian's python3 carries python3-protobuf; a python3 earlier on PATH (pyenv) may not.
find_program(SB_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH REQUIRED)

function(sb_proto_library target dir)
  cmake_parse_arguments(PARSE_ARGV 2 arg "" "" "SYSTEM")
  file(GLOB_RECURSE rels CONFIGURE_DEPENDS RELATIVE ${dir} ${dir}/*.proto)
  set(gen ${CMAKE_CURRENT_BINARY_DIR}/gen)
  file(MAKE_DIRECTORY ${gen})
  set(all "")
  foreach(rel ${rels})
    list(APPEND all ${dir}/${rel})
  endforeach()
  set(srcs "")
  foreach(rel ${rels} ${arg_SYSTEM})
    if(EXISTS ${dir}/${rel})
      set(src ${dir}/${rel})
    else()
      set(src ${SB_PROTOBUF_INCLUDE}/${rel})
    endif()
    string(REGEX REPLACE "\\.proto$" "" base ${rel})
    add_custom_command(
      OUTPUT ${gen}/${base}.pb-c.c ${gen}/${base}.pb-c.h
      COMMAND ${PROTOC_C} --c_out=${gen} -I${dir} -I${SB_PROTO_DIR} -I${SB_PROTOBUF_INCLUDE} ${src}
      DEPENDS ${all} ${src}
      COMMENT "protoc-c ${rel}")
    list(APPEND srcs ${gen}/${base}.pb-c.c)
  endforeach()
  add_library(${target} STATIC ${srcs})
  target_include_directories(${target} PUBLIC ${gen})
  target_link_libraries(${target} PUBLIC PkgConfig::PROTOBUFC)
  if(SB_SANITIZE)
    target_link_libraries(${target} PRIVATE sb_flags)
  endif()
endfunction()

function(sb_api_table out)
  file(GLOB_RECURSE protos CONFIGURE_DEPENDS ${SB_PROTO_DIR}/*.proto)
  set(work ${CMAKE_CURRENT_BINARY_DIR}/api)
  set(inc -I${SB_PROTO_DIR} -I${SB_PROTOBUF_INCLUDE})
  set(script ${PROJECT_SOURCE_DIR}/tools/gen_api.py)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${work}/py
    COMMAND ${PROTOC} ${inc} --descriptor_set_out=${work}/api.desc --include_imports --include_source_info
            ${protos}
    COMMAND ${PROTOC} ${inc} --python_out=${work}/py common.proto google/api/http.proto
            google/api/annotations.proto sb/api/options.proto
    COMMAND ${SB_PYTHON3} ${script} ${work}/api.desc ${work}/py ${out}
    DEPENDS ${protos} ${script}
    COMMENT "API table from the .proto options")
endfunction()
