/* Logging to stderr. Lines carry a syslog priority prefix ("<3>") when stderr is not a
 * terminal, which journald turns into structured priorities; on a terminal they read
 * "station: error: ...". Never pass a PIN or key material to these functions.
 * Thread-safe: each line is written with one write(2). */
#ifndef ST_LOG_H
#define ST_LOG_H

enum st_log_level {
	ST_LOG_ERR = 3,
	ST_LOG_WARN = 4,
	ST_LOG_NOTICE = 5,
	ST_LOG_INFO = 6,
	ST_LOG_DEBUG = 7,
};

/* Messages above this level are dropped. Default ST_LOG_INFO. */
void st_log_set_level(enum st_log_level level);

/* Forces the priority prefix on (1) or off (0); default: on when stderr is not a tty. */
void st_log_set_prefix(int on);

void st_log(enum st_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define st_err(...) st_log(ST_LOG_ERR, __VA_ARGS__)
#define st_warn(...) st_log(ST_LOG_WARN, __VA_ARGS__)
#define st_notice(...) st_log(ST_LOG_NOTICE, __VA_ARGS__)
#define st_info(...) st_log(ST_LOG_INFO, __VA_ARGS__)
#define st_debug(...) st_log(ST_LOG_DEBUG, __VA_ARGS__)

#endif
