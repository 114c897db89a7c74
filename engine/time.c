/* ct.time: wall clock, monotonic clock, sleeping. */
#include "int.h"

#include <errno.h>
#include <math.h>
#include <time.h>

/* now() -> seconds since the epoch, with a fraction. */
static int t_now(lua_State *L) {
  lua_pushnumber(L, ct_now());
  return 1;
}

/* monotonic() -> seconds on a clock that never jumps; for deadlines. */
static int t_monotonic(lua_State *L) {
  lua_pushnumber(L, ct_mono());
  return 1;
}

/* sleep(seconds): resumes after a signal so the full time passes. */
static int t_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s >= 0 && isfinite(s), 1, "expected a non-negative number");
  struct timespec req = {(time_t)s, (long)((s - floor(s)) * 1e9)};
  while (nanosleep(&req, &req) != 0 && errno == EINTR) {
  }
  return 0;
}

static const luaL_Reg time_funcs[] = {
    {"now", t_now},
    {"monotonic", t_monotonic},
    {"sleep", t_sleep},
    {NULL, NULL},
};

int luaopen_ct_time(lua_State *L) {
  luaL_newlib(L, time_funcs);
  return 1;
}
