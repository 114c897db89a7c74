#ifndef CT_INT_H
#define CT_INT_H
/* Engine-internal helpers shared between engine files (never part of the Lua contract). */
#include "ct.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <zstd.h>

/* Chunk size of the read/write fallback copy and of reads into Lua. */
#define COPY_BUFSIZE (128 * 1024)
#define READ_CHUNK (64 * 1024)

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_CLOEXEC)

/* ---- util.c: used across the engine, the monitor included ---- */

void close_keep_errno(int fd);
/* errno after a failed call, never 0 (callers treat 0 as success). */
int last_err(void);
/* Writes all of p (retrying EINTR and short writes); 0 or an errno. */
int write_all(int fd, const void *p, size_t len);
/* Seconds on CLOCK_MONOTONIC, for deadlines; on CLOCK_REALTIME (since the epoch). */
double ct_mono(void);
double ct_now(void);

/* ---- proc.c: starting a program ---- */

/* Modes of ct_proc_start:
   CT_START_GROUP      own process group (not inside fork_call) + PDEATHSIG
   CT_START_DETACH     own process group always, no PDEATHSIG (it may outlive us)
   CT_START_FOREGROUND our process group + PDEATHSIG (interactive)
   CT_START_SESSION    own session, no PDEATHSIG (a monitor) */
enum { CT_START_GROUP = 1, CT_START_DETACH = 2, CT_START_FOREGROUND = 3, CT_START_SESSION = 4 };
enum { CT_START_FDS = 8 }; /* at most so many descriptors passed */
/* Starts argv with fds[i] on descriptor i for i < nfds (-1: keep ours;
   nothing else crosses exec); the pid, or -1 with *err and *what (the
   program or the cwd). */
pid_t ct_proc_start(const char *const *argv, char *const *envp, const char *cwd, const int *fds, int nfds,
                    int mode, int *err, const char **what);

/* A growing buffer: a child's output (spawn.c), a walk's relative path (walk.c). */
struct buf {
  char *p;
  size_t len, cap;
};
/* Room for need more bytes after len (doubling from 256); 0 or -1. */
int ct_buf_grow(struct buf *b, size_t need);

/* The process record of ct.proc (spawn's userdata, run's guard, fork_call's child). */
enum { CT_FD_IN, CT_FD_OUT, CT_FD_ERR }; /* our ends of the child's pipes */
struct proc {
  pid_t pid;   /* 0: none */
  pid_t owner; /* who started it: a forked copy of the state never touches it */
  int group;   /* the child leads its own process group */
  int pidfd;
  int reaped, status;
  int fds[3];         /* CT_FD_*, -1: none */
  struct buf out, err; /* what ct_proc_wait read from fds[CT_FD_OUT], fds[CT_FD_ERR] */
  char *cgroup; /* fork_call: the cgroup its child runs in (killed and removed when done) */
};
#define PROCESS_MT "ct.process"
/* Set in a fork_call child: processes it starts stay in its process group. */
extern int ct_in_sandbox_child;
struct proc *ct_proc_new(lua_State *L);
/* Records a started child (and opens its pidfd where the kernel has them). */
void ct_proc_started(struct proc *p, pid_t pid, int group);
/* kill(2) to the child (its group when it leads one); -1 with ESRCH once it is reaped. */
int ct_proc_kill(struct proc *p, int sig);
/* Kills a live child (its group, its cgroup), reaps it, releases everything. */
void ct_proc_release(struct proc *p);
/* The one wait (run, p:wait, fork_call): feeds in to fds[CT_FD_IN], reads
   the other two into out and err, until the child has exited and the pipes
   are at their end, or until deadline (0: none; then *timed_out unless it
   exited). With stop_at_exit, once the child is gone only what the pipes
   hold is read. Does not reap. 0, or an errno. */
int ct_proc_wait(struct proc *p, const char *in, size_t in_len, double deadline, int stop_at_exit,
                 int *timed_out);
int ct_reap(pid_t pid, int *status);
void ct_close_fd(int *fd);
void ct_decode_status(int status, int *code, int *sig);
/* Kills every process in the cgroup at path and removes it; 0 or an errno. */
int ct_cg_destroy(const char *path, double seconds);
/* Makes the cgroup at path (or finds it) and moves the caller into it;
   NULL, or the step that failed ("create cgroup", …) with errno. */
const char *ct_cg_join(const char *path);
int luaopen_ct_proc_sandbox(lua_State *L); /* adds fork_call, cgroup_kill */


/* ---- fs.c ---- */

