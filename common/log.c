/*
 * Logging for every program, one line per event in one format:
 *   2026-11-26T08:16:00.123Z sidecar-dataplane[1234] INFO message
 * Output goes to stderr or to a file opened in append mode, which log_reopen
 * re-opens after logrotate moved it. Each line is built in memory and written
 * with a single write(2), so lines from several processes appending to the
 * same file do not interleave. Callers never pass secrets here.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 2048	/* longer messages are cut, with "..." at the end */

static struct {
	char           prog[64];	/* name shown in each line */
	enum log_level level;		/* highest level written */
	char           path[1024];	/* "" = stderr */
	int            fd;		/* owned when path is set */
} log_state = { "sidecar", LOG_LVL_INFO, "", 2 };

static const char *const log_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

int
log_init(const char *prog, enum log_level level, const char *path)
{
	snprintf(log_state.prog, sizeof(log_state.prog), "%s", prog ? prog : "sidecar");
	log_state.level = level;
	if (path == NULL || *path == '\0') {
		log_state.path[0] = '\0';
		log_state.fd = 2;
		return 0;
	}
	if (strlen(path) >= sizeof(log_state.path))
		return -1;
	snprintf(log_state.path, sizeof(log_state.path), "%s", path);
	log_state.fd = 2;	/* until the file is open, and if it cannot be */
	return log_reopen();
}

int
log_level_parse(const char *s, enum log_level *out)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	size_t i;

	if (s == NULL)
		return -1;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*out = LOG_LVL_WARN;
		return 0;
	}
	return -1;
}

void
log_set_level(enum log_level level)
{
	log_state.level = level;
}

int
log_enabled(enum log_level level)
{
	return level <= log_state.level;
}

/* Open the configured file again; the old descriptor is closed only once the
 * new one is open, so a failed reopen keeps logging to the old file. */
int
log_reopen(void)
{
	int fd;

	if (log_state.path[0] == '\0')
		return 0;
	fd = open(log_state.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd == -1)
		return -1;
	if (log_state.fd > 2)
		close(log_state.fd);
	log_state.fd = fd;
	return 0;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	size_t off;
	int n;

	if (!log_enabled(level))
		return;
	if ((unsigned)level > LOG_LVL_DEBUG)
		level = LOG_LVL_DEBUG;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	off = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line + off, sizeof(line) - off, ".%03ldZ %s[%ld] %s ",
	    ts.tv_nsec / 1000000, log_state.prog, (long)getpid(), log_names[level]);
	if (n > 0)
		off += (size_t)n;
	va_start(ap, fmt);
	n = vsnprintf(line + off, sizeof(line) - off, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(line) - off - 1) {
		/* Cut: leave room for "...\n". */
		off = sizeof(line) - 5;
		memcpy(line + off, "...", 3);
		off += 3;
	} else
		off += (size_t)n;
	/* One event per line: newlines inside the message become spaces. */
	for (size_t i = 0; i < off; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[off++] = '\n';
	while (write(log_state.fd, line, off) == -1 && errno == EINTR)
		;
}

/* Whether c may stand unquoted in a key=value field. */
static int
log_plain_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
	    c == '_' || c == '/' || c == ':' || c == '-' || c == '@' || c == '+';
}

const char *
log_value(const char *s, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0, n = strlen(s);
	int plain = n > 0;

	for (i = 0; i < n && plain; i++)
		plain = log_plain_byte((unsigned char)s[i]);
	if (plain && n < outlen) {
		memcpy(out, s, n + 1);
		return out;
	}
	/* Room kept for the closing quote, "..." and the NUL. */
	out[o++] = '"';
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[4];
		size_t el = 0;

		if (c == '"' || c == '\\') {
			e[el++] = '\\';
			e[el++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			e[el++] = '\\';
			e[el++] = 'x';
			e[el++] = hex[c >> 4];
			e[el++] = hex[c & 15];
		} else {
			e[el++] = (char)c;
		}
		if (o + el + 5 > outlen) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(out + o, e, el);
		o += el;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}
