# SPDX-License-Identifier: MIT
# portalfs_target_defaults(tgt): the project's warning set, applied per target.
function(portalfs_target_defaults tgt)
  target_compile_options(${tgt} PRIVATE -Wall -Wextra -Wshadow -Wnon-virtual-dtor
                         -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wformat=2)
  if(PORTALFS_WERROR)
    target_compile_options(${tgt} PRIVATE -Werror)
  endif()
endfunction()
