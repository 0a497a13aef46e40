#ifndef ST_VERSION_H
#define ST_VERSION_H

/* "0.1.0 (git abc1234)": the version and the build it came from. */
const char *st_version_string(void);

#endif
