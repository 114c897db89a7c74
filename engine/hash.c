/* ct.hash: sha256/md5 digests and raw ed25519 through nettle (the library libarchive already loads). */
#include "ct.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include <nettle/base16.h>
#include <nettle/eddsa.h>
#include <nettle/md5.h>
#include <nettle/nettle-meta.h>
#include <nettle/sha2.h>

#define FILE_BUFSIZE (1024 * 1024)

/* Key formats (PEM, PKCS#8, SPKI) are Lua's business (ctcli/pem.lua): here
   a private key is its 32-byte seed and a public key its 32 bytes. */

static void push_hex(lua_State *L, const unsigned char *d, size_t n) {
  char out[BASE16_ENCODE_LENGTH(SHA256_DIGEST_SIZE)];
  base16_encode_update(out, n, d);
  lua_pushlstring(L, out, BASE16_ENCODE_LENGTH(n));
}

/* ---- digests --------------------------------------------------------- */

/* The digest of the string at 1 by alg, as hex. md5 is for checksums
   (container ids), never for trust. */
static int one_shot(lua_State *L, const struct nettle_hash *alg) {
  size_t len;
  const char *data = luaL_checklstring(L, 1, &len);
  union {
    struct sha256_ctx sha256;
    struct md5_ctx md5;
  } c;
  unsigned char d[SHA256_DIGEST_SIZE];
  alg->init(&c);
  alg->update(&c, len, (const uint8_t *)data);
  alg->digest(&c, alg->digest_size, d);
  push_hex(L, d, alg->digest_size);
  return 1;
}

/* sha256(data) -> hex */
static int h_sha256(lua_State *L) { return one_shot(L, &nettle_sha256); }

/* md5(data) -> hex */
static int h_md5(lua_State *L) { return one_shot(L, &nettle_md5); }

/* sha256_file(path) -> hex | nil, msg, errno. Streams in 1 MiB reads; the
   buffer is a userdata so a Lua error cannot leak it. */
static int h_sha256_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  unsigned char *buf = lua_newuserdatauv(L, FILE_BUFSIZE, 0);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return ct_oserror(L, errno, path);
  struct sha256_ctx c;
  sha256_init(&c);
  for (;;) {
    ssize_t n = read(fd, buf, FILE_BUFSIZE);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return ct_oserror(L, err, path);
    }
    if (n == 0) break;
    sha256_update(&c, (size_t)n, buf);
  }
  close(fd);
  unsigned char d[SHA256_DIGEST_SIZE];
  sha256_digest(&c, sizeof d, d);
  push_hex(L, d, sizeof d);
  return 1;
}

/* ---- ed25519 (raw keys) ----------------------------------------------- */

static const uint8_t *key32(lua_State *L, int arg, const char *what) {
  size_t n;
  const char *k = luaL_checklstring(L, arg, &n);
  if (n != ED25519_KEY_SIZE) luaL_error(L, "%s: expected %d bytes, got %d", what, ED25519_KEY_SIZE, (int)n);
  return (const uint8_t *)k;
}

/* random(n) -> n bytes from getrandom(2) (n <= 256: one call returns them
   all once the pool is ready; only a signal while it waits interrupts it) */
static int h_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 256, 1, "0..256");
  unsigned char b[256];
  ssize_t r;
  while ((r = getrandom(b, (size_t)n, 0)) < 0 && errno == EINTR) {
  }
  if (r != n) return ct_oserror(L, r < 0 ? errno : EIO, "getrandom");
  lua_pushlstring(L, (const char *)b, (size_t)n);
  return 1;
}

/* ed25519_public(seed) -> the 32-byte public key */
static int h_ed25519_public(lua_State *L) {
  const uint8_t *seed = key32(L, 1, "ed25519_public");
  uint8_t pub[ED25519_KEY_SIZE];
  ed25519_sha512_public_key(pub, seed);
  lua_pushlstring(L, (const char *)pub, sizeof pub);
  return 1;
}

/* ed25519_sign(seed, data) -> 64 signature bytes */
static int h_ed25519_sign(lua_State *L) {
  const uint8_t *seed = key32(L, 1, "ed25519_sign");
  size_t dlen;
  const char *data = luaL_checklstring(L, 2, &dlen);
  uint8_t pub[ED25519_KEY_SIZE], sig[ED25519_SIGNATURE_SIZE];
  ed25519_sha512_public_key(pub, seed);
  ed25519_sha512_sign(pub, seed, dlen, (const uint8_t *)data, sig);
  lua_pushlstring(L, (const char *)sig, sizeof sig);
  return 1;
}

/* ed25519_verify(pub, data, sig) -> boolean (a signature of the wrong
   length is simply not a valid one) */
static int h_ed25519_verify(lua_State *L) {
  const uint8_t *pub = key32(L, 1, "ed25519_verify");
  size_t dlen, slen;
  const char *data = luaL_checklstring(L, 2, &dlen);
  const char *sig = luaL_checklstring(L, 3, &slen);
  lua_pushboolean(L, slen == ED25519_SIGNATURE_SIZE &&
                         ed25519_sha512_verify(pub, dlen, (const uint8_t *)data, (const uint8_t *)sig) == 1);
  return 1;
}

static const luaL_Reg hash_funcs[] = {
    {"sha256", h_sha256},
    {"sha256_file", h_sha256_file},
    {"md5", h_md5},
    {"random", h_random},
    {"ed25519_public", h_ed25519_public},
    {"ed25519_sign", h_ed25519_sign},
    {"ed25519_verify", h_ed25519_verify},
    {NULL, NULL},
};

int luaopen_ct_hash(lua_State *L) {
  luaL_newlib(L, hash_funcs);
  return 1;
}
