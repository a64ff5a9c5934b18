#ifndef HI_SIGV4_H
#define HI_SIGV4_H
#include <lua.h>
/*
** Adds this part's functions to the module table on top of the stack:
**   sign(req) -> result | nil, message    (raises on misuse)
**   _sigv4.{canonical_uri, canonical_query, canonical_headers, sha256_hex,
**           hmac_sha256_hex, signing_key_hex, string_to_sign}   (for specs)
** and registers the metatable of its internal work buffers.
*/
void hi_sigv4_open(lua_State *L);
#endif
