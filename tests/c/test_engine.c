/* The host itself: state, searchers, embedded modules, ct groups. */
#include "harness.h"

#include <stdlib.h>
#include <sys/stat.h>

DEFINE_TEST(ct_groups_are_registered) {
  lua_State *L = t_state();
  T_LUA(L, "for _, g in ipairs{'fs','archive','proc','lock','hash','term','time'} do "
           "assert(type(require('ct')[g]) == 'table', g) end return true");
}

DEFINE_TEST(cjson_is_preloaded) {
  lua_State *L = t_state();
  T_LUA(L, "return require('cjson').encode({1,2,3})");
  T_ASSERT_STR(lua_tostring(L, -1), "[1,2,3]");
}

DEFINE_TEST(embedded_modules_load_with_their_file_names) {
  unsetenv("CTCLI_LUA_DIR");
  lua_State *L = t_state();
  T_LUA(L, "local ok, err = pcall(require, 'ctcli.does_not_exist') "
           "assert(not ok and err:find('no embedded module', 1, true), err) "
           "local m = package.searchers[3]('ctcli.main') "
           "assert(type(m) == 'function', 'ctcli.main is not embedded') "
           "return select(2, package.searchers[3]('ctcli.main'))");
  T_ASSERT_STR(lua_tostring(L, -1), "lua/ctcli/main.lua");
}

DEFINE_TEST(lua_dir_overrides_embedded_copy) {
  char path[512];
  snprintf(path, sizeof path, "%s/ctcli", t_tmpdir());
  T_ASSERT(mkdir(path, 0755) == 0);
  snprintf(path, sizeof path, "%s/ctcli/main.lua", t_tmpdir());
  FILE *f = fopen(path, "w");
  T_ASSERT(f != NULL);
  fputs("return 'from the directory'\n", f);
  fclose(f);
  setenv("CTCLI_LUA_DIR", t_tmpdir(), 1);
  lua_State *L = t_state();
  T_LUA(L, "return require('ctcli.main')");
  T_ASSERT_STR(lua_tostring(L, -1), "from the directory");
}

DEFINE_TEST(time_clocks_advance) {
  lua_State *L = t_state();
  T_LUA(L, "local t = require('ct').time local a = t.monotonic() t.sleep(0.02) "
           "local d = t.monotonic() - a assert(d >= 0.02 and d < 1, d) "
           "assert(t.now() > 1.7e9) "
           "assert(not pcall(t.sleep, -1)) return true");
}
