#include "operator.h"

#include <string.h>

#include "err.h"
#include "slot.h"

#define SWAP_TODO "take the board out and put it in the reject bin"
#define RETRY_TODO "reseat the board: take it out and put it back in"

/* A board that is faulty itself; a fault of the line (firmware and profile disagree, the
 * station's CA, HSM or ledger): the instruction names the reason, since the engineer starts
 * from it; a board that may well pass when it runs again. */
#define SWAP(name, words) { #name, ST_ACTION_SWAP, words, SWAP_TODO }
#define ENGINEER(name, words) { #name, ST_ACTION_ENGINEER, words, "call an engineer: " words }
#define RETRY(name, words, todo) { #name, ST_ACTION_RETRY, words, todo }

/* Every reason a board on a slot can fail with (slot.c, the pool, the policy), and those a
 * board is unlikely to meet but an outcome may still carry. Sorted by name for the lookup;
 * a unit test checks the order, the widths, and that every name is one of ST_ERR_MAP. */
static const struct st_action actions[] = {
	ENGINEER(CONFIG, "the station's configuration is bad"),
	ENGINEER(CRYPTO, "the station's crypto library broke"),
	ENGINEER(CSR_ATTRIBUTE, "CSR carries a refused attribute"),
	ENGINEER(CSR_BC_MISMATCH, "firmware asks for another category"),
	ENGINEER(CSR_BC_MISSING, "firmware omits the production mark"),
	ENGINEER(CSR_BC_UNEXPECTED, "firmware asks for production"),
	ENGINEER(CSR_CHALLENGE_PASSWORD, "CSR carries a challenge password"),
	ENGINEER(CSR_CN_MISMATCH, "CSR names another device id"),
	ENGINEER(CSR_CN_MISSING, "CSR names no device id"),
	ENGINEER(CSR_CONTROL_CHAR, "CSR subject has control characters"),
	SWAP(CSR_DER, "board sent a damaged CSR"),
	SWAP(CSR_EMPTY, "board sent an empty CSR"),
	ENGINEER(CSR_EXTENSION, "firmware asks for bad extensions"),
	SWAP(CSR_FORMAT, "board sent a damaged CSR"),
	ENGINEER(CSR_KEY_CURVE, "firmware offers the wrong curve"),
	ENGINEER(CSR_KEY_CURVE_UNSUPPORTED, "firmware offers an unknown curve"),
	SWAP(CSR_KEY_POINT, "board made an invalid key"),
	ENGINEER(CSR_KEY_SIZE, "firmware offers the wrong key size"),
	ENGINEER(CSR_KEY_TYPE, "firmware offers the wrong key type"),
	SWAP(CSR_MULTIPLE, "board sent a damaged CSR"),
	ENGINEER(CSR_OU_MISMATCH, "firmware names another factory"),
	ENGINEER(CSR_OU_MISSING, "firmware names no factory"),
	SWAP(CSR_PEM, "board sent a damaged CSR"),
	SWAP(CSR_PEM_LABEL, "board sent a damaged CSR"),
	ENGINEER(CSR_PRINTABLE, "CSR subject has refused characters"),
	ENGINEER(CSR_REQ_CA, "firmware asks to be a CA"),
	ENGINEER(CSR_REQ_KEYCERTSIGN, "firmware asks to sign certificates"),
	ENGINEER(CSR_SIGALG, "firmware uses a refused signature"),
	ENGINEER(CSR_SIGALG_EDDSA, "firmware signs with EdDSA"),
	ENGINEER(CSR_SIGALG_PARAMS, "CSR signature has odd parameters"),
	ENGINEER(CSR_SIGALG_RSA, "firmware signs with RSA"),
	ENGINEER(CSR_SIGALG_SHA1, "firmware signs with SHA-1"),
	SWAP(CSR_SIGNATURE, "CSR self-signature does not verify"),
	SWAP(CSR_SIGNATURE_DER, "CSR signature is damaged"),
	ENGINEER(CSR_STRING_TYPE, "CSR subject uses refused strings"),
	ENGINEER(CSR_SUBJECT_DUP, "CSR subject repeats a field"),
	ENGINEER(CSR_SUBJECT_EXTRA, "CSR subject has an extra field"),
	ENGINEER(CSR_SUBJECT_MULTI_RDN, "CSR subject has a combined field"),
	SWAP(CSR_TOO_LARGE, "board sent an oversized CSR"),
	SWAP(CSR_TRAILING, "board sent a damaged CSR"),
	ENGINEER(CSR_UPPER_BOUND, "CSR subject field is too long"),
	SWAP(CSR_UTF8, "CSR subject is not valid text"),
	ENGINEER(CSR_VERSION, "firmware writes a bad CSR version"),
	RETRY(ENGINE_STOPPING, "the station stopped",
	      "leave the board in: it resumes when the station runs again"),
	ENGINEER(INTERNAL, "the station hit an internal error"),
	RETRY(IO, "the station could not write", RETRY_TODO),
	ENGINEER(ISSUE_CA_CERT, "the CA certificate is unusable"),
	ENGINEER(ISSUE_CA_CHAIN, "the CA chain is broken"),
	ENGINEER(ISSUE_CA_EXPIRED, "the CA has expired"),
	ENGINEER(ISSUE_CA_KEY, "the CA key is not supported"),
	ENGINEER(ISSUE_CA_KEY_MISMATCH, "the HSM key is not the CA's"),
	ENGINEER(ISSUE_CA_NOT_CA, "the CA certificate is not a CA"),
	ENGINEER(ISSUE_CA_OU, "profile names another factory"),
	ENGINEER(ISSUE_CA_SKI, "the CA certificate lacks a key id"),
	ENGINEER(ISSUE_PAST_CA, "certificate would outlive the CA"),
	ENGINEER(ISSUE_SERIAL, "no serial number for the board"),
	ENGINEER(LEDGER_BUSY, "the ledger is locked"),
	ENGINEER(LEDGER_CORRUPT, "the ledger is damaged"),
	ENGINEER(LEDGER_DUP_ID, "device id is in flight elsewhere"),
	ENGINEER(LEDGER_DUP_KEY, "key belongs to another device"),
	ENGINEER(LEDGER_DUP_SERIAL, "serial number is taken"),
	ENGINEER(LEDGER_IO, "the ledger cannot be written"),
	ENGINEER(LEDGER_OPEN, "the ledger cannot be opened"),
	ENGINEER(LEDGER_SQL, "the ledger refused a statement"),
	ENGINEER(LEDGER_STATE, "the ledger row changed meanwhile"),
	ENGINEER(LEDGER_VERSION, "the ledger is newer than the code"),
	RETRY(NOMEM, "the station ran out of memory", RETRY_TODO),
	ENGINEER(POOL_CLOSED, "signing is shut down"),
	RETRY(POOL_FULL, "signing queue was full", RETRY_TODO),
	ENGINEER(POOL_ID_OTHER_KEY, "device id is taken by another key"),
	ENGINEER(POOL_KEY_REUSED, "key belongs to another device"),
	ENGINEER(POOL_REISSUE_UNAUTH, "reissue without authentication"),
	RETRY(PORT, "the port failed", "reseat the board; check its cable if it fails again"),
	ENGINEER(PORT_BAUD, "the port refuses the line's rate"),
	RETRY(PORT_HANGUP, "the port hung up", "reseat the board; check its cable if it fails again"),
	RETRY(PORT_OPEN, "the port cannot be opened",
	      "reseat the board; check its cable if it fails again"),
	ENGINEER(PORT_UNKNOWN, "the slot's port type is unknown"),
	ENGINEER(PORT_UNSUPPORTED, "the port cannot do what it must"),
	ENGINEER(PROFILE, "the profile is invalid"),
	ENGINEER(PROFILE_DEVICE_ID, "device id does not fit the profile"),
	ENGINEER(PROFILE_NOMATCH, "no profile for this board"),
	ENGINEER(PROFILE_VALUE, "board identity unfit for its files"),
	RETRY(PROTO_CRC, "garbled answers from the board", RETRY_TODO),
	RETRY(PROTO_FIELD, "garbled answers from the board", RETRY_TODO),
	RETRY(PROTO_FRAME, "garbled answers from the board", RETRY_TODO),
	RETRY(PROTO_REMOTE, "the board reported an error",
	      "reseat the board; if it fails again, swap it"),
	RETRY(PROTO_TIMEOUT, "the board stopped answering",
	      "reseat the board; if it fails again, swap it"),
	RETRY(PROTO_TOO_LONG, "garbled answers from the board", RETRY_TODO),
	ENGINEER(RENDER_LIMIT, "profile's files are too large"),
	ENGINEER(SIGNER_BADSIG, "the HSM signs wrongly"),
	ENGINEER(SIGNER_DEVICE, "the HSM is unavailable"),
	ENGINEER(SIGNER_FAILED, "the HSM failed to sign"),
	ENGINEER(SIGNER_KEY, "the CA key is not in the HSM"),
	ENGINEER(SIGNER_MECH, "the HSM lacks the signing method"),
	ENGINEER(SIGNER_MODULE, "the HSM module cannot be loaded"),
	ENGINEER(SIGNER_NOPIN, "the HSM PIN is missing"),
	ENGINEER(SIGNER_PIN, "the HSM refused the PIN"),
	ENGINEER(SIGNER_SESSION, "the HSM session was lost"),
	ENGINEER(SIGNER_TOKEN, "the HSM token is missing"),
	ENGINEER(SIGNER_UNKNOWN, "the signer is not configured"),
	ENGINEER(SIGNER_URI, "the HSM's address is wrong"),
	RETRY(SLOT_BOARD_LEFT, "board was taken out too early",
	      "put the board back in and let it finish"),
	RETRY(SLOT_CSR_HASH, "CSR arrived damaged", RETRY_TODO),
	ENGINEER(SLOT_ECHO, "the port echoes: check the wiring"),
	ENGINEER(SLOT_ID_UNISSUED, "board names an id never issued"),
	ENGINEER(SLOT_KEY_STORAGE, "board's key storage is not allowed"),
	SWAP(SLOT_NO_DEVICE_ID, "board has no device id"),
	ENGINEER(SLOT_PATH, "profile file path unfit for boards"),
	ENGINEER(SLOT_PROFILE_AMBIGUOUS, "two profiles match the board"),
	SWAP(SLOT_RESYNC, "board keeps rebooting"),
	SWAP(SLOT_VERIFY_FILE, "board stores files wrongly"),
	SWAP(SLOT_VERIFY_POP, "board cannot prove its key"),
	ENGINEER(TEMPLATE, "a profile template is broken"),
	RETRY(TIMEOUT, "the board stopped answering",
	      "reseat the board; if it fails again, swap it"),
};

