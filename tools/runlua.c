/* Build-time tool: runs a Lua generator script with the same static Lua as the engine, so the build needs no Lua
   interpreter installed and no engine built first (what it writes is compiled into the engine). */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>

/* usage: runlua SCRIPT.lua [ARG...]; the script sees its arguments in `arg`, as with lua(1). */
int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: runlua SCRIPT.lua [ARG...]\n");
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (!L) return 1;
  luaL_openlibs(L);
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  int rc = 0;
  if (luaL_loadfilex(L, argv[1], "t") != LUA_OK || lua_pcall(L, 0, 0, 0) != LUA_OK) {
    fprintf(stderr, "runlua: %s\n", lua_tostring(L, -1));
    rc = 1;
  }
  lua_close(L);
  return rc;
}
