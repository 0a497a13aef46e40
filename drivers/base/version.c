#include "version.h"

const char *st_version_string(void)
{
	return STATION_VERSION " (" STATION_GIT_REV ")";
}
