#include "err.h"

#include <stdarg.h>
#include <stdio.h>

#define ST__ERR_MSG(name, msg) [ST__IDX_##name] = msg,
static const char *const err_msgs[ST__IDX_COUNT_] = {
	[ST__IDX_OK_] = "success",
	ST_ERR_MAP(ST__ERR_MSG)
};
#undef ST__ERR_MSG

#define ST__ERR_NAME(name, msg) [ST__IDX_##name] = #name,
static const char *const err_names[ST__IDX_COUNT_] = {
	[ST__IDX_OK_] = "OK",
	ST_ERR_MAP(ST__ERR_NAME)
};
#undef ST__ERR_NAME

const char *st_strerror(int code)
{
	if (code > 0 || -code >= ST__IDX_COUNT_)
		return "unknown error";
	return err_msgs[-code];
}

const char *st_errname(int code)
{
	if (code > 0 || -code >= ST__IDX_COUNT_)
		return "UNKNOWN";
	return err_names[-code];
}

void st_msgf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

int st_errf(char *buf, size_t len, int code, const char *fmt, ...)
{
	va_list ap;

	if (!buf || len == 0)
		return code;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return code;
}
