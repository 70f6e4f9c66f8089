/* The cluster admission script (dataplane/cluster.lua), compiled in by
 * scripts/embed-lua into the generated dataplane/cluster_lua.c. */
#ifndef SC_CLUSTER_LUA_H
#define SC_CLUSTER_LUA_H

extern const char cluster_lua_source[];

#endif
