# Empty compiler generated dependencies file for portalfs_policy.
# This may be replaced when dependencies are built.
