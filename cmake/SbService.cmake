# sb_add_service(<name>): builds services/<name> into the executable sb-<name>.
# Every .c in the folder is compiled; migrations/NNNN_<what>.sql are embedded
# as the array sb_<name>_migrations (see sb/pg.h, sb_migration_t); the files
# under templates/, when there is such a folder, as sb_<name>_templates
# (sb/template.h).
set(SB_CMAKE_DIR ${CMAKE_CURRENT_LIST_DIR})

function(sb_embed_migrations target name dir)
  file(GLOB sqls CONFIGURE_DEPENDS ${dir}/*.sql)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${name}_migrations.c)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DNAME=${name} -DDIR=${dir} -DOUT=${out} -P
            ${SB_CMAKE_DIR}/embed_migrations.cmake
    DEPENDS ${sqls} ${SB_CMAKE_DIR}/embed_migrations.cmake
    COMMENT "Embedding ${name} migrations")
  target_sources(${target} PRIVATE ${out})
endfunction()

function(sb_embed_templates target name dir)
  file(GLOB_RECURSE files CONFIGURE_DEPENDS ${dir}/*)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${name}_templates.c)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DNAME=${name} -DDIR=${dir} -DOUT=${out} -P
            ${SB_CMAKE_DIR}/embed_files.cmake
    DEPENDS ${files} ${SB_CMAKE_DIR}/embed_files.cmake
    COMMENT "Embedding ${name} templates")
  target_sources(${target} PRIVATE ${out})
endfunction()

function(sb_add_service name)
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.c)
  add_executable(sb-${name} ${srcs})
  sb_embed_migrations(sb-${name} ${name} ${CMAKE_CURRENT_SOURCE_DIR}/migrations)
  if(IS_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/templates)
    sb_embed_templates(sb-${name} ${name} ${CMAKE_CURRENT_SOURCE_DIR}/templates)
  endif()
  target_link_libraries(sb-${name} PRIVATE sb_common sb_flags)
endfunction()
