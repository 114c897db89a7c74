/* ct.hash: digests and ed25519 signatures through OpenSSL 3's libcrypto.

   Every OpenSSL object a function creates is held by a guard userdata made
   before the first allocation, so it is freed on every path: explicitly on
   the normal ones, by __gc if a Lua error (out of memory) unwinds past us. */
#include "ct.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define HASHER_MT "ct.hash.sha256"
#define GUARD_MT "ct.hash.guard"

#define FILE_BUFSIZE (1024 * 1024)
#define ED25519_SIGLEN 64

/* ---- helpers ---------------------------------------------------------- */

typedef struct {
  EVP_PKEY *pkey;
  EVP_MD_CTX *md;
  BIO *bio[2];
  unsigned char *buf;
  int fd;
} guard;

static void guard_free(guard *g) {
  EVP_PKEY_free(g->pkey);
  g->pkey = NULL;
  EVP_MD_CTX_free(g->md);
  g->md = NULL;
  for (int i = 0; i < 2; i++) {
    BIO_free(g->bio[i]);
    g->bio[i] = NULL;
  }
  free(g->buf);
  g->buf = NULL;
  if (g->fd >= 0) close(g->fd);
  g->fd = -1;
}

static int guard_gc(lua_State *L) {
  guard_free(luaL_checkudata(L, 1, GUARD_MT));
  return 0;
}

/* Pushes an empty guard; it stays on the stack for the call's lifetime. */
static guard *guard_new(lua_State *L) {
  guard *g = lua_newuserdatauv(L, sizeof *g, 0);
  g->pkey = NULL;
  g->md = NULL;
  g->bio[0] = g->bio[1] = NULL;
  g->buf = NULL;
  g->fd = -1;
  luaL_setmetatable(L, GUARD_MT);
  return g;
}

static void push_hex(lua_State *L, const unsigned char *d, unsigned int n) {
  static const char digits[] = "0123456789abcdef";
  char out[2 * EVP_MAX_MD_SIZE];
  for (unsigned int i = 0; i < n; i++) {
    out[2 * i] = digits[d[i] >> 4];
    out[2 * i + 1] = digits[d[i] & 15];
  }
  lua_pushlstring(L, out, 2 * (size_t)n);
}

/* The oldest queued OpenSSL reason (or `fallback`); the queue is emptied. */
static const char *ossl_reason(char *buf, size_t len, const char *fallback) {
  unsigned long e = ERR_get_error();
  if (e) {
    const char *r = ERR_reason_error_string(e);
    if (r) {
      snprintf(buf, len, "%s", r);
    } else {
      ERR_error_string_n(e, buf, len);
    }
  } else {
    snprintf(buf, len, "%s", fallback);
  }
  ERR_clear_error();
  return buf;
}

/* nil, "<what>: <openssl reason>" */
static int ossl_fail(lua_State *L, const char *what) {
  char reason[256];
  ossl_reason(reason, sizeof reason, "unknown error");
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: %s", what, reason);
  return 2;
}

/* A failure OpenSSL should never have (allocation): raise. */
static int ossl_raise(lua_State *L, const char *what) {
  char reason[256];
  ossl_reason(reason, sizeof reason, "unknown error");
  return luaL_error(L, "%s: %s", what, reason);
}

/* ---- one-shot digests ------------------------------------------------- */

static int digest(lua_State *L, const EVP_MD *(*md)(void), const char *name) {
  size_t len;
  const char *data = luaL_checklstring(L, 1, &len);
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!EVP_Digest(data, len, d, &n, md(), NULL)) return ossl_raise(L, name);
  push_hex(L, d, n);
  return 1;
}

/* sha256(data) -> hex */
static int h_sha256(lua_State *L) { return digest(L, EVP_sha256, "sha256"); }

/* md5(data) -> hex (checksums only, never for trust) */
static int h_md5(lua_State *L) { return digest(L, EVP_md5, "md5"); }