mode_t check_mode(lua_State *L, int arg);
mode_t opt_mode(lua_State *L, int arg, mode_t def);
char *readlink_alloc(int dirfd, const char *name);
const char *type_name(mode_t m);
void push_stat(lua_State *L, const struct stat *st);
void ct_set_int(lua_State *L, const char *k, lua_Integer v); /* t[k] = v, t on top */
/* Reads up to limit bytes (to EOF) and pushes them; 0 or an errno. With
   size, a regular file's (fstat's) size: one buffer of that size. */
int push_read(lua_State *L, int fd, size_t limit, size_t size);
/* Writes data to base in dirfd via a temp file, fsync, rename, fsync dir. */
int atomic_write_at(int dirfd, const char *base, const char *data, size_t len, int from,
                    mode_t mode);

/* A failure inside a multi-step operation: the errno, the path it concerns
   and an optional message replacing strerror. */
struct fserr {
  int err;
  char *path;        /* malloc'd; NULL → `fallback` */
  const char *fallback;
  const char *msg;   /* NULL → strerror(err) */
};

int fserr_set(struct fserr *e, int err, const char *root, const char *rel, const char *msg);
int fserr_push(lua_State *L, struct fserr *e);

/* ---- directory listings ---- */

struct names {
  char **v;
  size_t n;
};

void names_free(struct names *ns);
/* The sorted entry names (no "." / "..") of the directory open at fd. */
int read_names(int fd, struct names *out);

/* ---- the iterative walker (see fs.c's header comment) ---- */

const char *pb_str(const struct buf *b);

struct frame {
  int fd;           /* the source directory; -1 while parked */
  int dfd;          /* the destination directory (copytree); -1 otherwise */
  struct stat st;   /* the source directory */
  dev_t ddev;       /* the destination directory, to verify a reopen */
  ino_t dino;
  int dual;
  struct names names;
  size_t next;      /* index of the next name */
  size_t plen;      /* length of the relative path of this directory */
};

struct walk {
  struct frame *f;
  size_t depth, cap;
  struct buf rel; /* relative path of the current entry / directory */
};

enum { EV_ENTRY = 1, EV_LEAVE = 2 };

/* The one tree walk (walk.c) that rmtree, du, copytree, tree_digest,
   remove_devices, shift_tree and Dir:walk ride on: every entry beneath a
   directory, names in byte order, looked up relative to its directory's
   descriptor, never through a symlink. Callbacks return 0 or an errno
   recorded with tw_fail; a directory is entered only by tw_enter. */
struct tw {
  struct walk w;
  struct fserr *e;
  const char *display; /* the root's name in messages */
  int nostat;          /* entry() gets no stat (st NULL) */
  int gone_fails;      /* an entry removed meanwhile fails the walk (else skipped) */
  int (*entry)(struct tw *v, struct frame *t, const char *name, const struct stat *st);
  int (*leave)(struct tw *v, struct frame *t); /* contents done (the root too), before it is left */
  int (*left)(struct tw *v, struct frame *t, const char *name); /* a directory left (not the root) */
  void *ctx;
};
/* Walks from the directory open at fd (dfd: copytree's destination, or -1),
   both taken over, whose stat is *st. 0 or an errno (in *v->e). */
int tw_run(struct tw *v, int fd, int dfd, const struct stat *st);
int tw_enter(struct tw *v, int fd, int dfd, const struct stat *st);
/* Records err against display/<current entry>; returns the first errno. */
int tw_fail(struct tw *v, int err, const char *msg);
/* Opens directory name in t, no symlink followed; it must still be the
   inode *st (else ESTALE), which is then its stat now, and no mount root
   (else EBUSY: the walk's policy decides). fd or -1 with errno. */
int tw_opendir(const struct frame *t, const char *name, struct stat *st);
/* Opens the regular file name in dirfd with flags (an access mode,
   O_APPEND, O_TRUNC) and nothing else: a FIFO or device is never opened
   (its O_PATH descriptor is checked, then reopened through /proc; without
   /proc a non-blocking open by name is checked). With want, it must still
   be that inode (else ESTALE). *st: its stat (the type when EINVAL, ELOOP).
   name NULL: dirfd is the file's own O_PATH descriptor (no fallback).
   A descriptor, or -1 with errno. */
int ct_open_regular(int dirfd, const char *name, int flags, const struct stat *want, struct stat *st);
/* Pushes a zeroed userdata of size bytes that begins with its struct tw,
   marked to-be-closed: a Lua error raised in a callback (out of memory)
   still frees the walk's descriptors and frames. */
void *tw_push(lua_State *L, size_t size);

