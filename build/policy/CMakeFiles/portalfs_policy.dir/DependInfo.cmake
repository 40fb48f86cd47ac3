
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/policy/access.cpp" "policy/CMakeFiles/portalfs_policy.dir/access.cpp.o" "gcc" "policy/CMakeFiles/portalfs_policy.dir/access.cpp.o.d"
  "/work/main/policy/grant.cpp" "policy/CMakeFiles/portalfs_policy.dir/grant.cpp.o" "gcc" "policy/CMakeFiles/portalfs_policy.dir/grant.cpp.o.d"
  "/work/main/policy/id_map.cpp" "policy/CMakeFiles/portalfs_policy.dir/id_map.cpp.o" "gcc" "policy/CMakeFiles/portalfs_policy.dir/id_map.cpp.o.d"
  "/work/main/policy/manifest.cpp" "policy/CMakeFiles/portalfs_policy.dir/manifest.cpp.o" "gcc" "policy/CMakeFiles/portalfs_policy.dir/manifest.cpp.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build/common/CMakeFiles/portalfs_common.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
