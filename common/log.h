/*
 * Logging for all programs: one line per event,
 *   2026-11-26T08:16:00.123Z sidecar-dataplane[1234] INFO message
 * to stderr or a file that can be reopened after logrotate.
 * Nothing secret is ever passed here: callers log names and masks, never keys.
 */
#ifndef SC_LOG_H
#define SC_LOG_H

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* prog: name in each line; path: NULL for stderr. Returns 0 or -1. */
int  log_init(const char *prog, enum log_level level, const char *path);
int  log_level_parse(const char *s, enum log_level *out);	/* "error".."debug" */
void log_set_level(enum log_level level);
int  log_enabled(enum log_level level);
/* Reopen the log file (after logrotate moved it); safe to call from the loop. */
int  log_reopen(void);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A value from outside (a client's model name, a provider name) for a
 * key=value log field: as is when it is plain (letters, digits and . _ / : -
 * @ +), else in double quotes with " \ and bytes outside printable ASCII as
 * \" \\ \xHH, so a value can never forge other fields. Cut to fit out
 * (at least 8 bytes), ending in "..." then. Returns out. */
const char *log_value(const char *s, char *out, size_t outlen);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
