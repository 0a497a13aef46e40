#include "version.h"

#ifdef STATION_GIT_REV_HEADER
/* Written in the build tree by git_rev.cmake, so not one of the source tree's headers. */
#include <station_git_rev.h>
#endif

const char *st_version_string(void)
{
	return STATION_VERSION " (" STATION_GIT_REV ")";
}
