#ifndef CT_EMBEDDED_H
#define CT_EMBEDDED_H
#include <stddef.h>

struct ct_embedded {
  const char *module; /* "ctcli.cli" */
  const char *chunk;  /* "@lua/ctcli/cli.lua" */
  const char *source; /* precompiled bytecode (tools/embedlua.lua) */
  size_t len;
};

/* Generated at build time from lua/, sorted by module name (strcmp); ends
   with an all-zero entry, not counted in ct_embedded_count. */
extern const struct ct_embedded ct_embedded_modules[];
extern const size_t ct_embedded_count;

#endif
