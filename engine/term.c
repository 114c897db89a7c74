/* ct.term: terminal queries and the line reader behind yes/no prompts. */
#include "ct.h"

#include <errno.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <unistd.h>

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

/* width() -> columns of the terminal on stdout (else stderr) | nil when
   neither is one ($COLUMNS and a default are the caller's). */
static int t_width(lua_State *L) {
  int w = tty_columns(STDOUT_FILENO);
  if (!w) w = tty_columns(STDERR_FILENO);
  if (!w) return 0;
  lua_pushinteger(L, w);
  return 1;
}

/* readline() -> the line without its "\n" | nil at end of input
   | nil, msg, errno. stdin (fd 0) is read a byte at a time so nothing past
   the newline is consumed; the prompt is the caller's. */
static int t_readline(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (;;) {
    char c;
    ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ct_oserror(L, errno, "stdin");
    if (n == 0 && luaL_bufflen(&b) == 0) {
      luaL_pushfail(L);
      return 1;
    }
    if (n == 0 || c == '\n') break;
    luaL_addchar(&b, c);
  }
  luaL_pushresult(&b);
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
