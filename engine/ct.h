#ifndef CT_H
#define CT_H
/* The `ct` primitive module: one luaopen per group, shared helpers. */
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

int luaopen_ct_fs(lua_State *L);
int luaopen_ct_archive(lua_State *L);
int luaopen_ct_proc(lua_State *L);
int luaopen_ct_lock(lua_State *L);
int luaopen_ct_hash(lua_State *L);
int luaopen_ct_term(lua_State *L);
int luaopen_ct_time(lua_State *L);
int luaopen_ct_monitor(lua_State *L);

/* Pushes nil, "<what>: strerror(err)", err and returns 3 (luaL_fileresult's shape). */
int ct_oserror(lua_State *L, int err, const char *what);
/* Pushes nil, msg, err and returns 3. */
int ct_error(lua_State *L, int err, const char *fmt, ...);
/* Pushes true and returns 1. */
int ct_true(lua_State *L);
/* Registers metatable mt once: methods (or NULL) as __index, gc as __gc and
   __close, tostr (or NULL) as __tostring. */
void ct_class(lua_State *L, const char *mt, const luaL_Reg *methods, lua_CFunction gc,
              lua_CFunction tostr);
/* The descriptor of the ct.fs.File or Dir (metatable mt) at idx, or -1
   when it is not one; raises if it is closed. The handle keeps owning it. */
int ct_testhandle(lua_State *L, int idx, const char *mt);
#define ct_testfile(L, idx) ct_testhandle(L, idx, "ct.fs.File")
#define ct_testdir(L, idx) ct_testhandle(L, idx, "ct.fs.Dir")

/* Creates a Lua state with the standard libraries, `ct`, `cjson` and the
   module searchers (CTCLI_LUA_DIR first, then the embedded copy). */
lua_State *ct_newstate(void);
/* Runs module `mod`'s returned function with argv as a table; returns an
   exit status. Errors print one line (a traceback with CTCLI_TRACEBACK). */
int ct_runmain(lua_State *L, const char *mod, int argc, char **argv);
/* Runs a Lua script file with `arg` set, as the lua interpreter does;
   returns 0, or reports an error as ct_runmain does. */
int ct_runfile(lua_State *L, const char *path, int argc, char **argv);

#endif
