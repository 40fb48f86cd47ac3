// SPDX-License-Identifier: MIT
// inotify_watch PATH: prints each change event on PATH as lines "KIND name cookie" (one per
// kind the event has; ISDIR as a kind of its own), after a first line "ready". Linked
// statically: it runs in the tests' busybox containers, which have no libc of their own
// (and Debian's busybox-static has no inotifyd).
#include <sys/inotify.h>
#include <unistd.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: inotify_watch PATH\n");
    return 2;
  }
  int fd = inotify_init1(IN_CLOEXEC);
  constexpr unsigned kMask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY |
                             IN_CLOSE_WRITE | IN_ATTRIB;
  if (fd < 0 || inotify_add_watch(fd, argv[1], kMask) < 0) {
    std::perror(argv[1]);
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  const struct {
    unsigned bit;
    const char* kind;
  } kinds[] = {{IN_CREATE, "CREATE"},       {IN_DELETE, "DELETE"},       {IN_MOVED_FROM, "MOVED_FROM"},
               {IN_MOVED_TO, "MOVED_TO"},   {IN_MODIFY, "MODIFY"},       {IN_CLOSE_WRITE, "CLOSE_WRITE"},
               {IN_ATTRIB, "ATTRIB"},       {IN_ISDIR, "ISDIR"}};
  alignas(inotify_event) char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return 1;
    for (ssize_t off = 0; off < n;) {
      const auto* e = reinterpret_cast<const inotify_event*>(buf + off);
      for (const auto& k : kinds) {
        if (e->mask & k.bit) std::printf("%s %s %u\n", k.kind, e->len ? e->name : "", e->cookie);
      }
      off += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
    }
    std::fflush(stdout);
  }
}
