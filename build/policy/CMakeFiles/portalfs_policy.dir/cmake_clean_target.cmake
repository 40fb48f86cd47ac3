file(REMOVE_RECURSE
  "libportalfs_policy.a"
)
