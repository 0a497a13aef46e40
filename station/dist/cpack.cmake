# `cpack -G DEB` (run in a build tree configured with -DCMAKE_INSTALL_PREFIX=/usr): a Debian
# package of everything `cmake --install` lays out (the program, example profiles,
# documentation, the configuration example, the systemd unit, sysusers and tmpfiles entries,
# the udev example, station.pc), its Depends computed from the program's shared libraries by
# dpkg-shlibdeps. The maintainer scripts in debian/ make the user and the ledger directory on
# install and leave the ledger alone on removal and purge. Included from the top level, after
# every install rule.
set(CPACK_PACKAGE_NAME station)
set(CPACK_PACKAGE_VENDOR "Provisioning Station")
set(CPACK_PACKAGE_CONTACT "Provisioning Station maintainers <station@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "factory provisioning station for device certificates over serial ports and HTTP")
set(CPACK_PACKAGE_DESCRIPTION
    "Provisions boards on a factory line: asks each board for a CSR over its serial port (or
the device tool over HTTP), checks it, signs it with the factory's local CA in an HSM
(PKCS#11), records the certificate durably in a ledger, writes the files back and proves
the board holds the key. Live view, operator console in the browser, event stream.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The maintainer scripts run systemd-sysusers and systemd-tmpfiles.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "softhsm2")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# The paths the tree was configured with are those of the package: no relocation.
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_SET_DESTDIR ON)
set(STATION_CONFDIR_FULL ${CMAKE_INSTALL_FULL_SYSCONFDIR}/station)
foreach(d SYSUSERS TMPFILES)
  if(IS_ABSOLUTE ${STATION_${d}DIR})
    set(STATION_${d}_FULL ${STATION_${d}DIR})
  else()
    set(STATION_${d}_FULL ${CMAKE_INSTALL_PREFIX}/${STATION_${d}DIR})
  endif()
endforeach()
configure_file(${CMAKE_CURRENT_LIST_DIR}/debian/conffiles.in ${CMAKE_BINARY_DIR}/debian/conffiles @ONLY)
configure_file(${CMAKE_CURRENT_LIST_DIR}/debian/postinst.in ${CMAKE_BINARY_DIR}/debian/postinst @ONLY)
configure_file(${CMAKE_CURRENT_LIST_DIR}/debian/prerm ${CMAKE_BINARY_DIR}/debian/prerm COPYONLY)
configure_file(${CMAKE_CURRENT_LIST_DIR}/debian/postrm ${CMAKE_BINARY_DIR}/debian/postrm COPYONLY)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_BINARY_DIR}/debian/conffiles ${CMAKE_BINARY_DIR}/debian/postinst
    ${CMAKE_BINARY_DIR}/debian/prerm ${CMAKE_BINARY_DIR}/debian/postrm)
include(CPack)
