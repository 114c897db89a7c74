/* ctcli: the whole CLI is Lua (ctcli.main); C builds the state and exits
   with the status it returns. */
#include "ct.h"
#include "monitor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  /* A container's monitor is this binary too, without Lua (monitor.c). */
  if (argc > 1 && strcmp(argv[1], CT_MONITOR_ARG) == 0) return ct_monitor_main(argc, argv);
  lua_State *L = ct_newstate();
  if (!L) {
    fprintf(stderr, "ctcli: out of memory\n");
    return 1;
  }
  int code = ct_runmain(L, "ctcli.main", argc - 1, argv + 1);
  lua_close(L);
  return code;
}
