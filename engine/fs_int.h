#ifndef CT_FS_INT_H
#define CT_FS_INT_H
/* Engine-internal helpers shared by fs.c and beneath.c: the descriptor-based
   tree walker, failure records, reading into Lua. Not part of the Lua
   contract; nothing outside engine/ (and the C tests) uses them. */
#include "ct.h"

#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Chunk size of the read/write fallback copy and of reads into Lua. */
#define COPY_BUFSIZE (128 * 1024)
#define READ_CHUNK (64 * 1024)

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_CLOEXEC)

/* ---- small helpers (fs.c) ---- */

void close_keep_errno(int fd);
int last_err(void);
int write_all(int fd, const char *p, size_t len);
mode_t check_mode(lua_State *L, int arg);
mode_t opt_mode(lua_State *L, int arg, mode_t def);
unsigned check_id(lua_State *L, int arg);
char *join_path(const char *root, const char *rel);
char *readlink_alloc(int dirfd, const char *name);
const char *type_name(mode_t m);
void push_stat(lua_State *L, const struct stat *st);
/* Reads up to limit bytes (to EOF) and pushes them; 0 or an errno. */
int push_read(lua_State *L, int fd, size_t limit);
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

struct pbuf {
  char *p;
  size_t len, cap;
};

const char *pb_str(const struct pbuf *b);

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
  struct pbuf rel; /* relative path of the current entry / directory */
};

enum { EV_ENTRY = 1, EV_LEAVE = 2 };

void walk_free(struct walk *w);
struct frame *walk_top(struct walk *w);
int walk_push(struct walk *w, int fd, int dfd, const struct stat *st);
int walk_next(struct walk *w, const char **name);
int walk_pop(struct walk *w);
const char *walk_popped_name(struct walk *w);

/* Empties the directory open at fd (taken over: closed on return), whose
   parent's stat is *parent (NULL when unknown: then only statx tells a
   mount root). Never follows a symlink, never crosses a mount. Failures are
   recorded in *e against display/<rel>. Returns 0 or an errno. */
int empty_dir_fd(int fd, const struct stat *parent, const char *display, struct fserr *e);
/* Apparent bytes and file count of the directory open at fd (taken over),
   symlinks not followed, hard links once. Returns 0 or an errno (with *e). */
/* copytree_fd(sfd, src, dst, e): copy the directory open at sfd (closed
   here) to the new directory dst; src is its name in messages. */
int copytree_fd(int sfd, const char *src, const char *dst, struct fserr *e);
/* copy_fds(in, out, limit, done, wside): up to limit bytes from in's offset
   to out (copy_file_range, else read/write); 0 or an errno, *wside when the
   writing side failed. */
int copy_fds(int in, int out, uint64_t limit, uint64_t *done, int *wside);
int du_fd(int fd, const char *display, lua_Integer *bytes, lua_Integer *files, struct fserr *e);

/* ---- hard link table ---- */

struct hl_entry {
  dev_t dev;
  ino_t ino;
  char *rel; /* NULL in du, which only counts */
  int used;
};

struct hlset {
  struct hl_entry *v;
  size_t cap, n;
};

struct hl_entry *hl_find(struct hlset *h, dev_t dev, ino_t ino);
int hl_add(struct hlset *h, dev_t dev, ino_t ino, const char *rel);
void hl_free(struct hlset *h);

/* Bytes that collapse(length) removes from a file of stat *st: length
   rounded down to the block size, never reaching the end; 0 when none. */
off_t collapse_len(const struct stat *st, off_t length);

/* ---- beneath.c ---- */

int luaopen_ct_fs_beneath(lua_State *L); /* adds opendir to the table on top */
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

/* ---- mount.c ---- */

int luaopen_ct_fs_mount(lua_State *L); /* adds mount_overlay, umount, mounted */
int luaopen_ct_fs_tree(lua_State *L);  /* adds tree_digest (tree.c) */

#endif
