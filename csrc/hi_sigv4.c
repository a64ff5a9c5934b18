/* hi_sigv4.c: placeholder, being written. */
#include "hi_core.h"
#include "hi_sigv4.h"

void hi_sigv4_open(lua_State *L) {
  (void)L;
}
