file(REMOVE_RECURSE
  "libportalfs_common.a"
)