/* copy_fds(in, out, limit, done, wside): up to limit bytes from in's offset
   to out (copy_file_range, else read/write); 0 or an errno, *wside when the
   writing side failed. */
int copy_fds(int in, int out, uint64_t limit, uint64_t *done, int *wside);

/* ---- beneath.c ---- */

int luaopen_ct_fs_beneath(lua_State *L); /* adds opendir, open to the table on top */
void ct_dir_methods(lua_State *L, const luaL_Reg *methods); /* adds them to Dir */
/* Whether paths are resolved with openat2 (else the O_NOFOLLOW walk); the C
   tests switch it, everything else reads CTCLI_NO_OPENAT2 once. */
int ct_beneath_openat2(void);
void ct_beneath_set_openat2(int on);

/* open_beneath / mkdirs of beneath.c for other engine files: rel resolved
   beneath dirfd, no symlink followed, ".." and absolute paths refused
   (EPERM / EINVAL). ct_open_beneath returns a descriptor or -1 with errno;
   ct_mkdirs_beneath 0 or an errno (*out: the last directory, DIR_FLAGS). */
int ct_open_beneath(int dirfd, const char *rel, int flags, mode_t mode);
int ct_mkdirs_beneath(int dirfd, const char *rel, mode_t mode, int *out);

/* ---- beneath.c: one resolution for ct.fs.<name> and Dir:<name> ---- */

#define DIR_MT "ct.fs.Dir"
#define FILE_MT "ct.fs.File"
struct handle {
  int fd;      /* -1 once closed */
  int in_root; /* a Dir: opendir's in_root */
};
/* Where an operation resolves its paths: beneath the Dir at stack index
   dir (fd its descriptor), or by name (dir 0, fd AT_FDCWD). in_root: the
   Dir's symlinks followed inside it (RESOLVE_IN_ROOT). */
struct at {
  int fd;
  int dir;
  int in_root;
};
/* A new closed handle (metatable mt) whose display path is the string at
   path_idx, on top of the stack. */
struct handle *ct_new_handle(lua_State *L, const char *mt, int path_idx);
struct handle *ct_handle_check(lua_State *L, int idx, const char *mt); /* raises if closed */
#define check_dir(L, idx) ct_handle_check(L, idx, DIR_MT)
#define check_file(L, idx) ct_handle_check(L, idx, FILE_MT)
int ct_handle_close(lua_State *L, const char *mt);
const char *ct_handle_path(lua_State *L, int idx);
/* A Dir at 1 or by name; the index of the first argument after it. */
int ct_at(lua_State *L, struct at *a);
/* The path at arg, display path pushed; NULL after pushing nil, msg,
   EINVAL for an absolute path or ".." beneath a Dir. */
const char *ct_at_rel(lua_State *L, const struct at *a, int arg, const char **display);
#define AT_REL(L, a, arg, rel, display)               \
  const char *display;                                \
  const char *rel = ct_at_rel(L, a, arg, &display); \
  if (!rel) return 3
int ct_at_open(const struct at *a, const char *rel, int flags, mode_t mode);
/* The parent of rel opened as a resolves it and rel's last component (malloc'd). */
int ct_at_parent(const struct at *a, const char *rel, int *pfd, char **base);
int ct_mkdirs(const struct at *a, const char *rel, mode_t mode, int *out);
int ct_open_file(const struct at *a, const char *rel, int flags, int create, int excl, mode_t mode,
                 int *out, const char **msg);
int ct_fix_mode(int fd, mode_t mode); /* the exact mode of a directory just made */
/* nil, "<display>: <msg or strerror>", err (ELOOP: "a symlink ..."). */
int ct_fail_at(lua_State *L, int err, const char *display, const char *msg);
/* After a failed open of name in dirfd: a symlink there is ELOOP. */
int ct_classify(int dirfd, const char *name, int err);
int ct_chmod_fd(int fd, mode_t mode); /* of an O_PATH descriptor */
int ct_open_path(int dirfd, const char *rel); /* O_PATH beneath, no symlink followed */
/* The rest of fd (size: fstat's, or 0) into Lua; more than max (>= 0) bytes is EFBIG. */
int ct_read_rest(lua_State *L, int fd, lua_Integer max, size_t size, const char *display);
lua_Integer ct_opt_max(lua_State *L, int arg); /* -1: none */
void ct_file_class(lua_State *L);
int d_walk(lua_State *L);
int d_shift_tree(lua_State *L);

/* ---- walk.c, copytree.c: whole trees ---- */

/* The path argument at arg without trailing slashes (a symlink's "l/"
   would resolve it); the argument is replaced by it. */
