/*
 * The periodic hand-off to the database writer (persist.c): the statistics
 * every stats_flush_ms and the live status snapshot every status_publish_ms,
 * on one loop timer, and the final flush on a graceful stop.
 */
#ifndef SC_PERSIST_H
#define SC_PERSIST_H

struct loop;

/* Start the writer thread (stats.h) on db_path and arm the timer; 0 or -1. */
int    persist_init(struct loop *l, const char *db_path);
/* Final flush: everything counted and the last snapshot; stops the writer. */
void   persist_shutdown(void);
/* Longest snapshot build on the loop so far, seconds (for the metrics). */
double persist_build_max_s(void);

#endif
