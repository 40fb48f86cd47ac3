file(REMOVE_RECURSE
  "CMakeFiles/portalfs_common.dir/log.cpp.o"
  "CMakeFiles/portalfs_common.dir/log.cpp.o.d"
  "libportalfs_common.a"
  "libportalfs_common.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/portalfs_common.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
