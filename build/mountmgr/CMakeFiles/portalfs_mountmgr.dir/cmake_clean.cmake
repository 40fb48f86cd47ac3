file(REMOVE_RECURSE
  "CMakeFiles/portalfs_mountmgr.dir/control_protocol.cpp.o"
  "CMakeFiles/portalfs_mountmgr.dir/control_protocol.cpp.o.d"
  "libportalfs_mountmgr.a"
  "libportalfs_mountmgr.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/portalfs_mountmgr.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
