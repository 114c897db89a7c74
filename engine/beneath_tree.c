/* Dir's own whole-tree methods (walk, shift_tree), on walk.c's visitor beneath a Dir. */
#include "int.h"
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- shift_tree ------------------------------------------------------- */

struct idmap {
  uint32_t from_uid, from_gid, to_uid, to_gid, size;
  int keep_setid; /* put back the setuid/setgid bits chown clears */
};

static uint32_t map_one(uint32_t id, uint32_t from, uint32_t to, uint32_t size, int *hit) {
  if (id >= from && id - from < size) {
    *hit = 1;
    return to + (id - from);
  }
  return id;
}

/* Re-owns name in dirfd ("" with AT_EMPTY_PATH: dirfd itself) whose lstat is
   *st. chown clears setuid/setgid on a regular file: they are put back
   when m->keep_setid (an image's rootfs needs them; an app's own trees do
   not, and a setuid file an app made must not become host root's).
   Returns 0 or an errno; *changed is incremented when it was re-owned. */
static int shift_entry(int dirfd, const char *name, const struct stat *st, const struct idmap *m,
                       lua_Integer *changed) {
  int hit = 0;
  uid_t uid = map_one(st->st_uid, m->from_uid, m->to_uid, m->size, &hit);
  gid_t gid = map_one(st->st_gid, m->from_gid, m->to_gid, m->size, &hit);
  if (!hit) return 0;
  int flags = AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH);
  if (fchownat(dirfd, name, uid, gid, flags) != 0) return errno == ENOENT ? 0 : last_err();
  (*changed)++;
  if (m->keep_setid && S_ISREG(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID))) {
    int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : last_err();
    struct stat now;
    int err = fstat(fd, &now) != 0 ? last_err() : 0;
    /* only the file we re-owned, and only if it is still a regular file */
    if (!err && S_ISREG(now.st_mode) && now.st_ino == st->st_ino && now.st_dev == st->st_dev)
      err = ct_chmod_fd(fd, st->st_mode & 07777);
    close(fd);
    return err;
  }
  return 0;
}

struct shift {
  const struct idmap *m;
  lua_Integer changed;
};

/* Re-owns each entry; a mount point is re-owned, not entered. */
static int shift_visit(struct tw *v, struct frame *t, const char *name, const struct stat *st) {
  struct shift *sh = v->ctx;
  int err = shift_entry(t->fd, name, st, sh->m, &sh->changed);
  if (err) return tw_fail(v, err, NULL);
  if (!S_ISDIR(st->st_mode)) return 0;
  struct stat cst = *st;
  int cfd = tw_opendir(t, name, &cst);
  if (cfd >= 0) return tw_enter(v, cfd, -1, &cst);
  return errno == ENOENT || errno == EBUSY ? 0 : tw_fail(v, ct_classify(t->fd, name, errno), NULL);
}

/* An id (or the size) of a range that ends below 2^32: the size ids from it fit. */
static uint32_t get_id(lua_State *L, int arg, const char *k, uint32_t size) {
  lua_getfield(L, arg, k);
  lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
  lua_pop(L, 1);
  if (v < 0 || v > (lua_Integer)UINT32_MAX || v + size > (lua_Integer)UINT32_MAX + 1)
    luaL_error(L, "bad argument #%d (field '%s' must be an id, 0 .. 2^32-1, with its range below 2^32)",
               arg - 1, k);
  return (uint32_t)v;
}

static int overlap(uint32_t from, uint32_t to, uint32_t size) {
  return from != to && (uint64_t)from < (uint64_t)to + size && (uint64_t)to < (uint64_t)from + size;
}