const char *check_tree_path(lua_State *L, int arg);
/* Removes rel (as a resolves it) and everything under it; a Dir's ""
   empties the Dir. Missing is fine. 0 or an errno (with *e). */
int rmtree_at(const struct at *a, const char *rel, const char *display, struct fserr *e);
/* copy_data(in, out, wside): all of in from its offset to out. */
int copy_data(int in, int out, int *wside);
int is_mount_root(int fd, const struct stat *parent, const struct stat *st);
int luaopen_ct_fs_trees(lua_State *L); /* adds rmtree, copytree, du (to Dir too) */

/* ---- archive.c: the job of one ct.archive call ---- */

struct archive;
struct archive_entry;
struct archive_entry_linkresolver;

#define BLOCK_SIZE 65536

/* A buffered writer to fd (archive_create.c), zstd level 3 in at most two
   workers when asked: ct.archive.create's and File:zstd_to's. Its calls
   return 0 or an errno (EIO with zerr: zstd's own failure). */
struct zout {
  int fd;
  ZSTD_CCtx *zc;
  unsigned char *out; /* what goes to fd next */
  size_t outlen;
  off_t written, flushed; /* bytes written to fd; handed to writeback */
  int raw_open;           /* a raw frame begun (archive_create.c) */
  const char *zerr;
};
int zout_open(struct zout *z, int fd, int zstd, int checksum);
int zout_write(struct zout *z, const void *p, size_t len);
/* Ends the frame and writes what is buffered. */
int zout_finish(struct zout *z);
void zout_free(struct zout *z);

struct job {
  struct archive *rd;                       /* an archive being read; create: name lookups */
  struct archive *wr;                       /* the disk, or an archive being written */
  struct archive_entry *entry;              /* create: the entry being built */
  struct archive_entry_linkresolver *links; /* create: hard link detection */
  int fd;                                   /* the archive file */
  char *tmp;                                /* create: temp file, removed unless renamed */
  char *buf;                                /* create: copy buffer */
  struct zout z;                            /* create: the writer to fd */
  int raw;                                  /* create: data stored in raw zstd blocks */
  struct stat st;                           /* the archive file's stat (reading) */
  int root, pfd;       /* extract: dest, and the last entry's parent ... */
  char *pdir;          /* ... by its name under dest */
  int progress; /* the stack index of the progress callback (0: none) */
  double last_progress;
  int err;                      /* the failure: errno ... */
  char msg[2 * PATH_MAX + 256]; /* ... and message */
};

/* Pushes a new job marked to-be-closed: it stays where it is on the stack. */
struct job *job_new(lua_State *L);
/* Frees what the job holds (again is harmless). */
void job_close(struct job *j);
/* Records the failure of the call; returns -1. */
int job_fail(struct job *j, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A libarchive failure on a: "<who>: [<entry>: ]<libarchive's message>"; -1. */
int job_fail_archive(struct job *j, struct archive *a, const char *who, const char *entry);
/* Frees the job's resources and returns nil, msg, errno. */
int job_error(lua_State *L, struct job *j);
/* progress(done, other) at most every 0.1 s (always when forced); its errors propagate. */
void job_progress(lua_State *L, struct job *j, lua_Integer done, lua_Integer other, int force);
/* Opens src (again, from its start) for reading, compression detected. 0 or -1. */
int open_reader(struct job *j, const char *src);

/* Options of the table at t (none: nil); a bad type raises. */
int opt_field(lua_State *L, int t, const char *k);
int opt_bool(lua_State *L, int t, const char *k);
lua_Integer opt_integer(lua_State *L, int t, const char *k, lua_Integer def, lua_Integer min);
const char *opt_string(lua_State *L, int t, const char *k, const char *def);
/* Pushes opts.progress (a function or nil); its index, or 0. */
int opt_progress(lua_State *L, int t);

/* A member name as "a/b/c" (no ".", repeated or trailing slashes) in out:
   NULL, or why it is refused ("" is the archive's root). */
const char *clean_name(const char *name, char *out, size_t size);
/* Whether name was met before in the table at seen (remembering it). */
int seen_before(lua_State *L, int seen, const char *name);
struct sha256_ctx;
/* Pushes the digest as 64 hex digits. */
void push_sha256_hex(lua_State *L, struct sha256_ctx *md);
int ar_extract(lua_State *L);
int ar_create(lua_State *L);

/* ---- mount.c ---- */

int luaopen_ct_fs_mount(lua_State *L); /* adds mount, umount, mounted */
int luaopen_ct_fs_tree(lua_State *L);  /* adds tree_digest (tree.c) */

#endif
