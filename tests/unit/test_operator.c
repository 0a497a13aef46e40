/* What the operator is told (operator.h): every reason a board can fail with has its own
 * action, its words fit the 80-column view, the table is sorted for its lookup and names only
 * real codes; a message loses the prefixes that only repeat its reason; a slot's word and
 * kind for every state, "no answer" for a silent port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "operator.h"
#include "slot.h"

/* The code whose name is name, or 0. */
static int code_of(const char *name)
{
	for (int k = -1; strcmp(st_errname(k), "UNKNOWN") != 0; k--) {
		if (strcmp(st_errname(k), name) == 0)
			return k;
	}
	return 0;
}

static void test_table(void **state)
{
	(void)state;
	assert_true(st_action_count() > 50);
	for (size_t i = 0; i < st_action_count(); i++) {
		const struct st_action *a = st_action_at(i);

		if (code_of(a->reason) == 0)
			fail_msg("%s is not a code of ST_ERR_MAP", a->reason);
		if (i && strcmp(st_action_at(i - 1)->reason, a->reason) >= 0)
			fail_msg("%s is out of order (after %s)", a->reason,
				 st_action_at(i - 1)->reason);
		if (strlen(a->words) > ST_ACTION_WORDS_MAX)
			fail_msg("%s: '%s' is %zu columns, more than %d", a->reason, a->words,
				 strlen(a->words), ST_ACTION_WORDS_MAX);
		for (const char *p = a->words; *p; p++)
			assert_true(*p >= 0x20 && *p < 0x7f);
		assert_true(a->todo[0] && a->todo[strlen(a->todo) - 1] != '.');
		assert_ptr_equal(st_action_for(a->reason), a);
		if (a->cls == ST_ACTION_ENGINEER)
			assert_non_null(strstr(a->todo, a->words));
	}
}

/* Every code a board on a slot can fail with (the sections of ST_ERR_MAP that slot.c, the
 * policy, the pool and the ledger use) has an entry of its own: none falls back to "unknown
 * reason". */
static void test_every_failure(void **state)
{
	static const char *const prefixes[] = { "CSR_",	  "PROTO_", "PORT",	"SLOT_", "POOL_",
						"LEDGER_", "SIGNER_", "ISSUE_", "PROFILE" };
	const struct st_action *fallback = st_action_for("NO_SUCH_REASON");
	size_t checked = 0;

	(void)state;
	assert_ptr_equal(st_action_for(NULL), fallback);
	assert_int_equal(fallback->cls, ST_ACTION_ENGINEER);
	for (int k = -1; strcmp(st_errname(k), "UNKNOWN") != 0; k--) {
		const char *name = st_errname(k);

		for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++) {
			if (strncmp(name, prefixes[p], strlen(prefixes[p])) != 0)
				continue;
			if (st_action_for(name) == fallback)
				fail_msg("%s has no action", name);
			checked++;
		}
	}
	assert_true(checked > 80);
	/* The ones the issue names. */
	assert_int_equal(st_action_for("CSR_SIGNATURE")->cls, ST_ACTION_SWAP);
	assert_string_equal(st_action_for("CSR_SIGNATURE")->todo,
			    "take the board out and put it in the reject bin");
	assert_int_equal(st_action_for("CSR_KEY_TYPE")->cls, ST_ACTION_ENGINEER);
	assert_string_equal(st_action_for("CSR_KEY_TYPE")->todo,
			    "call an engineer: firmware offers the wrong key type");
	assert_int_equal(st_action_for("PROTO_TIMEOUT")->cls, ST_ACTION_RETRY);
	assert_non_null(strstr(st_action_for("PROTO_TIMEOUT")->todo, "reseat the board"));
	assert_string_equal(st_action_class_name(ST_ACTION_SWAP), "swap board");
	assert_string_equal(st_action_class_name(ST_ACTION_ENGINEER), "call engineer");
	assert_string_equal(st_action_class_name(ST_ACTION_RETRY), "retry");
}

static void test_detail(void **state)
{
	(void)state;
	assert_string_equal(st_action_detail("CSR_KEY_TYPE: CSR rejected: key is RSA-1024"),
			    "key is RSA-1024");
	assert_string_equal(st_action_detail("CSR rejected: key is RSA-1024"), "key is RSA-1024");
	assert_string_equal(st_action_detail("PROTO_TIMEOUT: the board did not answer WRITE"),
			    "the board did not answer WRITE");
	/* Not a code name: left as it is. */
	assert_string_equal(st_action_detail("HELLO: ERROR BUSY: later"), "HELLO: ERROR BUSY: later");
	assert_string_equal(st_action_detail("port /dev/ttyUSB0: gone"), "port /dev/ttyUSB0: gone");
	assert_string_equal(st_action_detail("A: x"), "A: x");
	assert_string_equal(st_action_detail(""), "");
	assert_string_equal(st_action_detail(NULL), "");
}

static void test_words(void **state)
{
	struct st_slot_info s;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.last_pass = -1;
	for (int st = 0; st < ST_SLOT_NSTATES; st++) {
		const char *w;

		s.state = (enum st_slot_state)st;
		w = st_slot_word(&s, 0);
		assert_true(strlen(w) >= 2 && strlen(w) <= 9);
		assert_string_not_equal(w, "?");
		assert_string_not_equal(st_slot_kind_name(st_slot_kind_of(&s)), "?");
	}
	s.state = ST_SLOT_WAITING;
	assert_string_equal(st_slot_word(&s, ST_SILENT_MS - 1), "waiting");
	assert_string_equal(st_slot_word(&s, ST_SILENT_MS), "no answer");
	assert_int_equal(st_slot_kind_of(&s), ST_KIND_WAITING);
	/* A finished board in its fixture shows its outcome. */
	s.state = ST_SLOT_LEAVING;
	s.last_pass = 0;
	assert_int_equal(st_slot_kind_of(&s), ST_KIND_FAIL);
	assert_string_equal(st_slot_word(&s, 0), "FAIL");
	s.last_pass = 1;
	assert_string_equal(st_slot_word(&s, 0), "PASS");
	/* Stuck: busy that long, unless it waits for a paused pool. */
	s.state = ST_SLOT_QUEUED;
	assert_false(st_slot_is_stuck(&s, ST_KIND_BUSY, ST_STUCK_MS - 1, 0));
	assert_true(st_slot_is_stuck(&s, ST_KIND_BUSY, ST_STUCK_MS, 0));
	assert_false(st_slot_is_stuck(&s, ST_KIND_BUSY, ST_STUCK_MS, 1));
	assert_int_equal(st_slot_attention(&s, ST_KIND_BUSY, ST_STUCK_MS, 0), ST_ATT_STUCK);
	/* The reason of the last failure. */
	assert_null(st_slot_reason(&s));
	s.last_code = ST_E_CSR_SIGNATURE;
	assert_string_equal(st_slot_reason(&s), "CSR_SIGNATURE");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_every_failure),
		cmocka_unit_test(test_detail),
		cmocka_unit_test(test_words),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
