#include "join.h"

#include <stdio.h>

void st_join(char *buf, size_t len, const char *const *items, const char *before,
	     const char *after)
{
	size_t used = 0;

	if (!len)
		return;
	buf[0] = '\0';
	for (size_t i = 0; items[i] && used < len; i++) {
		int w = snprintf(buf + used, len - used, "%s%s%s%s", i ? ", " : "", before, items[i],
				 after);

		if (w < 0)
			break;
		used += (size_t)w;
	}
}
