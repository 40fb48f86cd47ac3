file(REMOVE_RECURSE
  "CMakeFiles/portalfs_testutil.dir/testutil/main.cpp.o"
  "CMakeFiles/portalfs_testutil.dir/testutil/main.cpp.o.d"
  "CMakeFiles/portalfs_testutil.dir/testutil/temp_dir.cpp.o"
  "CMakeFiles/portalfs_testutil.dir/testutil/temp_dir.cpp.o.d"
  "libportalfs_testutil.a"
  "libportalfs_testutil.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/portalfs_testutil.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
