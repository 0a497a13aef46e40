/* The profiles in force (a set reference-counted across reloads) and the choice of one
 * for a board. Loop thread only. */
#ifndef ST_PROFILES_H
#define ST_PROFILES_H

#include <stddef.h>

#include "profile.h"

/* The profiles in force: those chosen by hardware id, the default, and the slots' own.
 * Reference-counted, so that a reload (SIGHUP) leaves boards in flight on the set they
 * started with. */
struct st_profiles {
	unsigned refs;
	struct st_profile_set *dir;     /* a profiles directory (st_profile_set_load); may be
					 * NULL */
	const struct st_profile **list; /* profiles named one by one, chosen like dir's */
	size_t n;
	const struct st_profile *deflt; /* when none of list matches; may be NULL */
	char **fixed_paths;             /* profiles named by slots, by path */
	const struct st_profile **fixed;
	size_t nfixed;
};

/* A new empty set with one reference, or NULL. */
struct st_profiles *st_profiles_new(void);
struct st_profiles *st_profiles_ref(struct st_profiles *set);
/* Drops a reference; the last one frees the set and its profiles. NULL is allowed. */
void st_profiles_unref(struct st_profiles *set);

/* The profile for a board: the slot's own (fixed_path, may be NULL), else the most specific
 * profile of the list or the directory that matches hardware_id and sku (one that names a
 * sku beats one that does not), else the default. Returns 0 and *out, or ST_E_PROFILE_NOMATCH /
 * ST_E_SLOT_PROFILE_AMBIGUOUS with a message. */
int st_profiles_choose(const struct st_profiles *set, const char *fixed_path,
			  const char *hardware_id, const char *sku,
			  const struct st_profile **out, char *err, size_t errlen);

#endif
