/* libFuzzer targets over the ctcli engine: one source, the target picked
   at compile time by -DCT_FUZZ_TARGET="<name>" (manifest, legacy, archive).

   Each target is a small Lua function run in one engine state (ct_newstate:
   the same `ct`, cjson and embedded modules as ctcli). The function gets the
   input bytes as a string; a Lua error it raises is a bug (the validators
   "never raise", extract returns nil, msg) and is reported as a crash, as
   is anything AddressSanitizer or UBSan sees in the C engine. */
#include "ct.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CT_FUZZ_TARGET
#error "define CT_FUZZ_TARGET"
#endif

/* manifest: parse + validate (+ normalize on success) of manifest.json text. */
static const char manifest_src[] =
    "local m = require('ctcli.model.manifest')\n"
    "return function(s)\n"
    "  local doc, problems = m.parse(s, 'manifest.json')\n"
    "  if not doc then\n"
    "    assert(type(problems) == 'table' and #problems > 0, 'parse failed without a problem')\n"
    "    for _, line in ipairs(m.format_problems(problems, 'manifest.json')) do\n"
    "      assert(type(line) == 'string')\n"
    "    end\n"
    "    return\n"
    "  end\n"
    "  assert(#m.validate(doc, 'manifest.json') == 0, 'validate disagrees with parse')\n"
    "  m.normalize(doc)\n"
    "end\n";

/* legacy: meta.json, package-config.json and version.json separated by a
   line '--' (missing parts are empty), then from_legacy and, when that
   accepts them, validate + normalize of the manifest it made. */
static const char legacy_src[] =
    "local m = require('ctcli.model.manifest')\n"
    "local json = require('ctcli.base.json')\n"
    "return function(s)\n"
    "  local parts = {}\n"
    "  for part in (s .. '\\n--\\n'):gmatch('(.-)\\n%-%-\\n') do parts[#parts + 1] = part end\n"
    "  local function dec(t) local v = json.decode(t or '') return v end\n"
    "  local meta, pc, ver = dec(parts[1]), dec(parts[2]), dec(parts[3])\n"
    "  local name = parts[4] or 'app'\n"
    "  local apps = { { name = name, package_config = pc, version = ver,\n"
    "                   layout = 'package/apps/' .. name .. '/skopeo' } }\n"
    "  local doc, problems = m.from_legacy(meta, apps, { ['package/runc.amd64'] = true })\n"
    "  if not doc then\n"
    "    assert(type(problems) == 'table' and #problems > 0, 'from_legacy failed without a problem')\n"
    "    m.format_problems(problems)\n"
    "    return\n"
    "  end\n"
    "  local vp = m.validate(doc, 'meta.json')\n"
    "  assert(#vp == 0, 'from_legacy made an invalid manifest: ' .. tostring(m.format_problems(vp)[1]))\n"
    "  m.normalize(doc)\n"
    "end\n";

/* archive: the bytes as a package file, extracted with the package limits
   into a fresh directory inside a sandbox; nothing may appear next to it. */
static const char archive_src[] =
    "local ct = require('ct')\n"
    "local base = assert(ct.fs.mkdtemp((os.getenv('TMPDIR') or '/tmp') .. '/ctfuzz-XXXXXX'))\n"
    "local src = base .. '/in.tar'\n"
    "return function(s)\n"
    "  local f = assert(io.open(src, 'wb'))\n"
    "  f:write(s)\n"
    "  f:close()\n"
    "  local dest = base .. '/out'\n"
    "  assert(ct.fs.mkdir(dest, 448))\n"
    "  local stats, err = ct.archive.extract(src, dest,\n"
    "    { max_entries = 2000, max_bytes = 64 * 1024 * 1024, check_space = true })\n"
    "  if stats then\n"
    "    assert(math.type(stats.entries) == 'integer')\n"
    "  else\n"
    "    assert(type(err) == 'string', 'extract failed without a message')\n"
    "  end\n"
    "  ct.fs.rmtree(dest)\n"
    "  for _, n in ipairs(assert(ct.fs.dir(base))) do\n"
    "    assert(n == 'in.tar', 'written outside the destination: ' .. n)\n"
    "  end\n"
    "end\n";

static lua_State *L;
static int fn_ref;

/* Coverage of the Lua code: libFuzzer instruments only C, and the Lua VM is
   a prebuilt library, so a line hook feeds libFuzzer's extra counters with
   Lua "edges" (the previous line and this one, per chunk). */
#define LUA_COUNTERS 65536
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t lua_counters[LUA_COUNTERS];
static uintptr_t prev_line;

static void line_hook(lua_State *S, lua_Debug *ar) {
  if (!lua_getinfo(S, "S", ar)) return;
  uintptr_t h = ((uintptr_t)ar->source * 2654435761u) ^ ((uintptr_t)ar->currentline * 40503u);
  lua_counters[(h ^ (prev_line >> 1)) % LUA_COUNTERS]++;
  prev_line = h;
}

static const char *source(void) {
  const char *t = CT_FUZZ_TARGET;
  if (!strcmp(t, "manifest")) return manifest_src;
  if (!strcmp(t, "legacy")) return legacy_src;
  if (!strcmp(t, "archive")) return archive_src;
  return NULL;
}

static int traceback(lua_State *S) {
  luaL_traceback(S, S, lua_tostring(S, 1), 1);
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *src = source();
  L = ct_newstate();
  if (!L || !src) {
    fprintf(stderr, "fuzz: no state or unknown target %s\n", CT_FUZZ_TARGET);
    abort();
  }
  lua_pushcfunction(L, traceback);
  if (luaL_loadbuffer(L, src, strlen(src), "=" CT_FUZZ_TARGET) != LUA_OK ||
      lua_pcall(L, 0, 1, 1) != LUA_OK) {
    fprintf(stderr, "fuzz: setup: %s\n", lua_tostring(L, -1));
    abort();
  }
  fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  if (!getenv("CT_FUZZ_NO_LUA_COVERAGE")) lua_sethook(L, line_hook, LUA_MASKLINE, 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned runs;
  prev_line = 0;
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, -3) != LUA_OK) {
    fprintf(stderr, "fuzz: %s: Lua error: %s\n", CT_FUZZ_TARGET, lua_tostring(L, -1));
    abort();
  }
  lua_pop(L, 1);
  if (++runs % 256 == 0) lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
