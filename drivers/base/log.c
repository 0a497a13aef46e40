#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

#define LOG_MSG_MAX 2048
/* A JSON line: the message escaped (at most 6 bytes per input byte for control
 * characters, 3 for U+FFFD), plus the fields around it. Longer lines are cut. */
#define LOG_JSON_MAX (LOG_MSG_MAX * 3 + 128)

static int log_level = ST_LOG_INFO;
static int log_prefix = -1;
static enum st_log_format log_format = ST_LOG_FORMAT_TEXT;
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static st_log_sink_fn sink_fn;
static void *sink_arg;

void st_log_set_sink(st_log_sink_fn fn, void *arg)
{
	pthread_mutex_lock(&sink_lock);
	sink_fn = fn;
	sink_arg = arg;
	pthread_mutex_unlock(&sink_lock);
}

/* Offers msg to the sink; returns 1 when it took it. */
static int to_sink(enum st_log_level level, const char *msg)
{
	int took = 0;

	pthread_mutex_lock(&sink_lock);
	if (sink_fn)
		took = sink_fn(sink_arg, level, msg) == 1;
	pthread_mutex_unlock(&sink_lock);
	return took;
}

void st_log_set_level(enum st_log_level level)
{
	log_level = level;
}

void st_log_set_prefix(int on)
{
	log_prefix = on;
}

void st_log_set_format(enum st_log_format format)
{
	log_format = format;
}

enum st_log_format st_log_get_format(void)
{
	return log_format;
}

int st_log_format_parse(const char *name)
{
	if (!name)
		return ST_E_INVAL;
	if (strcmp(name, "text") == 0)
		return ST_LOG_FORMAT_TEXT;
	if (strcmp(name, "journal") == 0)
		return ST_LOG_FORMAT_JOURNAL;
	if (strcmp(name, "json") == 0)
		return ST_LOG_FORMAT_JSON;
	return ST_E_INVAL;
}

static const char *level_word(enum st_log_level level)
{
	switch (level) {
	case ST_LOG_ERR:
		return "error: ";
	case ST_LOG_WARN:
		return "warning: ";
	case ST_LOG_NOTICE:
		return "";
	case ST_LOG_INFO:
		return "";
	case ST_LOG_DEBUG:
		return "debug: ";
	}
	return "";
}

static const char *level_name(enum st_log_level level)
{
	switch (level) {
	case ST_LOG_ERR:
		return "error";
	case ST_LOG_WARN:
		return "warning";
	case ST_LOG_NOTICE:
		return "notice";
	case ST_LOG_INFO:
		return "info";
	case ST_LOG_DEBUG:
		return "debug";
	}
	return "info";
}

/* Appends msg to out[*pos..cap) as the body of a JSON string; stops before a character that
 * does not fit whole. */
static void json_escape(char *out, size_t *pos, size_t cap, const char *msg, size_t n)
{
	static const char hexd[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)msg;
	size_t i = 0, len, p = *pos;
	char esc[8];
	const char *piece;
	size_t plen;

	while (i < n) {
		len = 1;
		piece = esc;
		if (s[i] == '"' || s[i] == '\\') {
			esc[0] = '\\';
			esc[1] = (char)s[i];
			plen = 2;
		} else if (s[i] == '\n') {
			piece = "\\n";
			plen = 2;
		} else if (s[i] == '\t') {
			piece = "\\t";
			plen = 2;
		} else if (s[i] < 0x20) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hexd[s[i] >> 4];
			esc[5] = hexd[s[i] & 15];
			plen = 6;
		} else {
			len = st_utf8_len(s + i, n - i);
			if (len == 0) {
				/* Bytes from a board or a file name need not be UTF-8; a JSON
				 * line must be. */
				piece = "\xef\xbf\xbd";
				plen = 3;
				len = 1;
			} else {
				piece = msg + i;
				plen = len;
			}
		}
		if (p + plen > cap)
			break;
		memcpy(out + p, piece, plen);
		p += plen;
		i += len;
	}
	*pos = p;
}

static void write_json(enum st_log_level level, const char *msg, size_t n)
{
	char line[LOG_JSON_MAX];
	size_t pos;
	int h;

	h = snprintf(line, sizeof(line), "{\"priority\":%d,\"level\":\"%s\",\"msg\":\"", (int)level,
		     level_name(level));
	if (h < 0 || (size_t)h >= sizeof(line))
		return;
	pos = (size_t)h;
	json_escape(line, &pos, sizeof(line) - 3, msg, n);
	memcpy(line + pos, "\"}\n", 3);
	pos += 3;
	(void)!write(STDERR_FILENO, line, pos);
}

void st_log(enum st_log_level level, const char *fmt, ...)
{
	/* The message leaves room for the prefix of its line, so that a long one is cut (saying so)
	 * here and never again. */
	char raw[LOG_MSG_MAX], msg[LOG_MSG_MAX - 32], line[LOG_MSG_MAX];
	int n;
	va_list ap;

	if ((int)level > log_level)
		return;
	va_start(ap, fmt);
	n = vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(raw)) {
		n = (int)sizeof(raw) - 1;
		memcpy(raw + n - 3, "...", 3);
	}
	/* Callers escape what a board or a client sent where it enters a message; this is the
	 * last line of defence: no byte of a message may start a new journal entry, move the
	 * cursor of the terminal the log is read on, or make a JSON line invalid. Escapes made
	 * already are left as they are. */
	st_escape(msg, sizeof(msg), raw, (size_t)n, ST_ESCAPE_KEEP_BACKSLASH);
	n = (int)strlen(msg);
	if (to_sink(level, msg))
		return;
	if (log_format == ST_LOG_FORMAT_JSON) {
		write_json(level, msg, (size_t)n);
		return;
	}
	if (log_prefix < 0)
		log_prefix = !isatty(STDERR_FILENO);
	if (log_prefix || log_format == ST_LOG_FORMAT_JOURNAL)
		n = snprintf(line, sizeof(line), "<%d>%s%s", (int)level, level_word(level), msg);
	else
		n = snprintf(line, sizeof(line), "station: %s%s", level_word(level), msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, (size_t)n);
}
