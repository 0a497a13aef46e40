/* Logging to stderr, one line per message, in one of three forms (st_log_set_format):
 *  - text (the default): "station: error: ..." on a terminal; when stderr is not a terminal
 *    each line starts with a syslog priority prefix ("<3>error: ..."), which journald turns
 *    into the entry's priority;
 *  - journal: the priority prefix always;
 *  - json: one JSON object per line, {"priority":3,"level":"error","msg":"..."}, for log
 *    shippers.
 * In every form a message is one line of printable text: control characters, bytes that are
 * not UTF-8 and the like are written as escapes (st_escape(), "\x1b"), whoever built it.
 * Never pass a PIN or key material to these functions.
 * Thread-safe: each line is written with one write(2); set the level and format before
 * other threads log. */
#ifndef ST_LOG_H
#define ST_LOG_H

enum st_log_level {
	ST_LOG_ERR = 3,
	ST_LOG_WARN = 4,
	ST_LOG_NOTICE = 5,
	ST_LOG_INFO = 6,
	ST_LOG_DEBUG = 7,
};

enum st_log_format {
	ST_LOG_FORMAT_TEXT,    /* words on a terminal, priority prefixes otherwise */
	ST_LOG_FORMAT_JOURNAL, /* priority prefixes always */
	ST_LOG_FORMAT_JSON,    /* one JSON object per line */
};

/* Messages above this level are dropped. Default ST_LOG_INFO. */
void st_log_set_level(enum st_log_level level);

/* Forces the priority prefix of the text form on (1) or off (0); default: on when stderr is
 * not a tty. */
void st_log_set_prefix(int on);

/* Selects the form of every following line. Default ST_LOG_FORMAT_TEXT. */
void st_log_set_format(enum st_log_format format);

/* The form in use, e.g. for a live view that stays off unless logs go to a terminal. */
enum st_log_format st_log_get_format(void);

/* Parses "text", "journal" or "json". Returns the format (>= 0) or ST_E_INVAL. */
int st_log_format_parse(const char *name);

/* Where lines go instead of stderr while something else owns the terminal (the live view of
 * `station run`). fn(arg, level, msg) gets each line that passes the level, as the bare
 * message (no prefix, no newline), and returns 1 when it took the line (nothing is written
 * to stderr) or 0 to have it written as usual as well. fn runs on the thread that logs,
 * under a lock that st_log_set_sink() takes too: once st_log_set_sink() returns, the
 * previous fn is neither running nor called again. fn must not log. NULL restores stderr
 * alone. Any thread. */
typedef int (*st_log_sink_fn)(void *arg, enum st_log_level level, const char *msg);
void st_log_set_sink(st_log_sink_fn fn, void *arg);

void st_log(enum st_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define st_err(...) st_log(ST_LOG_ERR, __VA_ARGS__)
#define st_warn(...) st_log(ST_LOG_WARN, __VA_ARGS__)
#define st_notice(...) st_log(ST_LOG_NOTICE, __VA_ARGS__)
#define st_info(...) st_log(ST_LOG_INFO, __VA_ARGS__)
#define st_debug(...) st_log(ST_LOG_DEBUG, __VA_ARGS__)

#endif
