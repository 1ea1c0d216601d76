# sb_proto_library(<target> <dir>): compiles every <dir>/*.proto with protoc-c
# at build time into the static library <target>; generated code lives only in
# the build tree.
function(sb_proto_library target dir)
  file(GLOB protos CONFIGURE_DEPENDS ${dir}/*.proto)
  set(gen ${CMAKE_CURRENT_BINARY_DIR}/gen)
  file(MAKE_DIRECTORY ${gen})
  set(srcs "")
  foreach(p ${protos})
    get_filename_component(n ${p} NAME_WE)
    add_custom_command(
      OUTPUT ${gen}/${n}.pb-c.c ${gen}/${n}.pb-c.h
      COMMAND ${PROTOC_C} --c_out=${gen} -I${dir} -I${SB_PROTO_DIR} ${p}
      DEPENDS ${protos}
      COMMENT "protoc-c ${n}.proto")
    list(APPEND srcs ${gen}/${n}.pb-c.c)
  endforeach()
  add_library(${target} STATIC ${srcs})
  target_include_directories(${target} PUBLIC ${gen})
  target_link_libraries(${target} PUBLIC PkgConfig::PROTOBUFC)
  if(SB_SANITIZE)
    target_link_libraries(${target} PRIVATE sb_flags)
  endif()
endfunction()
