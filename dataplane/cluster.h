/*
 * Cluster admission: several data planes share one pool of keys through
 * Redis and never exceed a key's limit together (docs/cluster.md). A second
 * implementation of struct dispatch_admission, chosen when redis_url is set:
 * every start is granted by one Lua script (dataplane/cluster.lua) against
 * sliding windows kept in Redis, in one round trip, with the cooldowns,
 * invalid marks and emergency budgets shared the same way.
 *
 * Modes (the metric sidecar_cluster_mode, /health, the dashboard):
 *   shared       Redis answers: the cluster's windows decide;
 *   quarantine   Redis stopped answering: nothing is sent for one window
 *                (plus the time the others need to see this host gone)
 *                after the last good reply, since grants made by others
 *                meanwhile are unknown; also before Redis was ever reached;
 *   local_share  after that, each key serves floor(limit / hosts) per
 *                window on this host, hosts as last seen, until Redis is
 *                back; then this host's recent grants are replayed before
 *                anything new is asked.
 * Without redis_url the module is off and the dispatcher's local window
 * decides, exactly as on a single host.
 *
 * hiredis 0.14 is driven from the data plane's own poll() loop (our own
 * addRead/delRead/addWrite/delWrite/cleanup hooks); connect and reply
 * deadlines are the loop's timers, since hiredis has none in async mode.
 */
#ifndef SC_CLUSTER_H
#define SC_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct sc_buf;
struct json_object;

enum cluster_mode { CLUSTER_OFF, CLUSTER_SHARED, CLUSTER_QUARANTINE, CLUSTER_LOCAL_SHARE };

int  cluster_init(struct loop *l);
void cluster_shutdown(void);
/* Settings changed (registry reload): connect, reconnect or turn off. */
void cluster_on_reloaded(void);

enum cluster_mode cluster_mode(void);
const char *cluster_mode_name(enum cluster_mode m);
/* Hosts as last seen (>= 1 when on). */
int cluster_hosts(void);
/* Prometheus families (docs/metrics.md). */
void cluster_render_metrics(struct sc_buf *b);
/* The "cluster" object of the status snapshot (NULL when off). */
struct json_object *cluster_status_json(void);

#endif
