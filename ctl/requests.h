/*
 * `sidecarctl requests`: the request log (request_log, request_attempts)
 * for operators without a browser — the same rows and filters as the panel's
 * Requests view and GET /api/v2/requests (docs/admin-api.md).
 */
#ifndef SC_CTL_REQUESTS_H
#define SC_CTL_REQUESTS_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>

/* Parse --since: a duration back from now_s (30s, 10m, 2h, 7d), Unix
 * seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ. 0 or -1. */
int ctl_requests_since(const char *s, int64_t now_s, int64_t *out);

/* Run the command on an open database (argv[0] = "requests"); output to out,
 * errors to stderr. Returns the exit status (0, 1 failure, 2 usage). */
int ctl_requests_run(sqlite3 *db, int argc, char **argv, int64_t now_s, FILE *out);

#endif
