/* hi_http.c: placeholder, being written. */
#include "hi_core.h"
#include "hi_http.h"

void hi_http_open(lua_State *L) {
  (void)L;
}