/* sha256_file(path) -> hex | nil, msg, errno. Streams in 1 MiB reads. */
static int h_sha256_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  guard *g = guard_new(L);
  g->buf = malloc(FILE_BUFSIZE);
  g->md = EVP_MD_CTX_new();
  if (!g->buf || !g->md) {
    guard_free(g);
    return luaL_error(L, "sha256_file: out of memory");
  }
  if (!EVP_DigestInit_ex(g->md, EVP_sha256(), NULL)) {
    guard_free(g);
    return ossl_raise(L, "sha256_file");
  }
  g->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (g->fd < 0) {
    int err = errno;
    guard_free(g);
    return ct_oserror(L, err, path);
  }
  for (;;) {
    ssize_t n = read(g->fd, g->buf, FILE_BUFSIZE);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      guard_free(g);
      return ct_oserror(L, err, path);
    }
    if (n == 0) break;
    if (!EVP_DigestUpdate(g->md, g->buf, (size_t)n)) {
      guard_free(g);
      return ossl_raise(L, "sha256_file");
    }
  }
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int dn = 0;
  int ok = EVP_DigestFinal_ex(g->md, d, &dn);
  guard_free(g);
  if (!ok) return ossl_raise(L, "sha256_file");
  push_hex(L, d, dn);
  return 1;
}

/* ---- incremental sha256 ----------------------------------------------- */

typedef struct {
  EVP_MD_CTX *md; /* NULL once finalized (or closed) */
} hasher;

static hasher *check_hasher(lua_State *L) {
  hasher *h = luaL_checkudata(L, 1, HASHER_MT);
  if (!h->md) luaL_error(L, "sha256 hasher already finalized");
  return h;
}

/* sha256_new() -> hasher */
static int h_sha256_new(lua_State *L) {
  hasher *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->md = NULL;
  luaL_setmetatable(L, HASHER_MT);
  h->md = EVP_MD_CTX_new();
  if (!h->md) return luaL_error(L, "sha256_new: out of memory");
  if (!EVP_DigestInit_ex(h->md, EVP_sha256(), NULL)) return ossl_raise(L, "sha256_new");
  return 1;
}

/* h:update(data) -> h */
static int hs_update(lua_State *L) {
  hasher *h = check_hasher(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (!EVP_DigestUpdate(h->md, data, len)) return ossl_raise(L, "sha256 update");
  lua_settop(L, 1);
  return 1;
}

/* h:hex() -> hex; finalizes, a second call raises. */
static int hs_hex(lua_State *L) {
  hasher *h = check_hasher(L);
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  int ok = EVP_DigestFinal_ex(h->md, d, &n);
  EVP_MD_CTX_free(h->md);
  h->md = NULL;
  if (!ok) return ossl_raise(L, "sha256 final");
  push_hex(L, d, n);
  return 1;
}

/* __gc and __close */
static int hs_free(lua_State *L) {
  hasher *h = luaL_checkudata(L, 1, HASHER_MT);
  EVP_MD_CTX_free(h->md);
  h->md = NULL;
  return 0;
}

/* ---- ed25519 ---------------------------------------------------------- */

/* Keys are never encrypted: refuse instead of prompting on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)u;
  return -1;
}

/* Pushes the memory BIO's content. */
static void push_bio(lua_State *L, BIO *bio) {
  char *p = NULL;
  long n = BIO_get_mem_data(bio, &p);
  lua_pushlstring(L, p, n > 0 ? (size_t)n : 0);
}

/* keygen() -> private_pem (PKCS#8), public_pem (SubjectPublicKeyInfo) */
static int h_keygen(lua_State *L) {
  guard *g = guard_new(L);
  g->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  if (!g->pkey) return ossl_raise(L, "keygen");
  g->bio[0] = BIO_new(BIO_s_mem());
  g->bio[1] = BIO_new(BIO_s_mem());
  if (!g->bio[0] || !g->bio[1]) return ossl_raise(L, "keygen");
  if (!PEM_write_bio_PrivateKey(g->bio[0], g->pkey, NULL, NULL, 0, NULL, NULL) ||
      !PEM_write_bio_PUBKEY(g->bio[1], g->pkey))
    return ossl_raise(L, "keygen");
  push_bio(L, g->bio[0]);
  push_bio(L, g->bio[1]);
  guard_free(g);
  return 2;
}

/* Reads an ed25519 key from PEM into g->pkey; 0 and pushes nil, msg if it
   is malformed or of another type. */
static int read_key(lua_State *L, guard *g, const char *pem, size_t len, int private) {
  const char *what = private ? "invalid ed25519 private key" : "invalid ed25519 public key";
  if (len > INT_MAX) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: too long", what);
    return 0;
  }
  g->bio[0] = BIO_new_mem_buf(pem, (int)len);
  if (!g->bio[0]) {
    ossl_raise(L, what);
    return 0;
  }
  g->pkey = private ? PEM_read_bio_PrivateKey(g->bio[0], NULL, no_passphrase, NULL)
                    : PEM_read_bio_PUBKEY(g->bio[0], NULL, no_passphrase, NULL);
  if (!g->pkey) {
    ossl_fail(L, what);
    return 0;
  }
  if (!EVP_PKEY_is_a(g->pkey, "ED25519")) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: the key is %s", what, EVP_PKEY_get0_type_name(g->pkey));
    return 0;
  }
  return 1;
}

