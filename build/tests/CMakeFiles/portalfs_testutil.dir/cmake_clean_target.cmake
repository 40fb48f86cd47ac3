file(REMOVE_RECURSE
  "libportalfs_testutil.a"
)
