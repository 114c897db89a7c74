#ifndef CT_TEST_HARNESS_H
#define CT_TEST_HARNESS_H
/* One DEFINE_TEST per case; CMake registers each case as its own ctest test
   (`test_x case_name`). A skip exits 77 and says why. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct.h"

typedef void (*t_case_fn)(void);
void t_register(const char *name, t_case_fn fn);

#define DEFINE_TEST(name)                                                      \
  static void name(void);                                                     \
  __attribute__((constructor)) static void register_##name(void) {            \
    t_register(#name, name);                                                  \
  }                                                                           \
  static void name(void)

void t_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
void t_skip(const char *why) __attribute__((noreturn));

#define T_ASSERT(cond)                                                         \
  do {                                                                        \
    if (!(cond)) t_fail(__FILE__, __LINE__, "assertion failed: %s", #cond);    \
  } while (0)
#define T_ASSERT_STR(a, b)                                                     \
  do {                                                                        \
    const char *a_ = (a), *b_ = (b);                                          \
    if (!a_ || !b_ || strcmp(a_, b_) != 0)                                    \
      t_fail(__FILE__, __LINE__, "expected \"%s\", got \"%s\"", b_ ? b_ : "(null)", \
             a_ ? a_ : "(null)");                                             \
  } while (0)

/* A fresh engine state (ct, cjson, bundled modules); closed at exit. */
lua_State *t_state(void);
/* Runs Lua code in L; fails the test with the Lua error if it raises.
   Leaves the chunk's first result on the stack. */
#define T_LUA(L, code) t_lua((L), (code), __FILE__, __LINE__)
void t_lua(lua_State *L, const char *code, const char *file, int line);
/* A temporary directory for this case, removed at exit. */
const char *t_tmpdir(void);

#endif
