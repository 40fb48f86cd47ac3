# Empty compiler generated dependencies file for portalfs_common.
# This may be replaced when dependencies are built.
