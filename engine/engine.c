/* The Lua host: builds the state, installs module searchers, enters Lua
   only through lua_pcall with a message handler. */
#include "ct.h"
#include "embedded.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <archive.h>

#ifndef CTCLI_VERSION
#define CTCLI_VERSION "0.0.0"
#endif

int luaopen_cjson(lua_State *L);

int ct_error(lua_State *L, int err, const char *fmt, ...) {
  va_list ap;
  luaL_pushfail(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_pushinteger(L, err);
  return 3;
}

int ct_oserror(lua_State *L, int err, const char *what) {
  if (!what) return ct_error(L, err, "%s", strerror(err));
  return ct_error(L, err, "%s: %s", what, strerror(err));
}

int ct_true(lua_State *L) {
  lua_pushboolean(L, 1);
  return 1;
}

void ct_class(lua_State *L, const char *mt, const luaL_Reg *methods, lua_CFunction gc,
              lua_CFunction tostr) {
  if (luaL_newmetatable(L, mt)) {
    if (methods) {
      lua_newtable(L);
      luaL_setfuncs(L, methods, 0);
      lua_setfield(L, -2, "__index");
    }
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__close");
    if (tostr) {
      lua_pushcfunction(L, tostr);
      lua_setfield(L, -2, "__tostring");
    }
  }
  lua_pop(L, 1);
}

static int by_module(const void *key, const void *entry) {
  return strcmp(key, ((const struct ct_embedded *)entry)->module);
}

/* The searcher of the copy compiled into the binary. */
static int search_embedded(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const struct ct_embedded *m =
      bsearch(name, ct_embedded_modules, ct_embedded_count, sizeof ct_embedded_modules[0], by_module);
  if (!m) {
    lua_pushfstring(L, "\n\tno embedded module '%s'", name);
    return 1;
  }
  if (luaL_loadbufferx(L, m->source, m->len, m->chunk, "b") != LUA_OK)
    return luaL_error(L, "error loading embedded module '%s':\n\t%s", name, lua_tostring(L, -1));
  lua_pushstring(L, m->chunk + 1);
  return 2;
}

static const struct {
  const char *name;
  lua_CFunction open;
} ct_groups[] = {
    {"fs", luaopen_ct_fs},     {"archive", luaopen_ct_archive}, {"proc", luaopen_ct_proc},
    {"lock", luaopen_ct_lock}, {"hash", luaopen_ct_hash},       {"term", luaopen_ct_term},
    {"time", luaopen_ct_time}, {"monitor", luaopen_ct_monitor},
};

/* ct's __index: a group is opened when first used, and kept in ct, so a
   command pays only for the groups it touches (`version` two of eight). */
static int ct_index(lua_State *L) {
  const char *name = luaL_checkstring(L, 2);
  if (strcmp(name, "libarchive_version") == 0) {
    lua_pushstring(L, archive_version_details());
  } else {
    size_t i = 0, n = sizeof ct_groups / sizeof ct_groups[0];
    while (i < n && strcmp(ct_groups[i].name, name) != 0) i++;
    if (i == n) return 0;
    /* Registered as "ct.<group>" so no group shadows a module named like it. */
    lua_pushfstring(L, "ct.%s", name);
    luaL_requiref(L, lua_tostring(L, -1), ct_groups[i].open, 0);
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  return 1;
}

static int luaopen_ct(lua_State *L) {
  lua_newtable(L);
  lua_pushliteral(L, CTCLI_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushliteral(L, LUA_RELEASE);
  lua_setfield(L, -2, "lua_version");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, ct_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  return 1;
}

lua_State *ct_newstate(void) {
  lua_State *L = luaL_newstate();
  if (!L) return NULL;
  luaL_openlibs(L);
  /* Modules come only from CTCLI_LUA_DIR (Lua's own path searcher) or the
     binary: no relative or system search paths (a runner that wants them
     sets them itself). */
  const char *dir = getenv("CTCLI_LUA_DIR");
  lua_getglobal(L, "package");
  if (dir && *dir)
    lua_pushfstring(L, "%s/?.lua", dir);
  else
    lua_pushliteral(L, "");
  lua_setfield(L, -2, "path");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "cpath");
  /* The embedded copy goes third: after preload and the path, before C. */
  lua_getfield(L, -1, "searchers");
  for (lua_Integer i = (lua_Integer)luaL_len(L, -1); i >= 3; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushcfunction(L, search_embedded);
  lua_rawseti(L, -2, 3);
  lua_pop(L, 2);
  luaL_requiref(L, "ct", luaopen_ct, 0);
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_cjson);
  lua_setfield(L, -2, "cjson");
  lua_pop(L, 1);
  return L;
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static int report(lua_State *L, int status) {
  if (status == LUA_OK) return 0;
  const char *msg = lua_tostring(L, -1);
  /* A thrown error is a bug in ctcli: the message handler added a traceback. */
  fprintf(stderr, "ctcli: internal error: %s\n", msg ? msg : "(no message)");
  lua_pop(L, 1);
  return 70;
}

/* Pushes argv as a sequence. */
static void push_argv(lua_State *L, int argc, char **argv) {
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

int ct_runmain(lua_State *L, const char *mod, int argc, char **argv) {
  lua_pushcfunction(L, msghandler);
  int base = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  int st = lua_pcall(L, 1, 1, base);
  if (st != LUA_OK) return report(L, st);
  push_argv(L, argc, argv);
  st = lua_pcall(L, 1, 1, base);
  if (st != LUA_OK) return report(L, st);
  int code = (int)lua_tointeger(L, -1);
  lua_settop(L, base - 1);
  return code;
}

int ct_runfile(lua_State *L, const char *path, int argc, char **argv) {
  lua_pushcfunction(L, msghandler);
  int base = lua_gettop(L);
  push_argv(L, argc, argv);
  lua_pushstring(L, path);
  lua_rawseti(L, -2, 0);
  lua_setglobal(L, "arg");
  int st = luaL_loadfilex(L, path, "t");
  if (st == LUA_OK) {
    for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
    st = lua_pcall(L, argc, 0, base);
  }
  int code = report(L, st);
  lua_settop(L, base - 1);
  return code;
}