static const struct st_action fallback = {
	"", ST_ACTION_ENGINEER, "unknown reason", "call an engineer: unknown reason",
};

#define NACTIONS (sizeof(actions) / sizeof(actions[0]))

const struct st_action *st_action_for(const char *reason)
{
	size_t lo = 0, hi = NACTIONS;

	if (!reason)
		return &fallback;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(reason, actions[mid].reason);

		if (c == 0)
			return &actions[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return &fallback;
}

size_t st_action_count(void)
{
	return NACTIONS;
}

const struct st_action *st_action_at(size_t i)
{
	return i < NACTIONS ? &actions[i] : &fallback;
}

const char *st_action_class_name(enum st_action_class c)
{
	switch (c) {
	case ST_ACTION_SWAP:
		return "swap board";
	case ST_ACTION_RETRY:
		return "retry";
	default:
		return "call engineer";
	}
}

const char *st_action_class_key(enum st_action_class c)
{
	switch (c) {
	case ST_ACTION_SWAP:
		return "swap";
	case ST_ACTION_RETRY:
		return "retry";
	default:
		return "engineer";
	}
}

const char *st_action_detail(const char *msg)
{
	/* What the failure paths put before the message itself (slot.c's "CSR rejected: ",
	 * a code name and ": " as the slot's last error has it). */
	static const char *const prefixes[] = { "CSR rejected: " };
	size_t n = 0;

	if (!msg)
		return "";
	/* "NAME: " where NAME is a reason of the table. */
	while ((msg[n] >= 'A' && msg[n] <= 'Z') || (msg[n] >= '0' && msg[n] <= '9') ||
	       msg[n] == '_')
		n++;
	if (n >= 2 && n < 48 && msg[n] == ':' && msg[n + 1] == ' ') {
		char name[48];

		memcpy(name, msg, n);
		name[n] = 0;
		if (st_action_for(name) != &fallback)
			msg += n + 2;
	}
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t l = strlen(prefixes[i]);

		if (strncmp(msg, prefixes[i], l) == 0)
			msg += l;
	}
	return msg;
}

