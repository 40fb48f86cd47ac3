# Empty dependencies file for portalfs_testutil.
# This may be replaced when dependencies are built.
