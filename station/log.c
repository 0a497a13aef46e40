#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static int log_level = ST_LOG_INFO;
static int log_prefix = -1;

void st_log_set_level(enum st_log_level level)
{
	log_level = level;
}

void st_log_set_prefix(int on)
{
	log_prefix = on;
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

void st_log(enum st_log_level level, const char *fmt, ...)
{
	char line[2048];
	int n;
	va_list ap;

	if ((int)level > log_level)
		return;
	if (log_prefix < 0)
		log_prefix = !isatty(STDERR_FILENO);
	if (log_prefix)
		n = snprintf(line, sizeof(line), "<%d>%s", (int)level, level_word(level));
	else
		n = snprintf(line, sizeof(line), "station: %s", level_word(level));
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < sizeof(line))
		n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, (size_t)n);
}
