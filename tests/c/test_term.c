/* ct.term: readline from a pipe as stdin, width, isatty (with ctcli.ui.console's prompt and $COLUMNS). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Swaps `fd` for `with`; returns the saved original. */
static int redirect(int fd, int with) {
  int saved = dup(fd);
  T_ASSERT(saved >= 0);
  T_ASSERT(dup2(with, fd) == fd);
  return saved;
}

static void restore(int fd, int saved) {
  T_ASSERT(dup2(saved, fd) == fd);
  close(saved);
}

/* Reads what is left in `fd` up to EOF. */
static size_t drain(int fd, char *buf, size_t cap) {
  size_t n = 0;
  while (n < cap - 1) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  return n;
}

/* Runs `code` with stdin fed `input` from a pipe and stderr captured.
   Lua code returns "ok" or a failure message; the fds are restored before
   anything is asserted so a failure is visible. */
static void with_stdin(const char *input, const char *code, const char *want_stderr,
                       const char *want_rest) {
  lua_State *L = t_state();
  int in[2], err[2];
  T_ASSERT(pipe(in) == 0);
  T_ASSERT(pipe(err) == 0);
  size_t len = strlen(input);
  T_ASSERT(write(in[1], input, len) == (ssize_t)len); /* small: fits the pipe */
  close(in[1]);
  int saved_in = redirect(0, in[0]);
  int saved_err = redirect(2, err[1]);
  close(in[0]);
  close(err[1]);
  int st = luaL_loadstring(L, code);
  if (st == LUA_OK) st = lua_pcall(L, 0, 1, 0);
  const char *res = lua_tostring(L, -1);
  char rest[256];
  drain(0, rest, sizeof rest);
  restore(2, saved_err);
  restore(0, saved_in);
  char prompts[256];
  drain(err[0], prompts, sizeof prompts);
  close(err[0]);
  if (st != LUA_OK || !res || strcmp(res, "ok") != 0)
    t_fail(__FILE__, __LINE__, "Lua: %s", res ? res : "(no result)");
  T_ASSERT_STR(prompts, want_stderr);
  T_ASSERT_STR(rest, want_rest);
}

DEFINE_TEST(readline_reads_lines_then_nil) {
  with_stdin("yes\nno thanks\r\n\nlast",
             "local r = require('ct').term.readline "
             "local a, b, c, d, e = r(), r(), r(), r(), r() "
             "if a ~= 'yes' then return 'a=' .. tostring(a) end "
             "if b ~= 'no thanks\\r' then return 'b=' .. tostring(b) end "
             "if c ~= '' then return 'c=' .. tostring(c) end "
             "if d ~= 'last' then return 'd=' .. tostring(d) end "
             "if e ~= nil then return 'e=' .. tostring(e) end "
             "if r() ~= nil then return 'not nil after EOF' end "
             "return 'ok'",
             "", "");
}

/* The prompt is ctcli.ui.console's; a "\r\n" answer is still a yes. */
DEFINE_TEST(readline_consumes_only_one_line) {
  with_stdin("y\r\nrest of\ninput\n",
             "local a = require('ctcli.ui.console').confirm('Sure?') "
             "return a == true and 'ok' or tostring(a)",
             "Sure? [y/N] ", "rest of\ninput\n");
}

DEFINE_TEST(readline_eof_is_nil) {
  with_stdin("",
             "local a, b = require('ct').term.readline() "
             "if a ~= nil or b ~= nil then return 'got ' .. tostring(a) end "
             "a = require('ctcli.ui.console').confirm('Delete everything?') "
             "if a ~= false then return 'confirmed at EOF: ' .. tostring(a) end "
             "return 'ok'",
             "Delete everything? [y/N] \n", "");
}

DEFINE_TEST(width_without_a_terminal) {
  lua_State *L = t_state();
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  T_ASSERT(null >= 0);
  int saved_out = redirect(1, null);
  int saved_err = redirect(2, null);
  close(null);
  static const struct {
    const char *columns; /* NULL: unset */
    long want;
  } cases[] = {{NULL, 80}, {"132", 132}, {"", 80}, {"junk", 80}, {"0", 80}, {"-5", 80},
               {"12x", 80}, {"40", 40}};
  long got[sizeof cases / sizeof cases[0]];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (cases[i].columns)
      setenv("COLUMNS", cases[i].columns, 1);
    else
      unsetenv("COLUMNS");
    luaL_loadstring(L, "if require('ct').term.width() ~= nil then return -2 end "
                       "return require('ctcli.ui.console').width()");
    got[i] = lua_pcall(L, 0, 1, 0) == LUA_OK ? (long)lua_tointeger(L, -1) : -1;
    lua_pop(L, 1);
  }
  restore(2, saved_err);
  restore(1, saved_out);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (got[i] != cases[i].want)
      t_fail(__FILE__, __LINE__, "COLUMNS=%s: width %ld, want %ld",
             cases[i].columns ? cases[i].columns : "(unset)", got[i], cases[i].want);
  }
}

DEFINE_TEST(isatty_and_width_on_a_pty) {
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0)
    t_skip("no pseudo-terminals here");
  const char *name = ptsname(master);
  int slave = name ? open(name, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
  if (slave < 0) t_skip("cannot open the pty slave");
  struct winsize ws = {.ws_row = 24, .ws_col = 101};
  T_ASSERT(ioctl(slave, TIOCSWINSZ, &ws) == 0);

  lua_State *L = t_state();
  int pipefd[2];
  T_ASSERT(pipe(pipefd) == 0);
  char code[512];
  snprintf(code, sizeof code,
           "local t = require('ct').term "
           "assert(t.isatty(%d) == true) "
           "assert(t.isatty(%d) == false, 'a pipe') "
           "assert(t.isatty(999999) == false, 'not open') "
           "assert(not pcall(t.isatty, 'x')) "
           "assert(not pcall(t.isatty, -1)) "
           "assert(type(t.isatty(0)) == 'boolean') "
           "return true",
           slave, pipefd[0]);
  T_LUA(L, code);

  /* The terminal on stderr wins over $COLUMNS when stdout is not one. */
  setenv("COLUMNS", "55", 1);
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  T_ASSERT(null >= 0);
  int saved_out = redirect(1, null);
  int saved_err = redirect(2, slave);
  luaL_loadstring(L, "return require('ctcli.ui.console').width()");
  long on_stderr = lua_pcall(L, 0, 1, 0) == LUA_OK ? (long)lua_tointeger(L, -1) : -1;
  lua_pop(L, 1);
  restore(2, saved_err);
  restore(1, saved_out);
  T_ASSERT(on_stderr == 101);

  saved_out = redirect(1, slave);
  luaL_loadstring(L, "return require('ct').term.width()");
  long on_stdout = lua_pcall(L, 0, 1, 0) == LUA_OK ? (long)lua_tointeger(L, -1) : -1;
  lua_pop(L, 1);
  restore(1, saved_out);
  T_ASSERT(on_stdout == 101);
  close(null);
  close(slave);
  close(master);
  close(pipefd[0]);
  close(pipefd[1]);
}
