/* ctcli: the whole CLI is Lua (ctcli.main); C builds the state and exits
   with the status it returns. Built with CT_SCRIPT_RUNNER it is ctcli-lua
   SCRIPT [ARGS], a Lua script inside the engine (with `ct`, `cjson` and the
   bundled modules) as `nvim -ll` does: the test suite runs busted through it. */
#include "ct.h"
#include "monitor.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  /* A container's monitor is this binary too, without Lua (monitor.c);
     ct.monitor.spawn re-executes the running binary, ctcli-lua under busted. */
  if (argc > 1 && strcmp(argv[1], CT_MONITOR_ARG) == 0) return ct_monitor_main(argc, argv);
#ifdef CT_SCRIPT_RUNNER
  if (argc < 2) {
    fprintf(stderr, "usage: ctcli-lua SCRIPT [ARGS...]\n");
    return 2;
  }
#endif
  lua_State *L = ct_newstate();
  if (!L) {
    fprintf(stderr, "ctcli: out of memory\n");
    return 1;
  }
#ifdef CT_SCRIPT_RUNNER
  int code = ct_runfile(L, argv[1], argc - 2, argv + 2);
#else
  int code = ct_runmain(L, "ctcli.main", argc - 1, argv + 1);
#endif
  lua_close(L);
  return code;
}
