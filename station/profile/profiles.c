#include "profiles.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "err.h"
#include "log.h"

struct st_profiles *st_profiles_new(void)
{
	struct st_profiles *set = calloc(1, sizeof(*set));

	if (set)
		set->refs = 1;
	return set;
}

struct st_profiles *st_profiles_ref(struct st_profiles *set)
{
	if (set)
		set->refs++;
	return set;
}

void st_profiles_unref(struct st_profiles *set)
{
	if (!set || --set->refs > 0)
		return;
	st_profile_set_free(set->dir);
	for (size_t i = 0; i < set->n; i++)
		st_profile_free(set->list[i]);
	free(set->list);
	st_profile_free(set->deflt);
	for (size_t i = 0; i < set->nfixed; i++) {
		st_profile_free(set->fixed[i]);
		free(set->fixed_paths[i]);
	}
	free(set->fixed);
	free(set->fixed_paths);
	st_auth_set_unref(set->auths);
	free(set);
}

int st_profiles_add_fixed(struct st_profiles *set, const char *path, char *err,
			  size_t errlen)
{
	const struct st_profile **fixed;
	char **paths;
	int rc;

	for (size_t i = 0; i < set->nfixed; i++) {
		if (strcmp(set->fixed_paths[i], path) == 0)
			return 0;
	}
	fixed = realloc(set->fixed, (set->nfixed + 1) * sizeof(*fixed));
	if (fixed)
		set->fixed = fixed;
	paths = realloc(set->fixed_paths, (set->nfixed + 1) * sizeof(*paths));
	if (paths)
		set->fixed_paths = paths;
	if (!fixed || !paths)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	set->fixed_paths[set->nfixed] = strdup(path);
	if (!set->fixed_paths[set->nfixed])
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	rc = st_profile_load(path, stderr, &set->fixed[set->nfixed], err, errlen);
	if (rc < 0) {
		free(set->fixed_paths[set->nfixed]);
		return rc;
	}
	set->nfixed++;
	return 0;
}

int st_profiles_load(const struct st_config *cfg, const char *const *fixed, size_t nfixed,
		     struct st_profiles **out, char *err, size_t errlen)
{
	struct st_profiles *set;
	int rc = 0;

	*out = NULL;
	set = st_profiles_new();
	if (!set)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	if (cfg->profiles) {
		rc = st_profile_set_load(cfg->profiles, stderr, &set->dir, err, errlen);
		if (rc < 0)
			goto out;
	}
	if (cfg->n_profile_files) {
		set->list = calloc(cfg->n_profile_files, sizeof(*set->list));
		if (!set->list) {
			rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < cfg->n_profile_files; i++) {
			rc = st_profile_load(cfg->profile_files[i], stderr, &set->list[set->n], err,
					     errlen);
			if (rc < 0)
				goto out;
			set->n++;
		}
	}
	if (cfg->default_profile) {
		rc = st_profile_load(cfg->default_profile, stderr, &set->deflt, err, errlen);
		if (rc < 0)
			goto out;
	}
	for (size_t i = 0; i < nfixed; i++) {
		rc = st_profiles_add_fixed(set, fixed[i], err, errlen);
		if (rc < 0)
			goto out;
	}
	if (!set->dir && !set->n && !set->deflt && !set->nfixed) {
		rc = st_errf(err, errlen, ST_E_CONFIG,
			     "%s names no profile: set 'profiles' (a directory or a list)%s "
			     "'default_profile'%s",
			     cfg->path, fixed ? "," : " or", fixed ? ", or a slot's 'profile'" : "");
		goto out;
	}
	*out = set;
	set = NULL;
out:
	st_profiles_unref(set);
	return rc;
}

size_t st_profiles_count(const struct st_profiles *set)
{
	return set->n + set->nfixed + (set->deflt ? 1 : 0) +
	       (set->dir ? st_profile_set_count(set->dir) : 0);
}

int st_profiles_reload(const char *config_path, const char *const *fixed, size_t nfixed,
		       struct st_profiles **set)
{
	struct st_config *cfg = NULL;
	struct st_profiles *next = NULL;
	char err[1024];
	int rc;

	rc = st_config_load(config_path, stderr, &cfg, err, sizeof(err));
	if (rc == 0)
		rc = st_profiles_load(cfg, fixed, nfixed, &next, err, sizeof(err));
	st_config_free(cfg);
	if (rc < 0) {
		st_err("SIGHUP: %s; keeping the profiles in force", err);
		return rc;
	}
	st_profiles_unref(*set);
	*set = next;
	st_notice("SIGHUP: %zu profiles reloaded; boards and requests in flight keep the ones "
		  "they started with",
		  st_profiles_count(next));
	return (int)st_profiles_count(next);
}

int st_profiles_choose(const struct st_profiles *set, const char *fixed_path,
			  const char *hardware_id, const char *sku,
			  const struct st_profile **out, char *err, size_t errlen)
{
	const struct st_profile *best = NULL, *tie = NULL;
	int best_score = -1;

	*out = NULL;
	if (fixed_path) {
		for (size_t i = 0; i < set->nfixed; i++) {
			const struct st_profile *p = set->fixed[i];

			if (strcmp(set->fixed_paths[i], fixed_path) != 0)
				continue;
			/* The slot's own profile, as long as the board is one it describes. */
			if ((p->n_match_hardware_ids || p->match_sku) &&
			    !st_profile_matches(p, hardware_id, sku))
				return st_errf(err, errlen, ST_E_PROFILE_NOMATCH,
					       "board reports hardware id '%.64s' sku '%.64s'; the "
					       "slot's profile %.200s (sku %.64s) is for other boards",
					       hardware_id, sku, p->path, p->sku);
			*out = p;
			return 0;
		}
		return st_errf(err, errlen, ST_E_PROFILE_NOMATCH, "profile %.200s is not loaded",
			       fixed_path);
	}
	for (size_t i = 0; i < set->n; i++) {
		const struct st_profile *p = set->list[i];
		int score;

		if (!st_profile_matches(p, hardware_id, sku))
			continue;
		score = p->match_sku ? 1 : 0;
		if (score > best_score) {
			best = p;
			best_score = score;
			tie = NULL;
		} else if (score == best_score) {
			tie = p;
		}
	}
	if (best && tie)
		return st_errf(err, errlen, ST_E_SLOT_PROFILE_AMBIGUOUS,
			       "hardware id '%.64s' sku '%.64s' matches both %.200s and %.200s",
			       hardware_id, sku, best->path, tie->path);
	if (!best && set->dir)
		best = st_profile_set_match(set->dir, hardware_id, sku);
	if (!best)
		best = set->deflt;
	if (!best)
		return st_errf(err, errlen, ST_E_PROFILE_NOMATCH,
			       "no profile matches hardware id '%.64s' sku '%.64s' (%zu profiles "
			       "loaded, no default)",
			       hardware_id, sku,
			       set->n + (set->dir ? st_profile_set_count(set->dir) : 0));
	*out = best;
	return 0;
}
