# The Debian package (deploy/package.sh): what `cmake --install` puts where, and CPack's DEB
# generator. Configure with -DMIGRAINE_MAPPINGS_DIR=/usr/share/migraine-connector so the binary
# finds the installed code tables by default.
set(MIGRAINE_DEBIAN ${CMAKE_SOURCE_DIR}/deploy/debian)

install(TARGETS migraine-connector RUNTIME DESTINATION bin)
install(FILES ${CMAKE_SOURCE_DIR}/mappings/code-tables.json ${CMAKE_SOURCE_DIR}/mappings/clinic-record-v1.schema.json
        DESTINATION share/migraine-connector)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/mappings/profiles DESTINATION share/migraine-connector)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/connector.example.jsonc DESTINATION /etc/migraine-connector
        RENAME connector.jsonc)
install(FILES ${MIGRAINE_DEBIAN}/migraine-connector.service DESTINATION /lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${MIGRAINE_DEBIAN}/copyright DESTINATION share/doc/migraine-connector)

# Debian wants man pages compressed, reproducibly (-n: no name or time stamp in the gzip header).
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/migraine-connector.1.gz
                   COMMAND gzip -9n -c ${MIGRAINE_DEBIAN}/migraine-connector.1 > ${CMAKE_BINARY_DIR}/migraine-connector.1.gz
                   DEPENDS ${MIGRAINE_DEBIAN}/migraine-connector.1)
add_custom_target(man_page ALL DEPENDS ${CMAKE_BINARY_DIR}/migraine-connector.1.gz)
install(FILES ${CMAKE_BINARY_DIR}/migraine-connector.1.gz DESTINATION share/man/man1)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME migraine-connector)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "clinic records to FHIR R4 for the clinic's EHR, exactly once, in order")
set(CPACK_PACKAGE_CONTACT "migraine-connector maintainers <connector@clinic.example>")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # migraine-connector_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)   # Depends: from the libraries actually linked (dpkg-shlibdeps)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${MIGRAINE_DEBIAN}/conffiles ${MIGRAINE_DEBIAN}/postinst ${MIGRAINE_DEBIAN}/prerm ${MIGRAINE_DEBIAN}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