/* sign(private_pem, data) -> 64 raw signature bytes | nil, msg */
static int h_sign(lua_State *L) {
  size_t klen, dlen;
  const char *pem = luaL_checklstring(L, 1, &klen);
  const char *data = luaL_checklstring(L, 2, &dlen);
  guard *g = guard_new(L);
  if (!read_key(L, g, pem, klen, 1)) {
    guard_free(g);
    return 2;
  }
  g->md = EVP_MD_CTX_new();
  if (!g->md) return luaL_error(L, "sign: out of memory");
  unsigned char sig[ED25519_SIGLEN];
  size_t siglen = sizeof sig;
  if (!EVP_DigestSignInit_ex(g->md, NULL, NULL, NULL, NULL, g->pkey, NULL) ||
      !EVP_DigestSign(g->md, sig, &siglen, (const unsigned char *)data, dlen)) {
    int n = ossl_fail(L, "sign");
    guard_free(g);
    return n;
  }
  guard_free(g);
  lua_pushlstring(L, (const char *)sig, siglen);
  return 1;
}

/* verify(public_pem, data, sig) -> boolean | nil, msg (malformed key) */
static int h_verify(lua_State *L) {
  size_t klen, dlen, slen;
  const char *pem = luaL_checklstring(L, 1, &klen);
  const char *data = luaL_checklstring(L, 2, &dlen);
  const char *sig = luaL_checklstring(L, 3, &slen);
  guard *g = guard_new(L);
  if (!read_key(L, g, pem, klen, 0)) {
    guard_free(g);
    return 2;
  }
  g->md = EVP_MD_CTX_new();
  if (!g->md) return luaL_error(L, "verify: out of memory");
  if (!EVP_DigestVerifyInit_ex(g->md, NULL, NULL, NULL, NULL, g->pkey, NULL)) {
    int n = ossl_fail(L, "verify");
    guard_free(g);
    return n;
  }
  /* 1 is a valid signature; 0 a mismatch; < 0 a malformed signature
     (wrong length): all but 1 are "not signed by this key". */
  int rc = EVP_DigestVerify(g->md, (const unsigned char *)sig, slen,
                            (const unsigned char *)data, dlen);
  ERR_clear_error();
  guard_free(g);
  lua_pushboolean(L, rc == 1);
  return 1;
}

static const luaL_Reg hasher_methods[] = {
    {"update", hs_update},
    {"hex", hs_hex},
    {NULL, NULL},
};

static const luaL_Reg hasher_meta[] = {
    {"__gc", hs_free},
    {"__close", hs_free},
    {"__index", NULL},
    {NULL, NULL},
};

static const luaL_Reg hash_funcs[] = {
    {"sha256", h_sha256},
    {"sha256_file", h_sha256_file},
    {"md5", h_md5},
    {"sha256_new", h_sha256_new},
    {"keygen", h_keygen},
    {"sign", h_sign},
    {"verify", h_verify},
    {NULL, NULL},
};

int luaopen_ct_hash(lua_State *L) {
  luaL_newmetatable(L, GUARD_MT);
  lua_pushcfunction(L, guard_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, HASHER_MT);
  luaL_setfuncs(L, hasher_meta, 0);
  luaL_newlib(L, hasher_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, hash_funcs);
  return 1;
}