/* ---- Slots ----------------------------------------------------------------------------- */

const char *st_slot_kind_name(enum st_slot_kind k)
{
	static const char *const names[ST_KIND_COUNT] = {
		[ST_KIND_OFFLINE] = "offline", [ST_KIND_WAITING] = "waiting",
		[ST_KIND_BUSY] = "busy",       [ST_KIND_PASS] = "pass",
		[ST_KIND_FAIL] = "fail",       [ST_KIND_STOPPED] = "stopped",
	};

	return (unsigned)k < ST_KIND_COUNT ? names[k] : "?";
}

enum st_slot_kind st_slot_kind_of(const struct st_slot_info *s)
{
	switch (s->state) {
	case ST_SLOT_OFFLINE:
		return ST_KIND_OFFLINE;
	case ST_SLOT_WAITING:
		return ST_KIND_WAITING;
	case ST_SLOT_PASS:
		return ST_KIND_PASS;
	case ST_SLOT_FAILED:
		return ST_KIND_FAIL;
	case ST_SLOT_LEAVING:
		/* A finished board still in its fixture: the outcome is what matters. */
		return s->last_pass > 0	  ? ST_KIND_PASS :
		       s->last_pass == 0 ? ST_KIND_FAIL :
					   ST_KIND_WAITING;
	case ST_SLOT_STOPPED:
		return s->last_pass > 0	  ? ST_KIND_PASS :
		       s->last_pass == 0 ? ST_KIND_FAIL :
					   ST_KIND_STOPPED;
	default:
		return ST_KIND_BUSY;
	}
}

