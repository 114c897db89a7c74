/* ct.hash: digests, ed25519 (with the PEM forms of ctcli.pem). */
#include "harness.h"

#include <errno.h>

/* RFC 8032 §7.1, test 1: the secret key as PKCS#8, its public key as SPKI. */
#define KAT_PRIVATE                                                            \
  "-----BEGIN PRIVATE KEY-----\n"                                             \
  "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"        \
  "-----END PRIVATE KEY-----\n"
#define KAT_PUBLIC                                                             \
  "-----BEGIN PUBLIC KEY-----\n"                                              \
  "MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"            \
  "-----END PUBLIC KEY-----\n"
#define KAT_SIG_EMPTY                                                          \
  "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"

/* A P-256 public key: well-formed, but not ed25519. */
#define EC_PUBLIC                                                              \
  "-----BEGIN PUBLIC KEY-----\n"                                              \
  "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAERWaBI7HxmWvGo84hBh2t2AHgxapg\n"        \
  "MpX/M2YdS7HV2EiajbSAn9Fp8ZGbUei9pbSk6ucLh1YG3bAanH8vLqpCrg==\n"            \
  "-----END PUBLIC KEY-----\n"

static lua_State *hash_state(void) {
  lua_State *L = t_state();
  /* The key formats are ctcli.pem's; the digests and raw ed25519 the engine's. */
  T_LUA(L, "local pem = require('ctcli.base.pem') "
           "H = setmetatable({ keygen = pem.keygen, sign = pem.sign, verify = pem.verify }, "
           "  { __index = require('ct').hash }) "
           "function unhex(s) return (s:gsub('..', function(x) return string.char(tonumber(x, 16)) end)) end "
           "function tohex(s) return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end)) end "
           "function flip(s, i) return s:sub(1, i - 1) .. string.char(s:byte(i) ~ 1) .. s:sub(i + 1) end "
           "return true");
  lua_pushstring(L, t_tmpdir());
  lua_setglobal(L, "TMP");
  return L;
}

DEFINE_TEST(known_vectors) {
  lua_State *L = hash_state();
  T_LUA(L, "assert(H.sha256('') == 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855') "
           "assert(H.sha256('abc') == 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad') "
           "assert(H.sha256('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq') == "
           "  '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1') "
           "assert(H.md5('abc') == '900150983cd24fb0d6963f7d28e17f72') "
           "assert(H.md5('') == 'd41d8cd98f00b204e9800998ecf8427e') "
           "assert(H.sha256('a\\0b') ~= H.sha256('a'), 'embedded NUL is hashed') "
           "assert(not pcall(H.sha256)) assert(not pcall(H.sha256, {})) "
           "assert(not pcall(H.md5, nil)) "
           "return true");
}

DEFINE_TEST(sha256_file_streams) {
  lua_State *L = hash_state();
  /* 3 MiB + 7 bytes: three full 1 MiB reads and a short one. */
  T_LUA(L, "local s = string.rep('0123456789abcdef', 3 * 65536) .. 'tail!\\n\\0' "
           "local p = TMP .. '/big' "
           "local f = assert(io.open(p, 'wb')) f:write(s) f:close() "
           "assert(H.sha256_file(p) == H.sha256(s)) "
           "p = TMP .. '/empty' f = assert(io.open(p, 'wb')) f:close() "
           "assert(H.sha256_file(p) == H.sha256('')) "
           "return true");
  char code[512];
  snprintf(code, sizeof code,
           "local h, msg, e = H.sha256_file(TMP .. '/missing') "
           "assert(h == nil and e == %d and msg:find(TMP .. '/missing', 1, true), tostring(msg)) "
           "h, msg, e = H.sha256_file(TMP) "
           "assert(h == nil and e == %d, tostring(msg)) "
           "assert(not pcall(H.sha256_file)) "
           "return true",
           ENOENT, EISDIR);
  T_LUA(L, code);
}

DEFINE_TEST(ed25519_round_trip) {
  lua_State *L = hash_state();
  T_LUA(L, "local priv, pub = H.keygen() "
           "assert(priv:match('^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-\\n'), priv) "
           "assert(pub:match('^%-%-%-%-%-BEGIN PUBLIC KEY%-%-%-%-%-\\n'), pub) "
           "local data = 'manifest\\0with a NUL' "
           "local sig = assert(H.sign(priv, data)) "
           "assert(#sig == 64, #sig) "
           "assert(H.sign(priv, data) == sig, 'ed25519 is deterministic') "
           "assert(H.verify(pub, data, sig) == true) "
           "assert(H.verify(pub, flip(data, 3), sig) == false) "
           "assert(H.verify(pub, data, flip(sig, 1)) == false) "
           "assert(H.verify(pub, data, flip(sig, 64)) == false) "
           "assert(H.verify(pub, data, sig:sub(1, 63)) == false) "
           "assert(H.verify(pub, data, '') == false) "
           "local _, pub2 = H.keygen() "
           "assert(pub2 ~= pub) "
           "assert(H.verify(pub2, data, sig) == false) "
           "local big = string.rep('b', 3000000) "
           "assert(H.verify(pub, big, H.sign(priv, big)) == true) "
           "return true");
}

DEFINE_TEST(ed25519_known_answer) {
  lua_State *L = hash_state();
  lua_pushstring(L, KAT_PRIVATE);
  lua_setglobal(L, "PRIV");
  lua_pushstring(L, KAT_PUBLIC);
  lua_setglobal(L, "PUB");
  lua_pushstring(L, KAT_SIG_EMPTY);
  lua_setglobal(L, "SIG");
  T_LUA(L, "assert(tohex(assert(H.sign(PRIV, ''))) == SIG) "
           "assert(H.verify(PUB, '', unhex(SIG)) == true) "
           "assert(H.verify(PUB, 'x', unhex(SIG)) == false) "
           "return true");
}

DEFINE_TEST(malformed_keys) {
  lua_State *L = hash_state();
  lua_pushstring(L, EC_PUBLIC);
  lua_setglobal(L, "ECPUB");
  T_LUA(L, "local priv, pub = H.keygen() "
           "local sig = H.sign(priv, 'x') "
           "local function bad(ok, msg, ...) "
           "  assert(ok == nil and type(msg) == 'string' and select('#', ...) == 0, tostring(msg)) "
           "  return msg end "
           "bad(H.verify('garbage', 'x', sig)) "
           "bad(H.verify('', 'x', sig)) "
           "bad(H.verify(priv, 'x', sig)) "
           "local m = bad(H.verify(ECPUB, 'x', sig)) "
           "assert(m:find('EC', 1, true), m) "
           "bad(H.verify(pub:gsub('A', 'B', 3), 'x', sig)) "
           "bad(H.sign('garbage', 'x')) "
           "bad(H.sign(pub, 'x')) "
           "bad(H.sign(priv:sub(1, 40), 'x')) "
           "bad(H.sign('-----BEGIN ENCRYPTED PRIVATE KEY-----\\nAAAA\\n-----END ENCRYPTED PRIVATE KEY-----\\n', 'x')) "
           "assert(not pcall(H.sign, priv)) "
           "assert(not pcall(H.verify, pub, 'x')) "
           "assert(not pcall(H.verify, pub, 'x', 1 == 1)) "
           /* nothing was left queued: a good call still works after the bad ones */
           "assert(H.verify(pub, 'x', sig) == true) "
           "return true");
}