/* Dir:shift_tree(rel, from, to [, {keep_setid = true}]) -> entries changed */
int d_shift_tree(lua_State *L) {
  const struct at a = {check_dir(L, 1)->fd, 1, 0};
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  struct idmap m;
  m.keep_setid = 1;
  if (!lua_isnoneornil(L, 5)) {
    luaL_checktype(L, 5, LUA_TTABLE);
    if (lua_getfield(L, 5, "keep_setid") != LUA_TNIL) m.keep_setid = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  m.size = get_id(L, 3, "size", 0); /* to's size is from's */
  m.from_uid = get_id(L, 3, "uid", m.size);
  m.from_gid = get_id(L, 3, "gid", m.size);
  m.to_uid = get_id(L, 4, "uid", m.size);
  m.to_gid = get_id(L, 4, "gid", m.size);
  /* an id shifted into the from range would be shifted again at its next hard link */
  luaL_argcheck(L, !overlap(m.from_uid, m.to_uid, m.size) && !overlap(m.from_gid, m.to_gid, m.size), 4,
                "overlaps the from range");
  lua_settop(L, 2);
  AT_REL(L, &a, 2, rel, display);
  struct shift sh = {&m, 0};
  struct fserr e = {0, NULL, NULL, NULL};
  int fd = ct_open_path(a.fd, rel);
  if (fd < 0) return ct_fail_at(L, errno, display, NULL);
  struct stat st;
  int err = fstat(fd, &st) != 0 ? fserr_set(&e, errno, display, "", NULL) : 0;
  if (!err && (err = shift_entry(fd, "", &st, &m, &sh.changed))) fserr_set(&e, err, display, "", NULL);
  if (err || !S_ISDIR(st.st_mode)) {
    close(fd);
    if (err) return fserr_push(L, &e);
    lua_pushinteger(L, sh.changed);
    return 1;
  }
  int dfd = openat(fd, ".", DIR_FLAGS);
  close(fd);
  if (dfd < 0) return ct_fail_at(L, errno, display, NULL);
  struct tw v = {.e = &e, .display = display, .entry = shift_visit, .ctx = &sh};
  if (tw_run(&v, dfd, -1, &st)) return fserr_push(L, &e);
  lua_pushinteger(L, sh.changed);
  return 1;
}

/* One Dir:walk record, appended to the table on top. */
static void push_walked(lua_State *L, lua_Integer i, const char *path, const struct stat *st, int opaque) {
  push_stat(L, st);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  ct_set_int(L, "rdev", (lua_Integer)st->st_rdev);
  /* diff of an own copy against its layers tells a rewritten file by it,
     as the extraction keeps each entry's time */
  ct_set_int(L, "mtime_nsec", (lua_Integer)st->st_mtim.tv_nsec);
  lua_pushboolean(L, opaque);
  lua_setfield(L, -2, "opaque");
  lua_rawseti(L, -2, i);
}

/* A Dir:walk in progress (tw_push's userdata: push_walked may raise). */
struct dwalk {
  struct tw v;
  lua_State *L;
  lua_Integer n;
};

static int walk_visit(struct tw *v, struct frame *t, const char *name, const struct stat *st) {
  struct dwalk *dw = v->ctx;
  struct stat now = *st;
  int cfd = S_ISDIR(st->st_mode) ? tw_opendir(t, name, &now) : -1;
  if (cfd < 0 && S_ISDIR(st->st_mode) && errno != EBUSY) return 0; /* swapped or removed: left out */
  int opaque = cfd >= 0 && ct_fd_opaque(cfd);
  int err = cfd < 0 ? 0 : tw_enter(v, cfd, -1, &now); /* a mount point is listed, not entered */
  /* after tw_enter took cfd over: a raise in push_walked leaks nothing */
  if (!err) push_walked(dw->L, ++dw->n, pb_str(&v->w.rel), &now, opaque);
  return err;
}

/* Dir:walk(rel) -> {{path=, rdev=, mtime_nsec=, opaque=, and the ct.fs.stat fields}, ...}:
   what is beneath rel, a directory before its contents, names in byte
   order, paths relative to rel; no symlink followed, no mount entered (a
   mount point is listed). opaque: trusted.overlay.opaque = "y" (a
   directory of an overlay upper). */
int d_walk(lua_State *L) {
  const struct at a = {check_dir(L, 1)->fd, 1, 0};
  lua_settop(L, 2);
  AT_REL(L, &a, 2, rel, display);
  struct dwalk *dw = tw_push(L, sizeof *dw);
  lua_newtable(L); /* nothing of Lua's raises from here to tw_run but push_walked */
  int fd = ct_open_beneath(a.fd, rel, DIR_FLAGS, 0);
  if (fd < 0) return ct_fail_at(L, errno, display, NULL);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close_keep_errno(fd);
    return ct_fail_at(L, errno, display, NULL);
  }
  struct fserr e = {0, NULL, NULL, NULL};
  dw->L = L;
  dw->v = (struct tw){.e = &e, .display = display, .entry = walk_visit, .ctx = dw};
  if (tw_run(&dw->v, fd, -1, &st)) return fserr_push(L, &e);
  return 1;
}

