/* Small helpers every engine file shares (see int.h): writes, errno, the monotonic clock, atomic file replacement. */
#include "int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

void close_keep_errno(int fd) {
  int e = errno;
  if (fd >= 0) close(fd);
  errno = e;
}

int last_err(void) { return errno ? errno : EIO; }

int write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return last_err();
    if (n == 0) return EIO;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static double clock_seconds(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double ct_mono(void) { return clock_seconds(CLOCK_MONOTONIC); }

double ct_now(void) { return clock_seconds(CLOCK_REALTIME); }

/* ---- atomic replacement: temp file + fsync + rename + fsync dir -------- */

struct atomic {
  int dirfd; /* borrowed */
  int fd;
  char tmp[NAME_MAX + 1];
};

/* Creates a temp file next to `base` in dirfd. Returns 0 or an errno. */
static int atomic_begin(struct atomic *a, int dirfd, const char *base) {
  a->dirfd = dirfd;
  a->fd = -1;
  a->tmp[0] = '\0';
  for (int tries = 0; tries < 100; tries++) {
    unsigned char rnd[6];
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)tries;
      memcpy(rnd, &x, sizeof rnd);
    }
    /* the base is cut so the name fits NAME_MAX */
    snprintf(a->tmp, sizeof a->tmp, ".%.200s.%02x%02x%02x%02x%02x%02x.tmp", base, rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5]);
    a->fd = openat(dirfd, a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (a->fd >= 0) return 0;
    if (errno != EEXIST) return last_err();
  }
  return EEXIST;
}

static void atomic_abort(struct atomic *a) {
  int e = errno;
  if (a->fd >= 0) {
    close(a->fd);
    a->fd = -1;
  }
  if (a->tmp[0]) unlinkat(a->dirfd, a->tmp, 0);
  a->tmp[0] = '\0';
  errno = e;
}

/* mode, fsync, rename over `base`, fsync the directory. Returns 0 or an
   errno; the temp file is gone either way. */
static int atomic_commit(struct atomic *a, const char *base, mode_t mode) {
  int err = 0;
  if (fchmod(a->fd, mode) != 0 || fsync(a->fd) != 0) err = errno;
  if (!err) {
    int r = close(a->fd);
    a->fd = -1;
    if (r != 0) err = errno;
  }
  if (!err && renameat(a->dirfd, a->tmp, a->dirfd, base) != 0) err = errno;
  if (err) {
    atomic_abort(a);
    return err;
  }
  a->tmp[0] = '\0';
  if (fsync(a->dirfd) != 0 && errno != EINVAL) return errno;
  return 0;
}

/* Writes data (or the rest of fd `from` when data is NULL) to base in
   dirfd atomically. Returns 0 or an errno. */
int atomic_write_at(int dirfd, const char *base, const char *data, size_t len, int from,
                           mode_t mode) {
  struct atomic a;
  int err = atomic_begin(&a, dirfd, base);
  if (err) return err;
  if (data) {
    err = write_all(a.fd, data, len);
  } else {
    int wside;
    err = copy_data(from, a.fd, &wside);
  }
  if (err) {
    atomic_abort(&a);
    return err;
  }
  return atomic_commit(&a, base, mode);
}
