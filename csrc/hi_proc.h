/*
** hi_proc.h: running a program without a shell, for credential_process.
** Lua sees only core.spawn(argv [, opts]) -> result | nil, err; the
** process, its pipes and its buffers never outlive the call.
*/
#ifndef HI_PROC_H
#define HI_PROC_H
#include <lua.h>

/* Metatable name of the buffers box that a raise cannot leak. */
#define HI_PROC_BOX_MT "healthimaging.proc.box"

/* Adds spawn to the module table on top of the stack. May raise (out of
** memory). */
void hi_proc_open(lua_State *L);
#endif
