# What `cmake --install` puts beside the binary and the man page, where
# Debian's tools look for it, and the .deb that `cpack -G DEB` makes of it.
#
#   bin/ctcli                                  (the binary, CMakeLists.txt)
#   share/man/man1/ctcli.1                     (CMakeLists.txt)
#   share/bash-completion/completions/ctcli    `ctcli completion bash`, at build time
#   share/zsh/vendor-completions/_ctcli        `ctcli completion zsh`, at build time
#   share/ctcli/*.schema.json                  the release manifest's JSON Schema
#   share/doc/ctcli/                           README.md, docs/, example manifests and hooks
#   /lib/systemd/system/ (prefix /usr)         ctcli@.service, ctcli-rotate-logs@.{service,timer}
#
# The directories are cache variables, so a distribution with other
# conventions (zsh's site-functions, /usr/lib/systemd/system) sets them.

if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  # Debian 12's packages ship their units in /lib (the merged-/usr move to
  # /usr/lib came after bookworm).
  set(_unitdir /lib/systemd/system)
else()
  # Relative to the prefix: /usr/local/lib/systemd/system is in systemd's
  # search path too.
  set(_unitdir ${CMAKE_INSTALL_LIBDIR}/systemd/system)
  if(CMAKE_INSTALL_LIBDIR MATCHES "/")
    set(_unitdir lib/systemd/system)
  endif()
endif()
set(CTCLI_SYSTEMD_UNITDIR "${_unitdir}" CACHE STRING "where the systemd units go (absolute, or relative to the prefix)")
set(CTCLI_BASH_COMPLETIONDIR "${CMAKE_INSTALL_DATADIR}/bash-completion/completions"
    CACHE STRING "where the bash completion goes")
set(CTCLI_ZSH_COMPLETIONDIR "${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions"
    CACHE STRING "where the zsh completion goes")

# Completions: generated from the command registry by the binary just built,
# so they complete exactly the commands and options it has.
set(_comp ${CMAKE_BINARY_DIR}/completions)
add_custom_command(
  OUTPUT ${_comp}/ctcli ${_comp}/_ctcli
  COMMAND ${CMAKE_COMMAND} -E make_directory ${_comp}
  COMMAND sh -c "\"$1\" completion bash > \"$2/ctcli\" && \"$1\" completion zsh > \"$2/_ctcli\""
          sh $<TARGET_FILE:ctcli> ${_comp}
  DEPENDS ctcli
  COMMENT "Generating the bash and zsh completions" VERBATIM)
add_custom_target(completions ALL DEPENDS ${_comp}/ctcli ${_comp}/_ctcli)
install(FILES ${_comp}/ctcli DESTINATION ${CTCLI_BASH_COMPLETIONDIR})
install(FILES ${_comp}/_ctcli DESTINATION ${CTCLI_ZSH_COMPLETIONDIR})

# The schema, for editors and validators pointed at a manifest ($schema).
file(GLOB _schemas CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/manifests/*.schema.json)
install(FILES ${_schemas} DESTINATION ${CMAKE_INSTALL_DATADIR}/ctcli)

install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/manifests/examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples/manifests)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/hooks/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples/hooks)

# The systemd template units, written at install time (not build time) and
# straight into their directory: their Exec lines name the binary where this
# install puts it, and the prefix is only final then (`cmake --install
# --prefix`, or cpack's /usr).
install(CODE "
  set(_bindir \"${CMAKE_INSTALL_BINDIR}\")
  if(NOT IS_ABSOLUTE \"\${_bindir}\")
    set(_bindir \"\${CMAKE_INSTALL_PREFIX}/\${_bindir}\")
  endif()
  set(_unitdir \"${CTCLI_SYSTEMD_UNITDIR}\")
  if(NOT IS_ABSOLUTE \"\${_unitdir}\")
    set(_unitdir \"\${CMAKE_INSTALL_PREFIX}/\${_unitdir}\")
  endif()
  message(STATUS \"Installing: \$ENV{DESTDIR}\${_unitdir}/ctcli@.service, ctcli-rotate-logs@.{service,timer}\")
  execute_process(
    COMMAND \"$<TARGET_FILE:ctcli-lua>\" \"${CMAKE_SOURCE_DIR}/tools/genunits.lua\"
            \"\$ENV{DESTDIR}\${_unitdir}\" \"\${_bindir}/ctcli\"
    RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR \"writing the systemd units failed (\${_rc})\")
  endif()
  foreach(_u ctcli@.service ctcli-rotate-logs@.service ctcli-rotate-logs@.timer)
    list(APPEND CMAKE_INSTALL_MANIFEST_FILES \"\${_unitdir}/\${_u}\")
  endforeach()
")

# The .deb: `cpack -G DEB` in a build configured with -DCMAKE_INSTALL_PREFIX=/usr
# (scripts/build-deb.sh). The same install rules as above, so the package and
# `cmake --install` cannot drift apart.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ctcli)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "ctcli maintainers")
set(CPACK_PACKAGE_CONTACT "ctcli maintainers <maintainers@users.noreply.h-seed-b270b200.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "release manager for runc containers on bare-metal hosts")
# The long description; CPack puts the summary above it and indents it.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "ctcli installs packages of OCI images and a release manifest into a root
directory, upgrades them with backups, hooks, migrations and automatic
rollback, and starts, stops, inspects and enters their apps, which run as
runc containers.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# runc >= 1.1 for the hardened mounts (rro); the libraries come from
# dpkg-shlibdeps, run on the installed binary.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "runc (>= 1.1), umoci, passwd")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "bash-completion")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Installed as `cmake --install` would with this prefix, through DESTDIR, so
# the absolute unit directory lands in the package and not on the build host.
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
