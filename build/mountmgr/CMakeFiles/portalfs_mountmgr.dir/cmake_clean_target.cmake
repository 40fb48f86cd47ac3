file(REMOVE_RECURSE
  "libportalfs_mountmgr.a"
)
