#ifndef CT_LAYER_H
#define CT_LAYER_H
/* OCI whiteouts and their overlayfs forms: the names and tests that
   layer.c and archive.c (whiteouts = "oci" / "overlay") share. */
#include <sys/stat.h>

#define CT_WH_PREFIX ".wh."
#define CT_WH_OPAQUE ".wh..wh..opq"
#define CT_OPAQUE_XATTR "trusted.overlay.opaque"

enum ct_wh_kind {
  CT_WH_NONE,   /* an ordinary name */
  CT_WH_FILE,   /* ".wh.<name>": <name> is deleted; *target = name */
  CT_WH_OPAQUE_DIR, /* ".wh..wh..opq": the directory hides the layers below */
  CT_WH_META,   /* another ".wh..wh." name (aufs bookkeeping): ignored */
  CT_WH_BAD     /* ".wh." with nothing, "." or ".." after it */
};

/* What the last component `base` of an entry name is. */
enum ct_wh_kind ct_wh_kind(const char *base, const char **target);
/* Whether st is an overlay whiteout: a character device 0:0. */
int ct_is_overlay_whiteout(const struct stat *st);
/* Whether the directory open at fd carries trusted.overlay.opaque = "y". */
int ct_fd_opaque(int fd);
/* Marks the directory open at fd opaque; 0 or an errno. */
int ct_set_opaque(int fd);

/* A file whose content digest is known already (the extraction that wrote
   it hashed it as it wrote): a string of this struct in a Lua table, by
   the file's name relative to the tree. */
struct ct_known_file {
  ino_t ino;
  off_t size;
  unsigned char sha256[32];
};
/* Pushes ct.fs.tree_digest(path) ("sha256:<hex>", 1 value) or nil, msg,
   errno (3); a regular file the table at stack index known (0: none)
   holds with its inode and size is not read again. */
struct lua_State;
int ct_tree_digest_push(struct lua_State *L, const char *path, int known);

#endif
