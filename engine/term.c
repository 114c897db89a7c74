/* ct.term: terminal queries and the line reader behind yes/no prompts. */
#include "int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define DEFAULT_WIDTH 80

/* isatty(fd) -> boolean */
static int t_isatty(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  luaL_argcheck(L, fd >= 0 && fd <= INT_MAX, 1, "expected a file descriptor");
  lua_pushboolean(L, isatty((int)fd));
  return 1;
}

static int tty_columns(int fd) {
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 0;
}

/* width() -> columns of the terminal on stdout (else stderr), else
   $COLUMNS, else 80. */
static int t_width(lua_State *L) {
  int w = tty_columns(STDOUT_FILENO);
  if (!w) w = tty_columns(STDERR_FILENO);
  if (!w) {
    const char *env = getenv("COLUMNS");
    if (env && *env) {
      char *end;
      errno = 0;
      long v = strtol(env, &end, 10);
      if (errno == 0 && *end == '\0' && v > 0 && v <= 65535) w = (int)v;
    }
  }
  lua_pushinteger(L, w ? w : DEFAULT_WIDTH);
  return 1;
}

/* readline([prompt]) -> line without "\n" (or "\r\n") | nil at end of input
   | nil, msg, errno. The prompt goes to stderr unbuffered; stdin (fd 0) is
   read a byte at a time so nothing past the newline is consumed. */
static int t_readline(lua_State *L) {
  size_t plen = 0;
  const char *prompt = luaL_optlstring(L, 1, NULL, &plen);
  if (prompt && plen > 0) {
    fflush(stdout); /* what Lua printed before the question comes first */
    (void)write_all(STDERR_FILENO, prompt, plen); /* an unshown prompt does not stop the read */
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t got = 0;
  int eof = 0;
  for (;;) {
    char c;
    ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ct_oserror(L, errno, "stdin");
    }
    if (n == 0) {
      eof = 1;
      break;
    }
    if (c == '\n') break;
    luaL_addchar(&b, c);
    got++;
  }
  if (eof && got == 0) {
    luaL_pushfail(L);
    return 1;
  }
  luaL_pushresult(&b);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  if (len > 0 && s[len - 1] == '\r') lua_pushlstring(L, s, len - 1);
  return 1;
}

static const luaL_Reg term_funcs[] = {
    {"isatty", t_isatty},
    {"width", t_width},
    {"readline", t_readline},
    {NULL, NULL},
};

int luaopen_ct_term(lua_State *L) {
  luaL_newlib(L, term_funcs);
  return 1;
}
