/* hi_json.c: placeholder, being written. */
#include "hi_core.h"
#include "hi_json.h"

void hi_json_open(lua_State *L) {
  (void)L;
}
