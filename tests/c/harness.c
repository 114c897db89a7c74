#include "harness.h"
#include "monitor.h"

#include <stdarg.h>
#include <unistd.h>

#define MAX_CASES 256
static struct {
  const char *name;
  t_case_fn fn;
} cases[MAX_CASES];
static int ncases;
static lua_State *state;
static char tmpdir[256];

void t_register(const char *name, t_case_fn fn) {
  if (ncases < MAX_CASES) {
    cases[ncases].name = name;
    cases[ncases].fn = fn;
    ncases++;
  }
}

static void cleanup(void) {
  if (state) lua_close(state);
  state = NULL;
  if (tmpdir[0]) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
  }
}

void t_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

void t_skip(const char *why) {
  if (getenv("CI") && strcmp(getenv("CI"), "true") == 0) {
    fprintf(stderr, "FAIL (skips are not allowed under CI=true): %s\n", why);
    exit(1);
  }
  fprintf(stderr, "SKIP: %s\n", why);
  exit(77);
}

lua_State *t_state(void) {
  if (!state) {
    state = ct_newstate();
    if (!state) t_fail(__FILE__, __LINE__, "could not create a Lua state");
  }
  return state;
}

void t_lua(lua_State *L, const char *code, const char *file, int line) {
  int top = lua_gettop(L);
  if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
    t_fail(file, line, "Lua error: %s", lua_tostring(L, -1));
  (void)top;
}

const char *t_tmpdir(void) {
  if (!tmpdir[0]) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/ct-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) t_fail(__FILE__, __LINE__, "mkdtemp failed");
  }
  return tmpdir;
}

int main(int argc, char **argv) {
  /* ct.monitor.spawn re-executes the running binary: this test. */
  if (argc > 1 && strcmp(argv[1], CT_MONITOR_ARG) == 0) return ct_monitor_main(argc, argv);
  atexit(cleanup);
  if (argc < 2) {
    for (int i = 0; i < ncases; i++) printf("%s\n", cases[i].name);
    return 0;
  }
  for (int i = 0; i < ncases; i++) {
    if (strcmp(cases[i].name, argv[1]) == 0) {
      cases[i].fn();
      return 0;
    }
  }
  fprintf(stderr, "no test case named %s\n", argv[1]);
  return 1;
}