const char *st_slot_word(const struct st_slot_info *s, double ms_in_state)
{
	enum st_slot_kind k = st_slot_kind_of(s);

	if (k == ST_KIND_PASS)
		return "PASS";
	if (k == ST_KIND_FAIL)
		return "FAIL";
	switch (s->state) {
	case ST_SLOT_OFFLINE:
		return "offline";
	case ST_SLOT_WAITING:
		/* "no answer" for a silent port; a line with bytes but no frame says so in its
		 * note and is not silent. */
		return ms_in_state >= ST_SILENT_MS && !s->note[0] ? "no answer" : "waiting";
	case ST_SLOT_HELLO:
		return "hello";
	case ST_SLOT_PROFILE:
		return "profile";
	case ST_SLOT_BAUD_ASK:
	case ST_SLOT_BAUD_CONFIRM:
		return "baud";
	case ST_SLOT_CSR:
		return "csr";
	case ST_SLOT_CHECKED:
		return "checked";
	case ST_SLOT_QUEUED:
		return s->writing ? "write" : "queued";
	case ST_SLOT_SIGNED:
		return "write";
	case ST_SLOT_WRITTEN:
		return "commit";
	case ST_SLOT_COMMITTED:
		return "verify";
	case ST_SLOT_VERIFIED:
		return "done";
	case ST_SLOT_LEAVING:
		return "left";
	case ST_SLOT_STOPPED:
		return "stopped";
	default:
		return "?";
	}
}

int st_slot_is_stuck(const struct st_slot_info *s, enum st_slot_kind k, double ms, int paused)
{
	if (k != ST_KIND_BUSY || ms < ST_STUCK_MS)
		return 0;
	/* Waiting for a certificate while the HSM is away is not the fixture's fault. */
	return !(s->state == ST_SLOT_QUEUED && paused);
}

enum st_attention st_slot_attention(const struct st_slot_info *s, enum st_slot_kind k, double ms,
				    int paused)
{
	const char *note = s->note;

	if (k == ST_KIND_FAIL)
		return ST_ATT_FAILED;
	if (st_slot_is_stuck(s, k, ms, paused))
		return ST_ATT_STUCK;
	/* A full pool is the line's state, not this slot's: the header shows it. A waiting
	 * slot's note: its line carries bytes but no frame. */
	if ((k == ST_KIND_BUSY || k == ST_KIND_WAITING) && note[0] &&
	    strcmp(note, "pool full") != 0)
		return ST_ATT_NOTE;
	/* Not the failure of a board already taken out. */
	if (s->last_error[0] &&
	    (k == ST_KIND_OFFLINE || (k == ST_KIND_WAITING && s->last_pass != 0)))
		return ST_ATT_PROBLEM;
	return ST_ATT_NONE;
}

const char *st_attention_name(enum st_attention a)
{
	switch (a) {
	case ST_ATT_FAILED:
		return "failed";
	case ST_ATT_STUCK:
		return "stuck";
	case ST_ATT_NOTE:
		return "busy";
	case ST_ATT_PROBLEM:
		return "problem";
	default:
		return NULL;
	}
}

const char *st_slot_reason(const struct st_slot_info *s)
{
	return s->last_code < 0 ? st_errname(s->last_code) : NULL;
}
