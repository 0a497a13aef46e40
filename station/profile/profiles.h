/* The profiles in force (a set reference-counted across reloads), loaded and reloaded the
 * same way for `station run` and `station serve`, and the choice of one for a board. Loading
 * blocks (it reads files); the set is used on the loop thread only. */
#ifndef ST_PROFILES_H
#define ST_PROFILES_H

#include <stddef.h>

#include "config.h"
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
	struct st_auth_set *auths;      /* the production authorizations in force (auth.h),
					 * reloaded with the profiles; may be NULL */
};

/* A new empty set with one reference, or NULL. */
struct st_profiles *st_profiles_new(void);
struct st_profiles *st_profiles_ref(struct st_profiles *set);
/* Drops a reference; the last one frees the set and its profiles. NULL is allowed. */
void st_profiles_unref(struct st_profiles *set);

/* Loads the profiles cfg names (its profiles directory or list, and default_profile) and the
 * slots' own profile files fixed[0..nfixed) (NULL when the caller runs no slots), each
 * problem written to stderr as file:line:col. A configuration that names no profile is
 * ST_E_CONFIG. Returns 0 and *out (one reference), or a negative ST_E_* code with a message;
 * *out is NULL then. */
int st_profiles_load(const struct st_config *cfg, const char *const *fixed, size_t nfixed,
		     struct st_profiles **out, char *err, size_t errlen);

/* Loads the profile file path into set's slot profiles, unless it is there already (a slot
 * that appears after the set was loaded). Returns 0 or a negative ST_E_* code with a
 * message; set is unchanged then. */
int st_profiles_add_fixed(struct st_profiles *set, const char *path, char *err,
			  size_t errlen);

/* How many profiles the set holds. */
size_t st_profiles_count(const struct st_profiles *set);

/* SIGHUP: loads the profiles as the configuration file config_path names them now (and the
 * slots' own, as st_profiles_load()) and, when every one loads, replaces *set by the new set
 * (dropping the caller's reference to the old one: boards and requests in flight keep the
 * set they hold) and logs how many were loaded. When anything fails it logs why and keeps
 * *set. Returns the number of profiles loaded, or a negative ST_E_* code. */
int st_profiles_reload(const char *config_path, const char *const *fixed, size_t nfixed,
		       struct st_profiles **set);

/* The profile for a board: the slot's own (fixed_path, may be NULL), else the most specific
 * profile of the list or the directory that matches hardware_id and sku (one that names a
 * sku beats one that does not), else the default. Returns 0 and *out, or ST_E_PROFILE_NOMATCH /
 * ST_E_SLOT_PROFILE_AMBIGUOUS with a message. */
int st_profiles_choose(const struct st_profiles *set, const char *fixed_path,
			  const char *hardware_id, const char *sku,
			  const struct st_profile **out, char *err, size_t errlen);

#endif
