/* ctcli-lua SCRIPT [ARGS]: runs a Lua script inside the ctcli engine (with
   `ct`, `cjson` and the bundled modules), as `nvim -ll` does; the test
   suite runs busted through it. */
#include "ct.h"
#include "monitor.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  /* ct.monitor.spawn re-executes the running binary: this one, under busted. */
  if (argc > 1 && strcmp(argv[1], CT_MONITOR_ARG) == 0) return ct_monitor_main(argc, argv);
  if (argc < 2) {
    fprintf(stderr, "usage: ctcli-lua SCRIPT [ARGS...]\n");
    return 2;
  }
  lua_State *L = ct_newstate();
  if (!L) return 1;
  int code = ct_runfile(L, argv[1], argc - 2, argv + 2);
  lua_close(L);
  return code;
}
