# Empty compiler generated dependencies file for portalfs_mountmgr.
# This may be replaced when dependencies are built.
