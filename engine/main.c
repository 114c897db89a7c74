/* ctcli: the whole CLI is Lua (ctcli.main); C builds the state and exits
   with the status it returns. */
#include "ct.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  lua_State *L = ct_newstate();
  if (!L) {
    fprintf(stderr, "ctcli: out of memory\n");
    return 1;
  }
  int code = ct_runmain(L, "ctcli.main", argc - 1, argv + 1);
  lua_close(L);
  return code;
}
