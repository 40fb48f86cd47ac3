file(REMOVE_RECURSE
  "CMakeFiles/portalfs_policy.dir/access.cpp.o"
  "CMakeFiles/portalfs_policy.dir/access.cpp.o.d"
  "CMakeFiles/portalfs_policy.dir/grant.cpp.o"
  "CMakeFiles/portalfs_policy.dir/grant.cpp.o.d"
  "CMakeFiles/portalfs_policy.dir/id_map.cpp.o"
  "CMakeFiles/portalfs_policy.dir/id_map.cpp.o.d"
  "CMakeFiles/portalfs_policy.dir/manifest.cpp.o"
  "CMakeFiles/portalfs_policy.dir/manifest.cpp.o.d"
  "libportalfs_policy.a"
  "libportalfs_policy.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/portalfs_policy.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
