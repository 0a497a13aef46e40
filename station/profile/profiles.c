#include "profiles.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

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
	free(set);
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
