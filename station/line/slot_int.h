/* What the slot's files share (slot.c, slot_table.c, ...): the request kinds, the state
 * table and the transition function. Private to the slot: nothing outside station/slot*.c
 * includes it. */
#ifndef ST_SLOT_INT_H
#define ST_SLOT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "slot.h"

/* What the outstanding request is for (st_slot.req_kind). A state's own request is in the
 * table; the HELLOs differ by what their answer means. */
enum req_kind {
	RQ_NONE,
	RQ_PROBE,         /* HELLO to an empty slot */
	RQ_PRESENCE,      /* HELLO to a finished board */
	RQ_PRESENCE_BOOT, /* HELLO to a finished board that announced a reboot (BOOT): a failed
			   * one that answers gets another go */
	RQ_RESYNC,        /* HELLO to a board in flight after a reboot or reconnect */
	RQ_RESYNC_RATE,   /* HELLO to a board in flight at the other rate, after silence at the
			   * switched one; unanswered, the board has hung */
	RQ_CSR,
	RQ_WRITE,
	RQ_COMMIT,
	RQ_VERIFY,
	RQ_DONE,
	RQ_BAUD,          /* BAUD: switch the line to a faster rate */
	RQ_BAUD_HELLO,    /* HELLO at the new rate: the switch is good when it is answered */
};

#define SLOT_NO_LIMIT ((size_t)-1)

/* One row of the state table: what the state does and where each outcome leads. A state
 * that an outcome leaves where it is names itself (a retransmission, a resume). */
struct slot_state_def {
	const char *name;        /* for logs, events and the view */
	enum req_kind sends;     /* the request sent on entry and until it is answered */
	const char *accepts;     /* the answers taken (besides ERROR); NULL: none */
	size_t limit;            /* offsetof(struct st_slot_limits, ...) of its wait, or
				  * SLOT_NO_LIMIT */
	enum st_slot_state ok;       /* the answer is good (or the step is done) */
	enum st_slot_state error;    /* an ERROR answer, or the answer fails a check */
	enum st_slot_state timeout;  /* no answer after every try */
	enum st_slot_state reboot;   /* BOOT, ERROR HELLO: greeted again (the same board) */
	enum st_slot_state hangup;   /* the port hung up (a board in flight waits for it) */
	enum st_slot_state nonsense; /* a damaged frame, an answer of the wrong type or seq */
	uint32_t also;               /* other states it may lead to (bit per state) */
};

/* The table, indexed by state. */
extern const struct slot_state_def slot_table[ST_SLOT_NSTATES];

/* Whether the table allows from -> to (the same state is always allowed: no transition). */
int slot_transition_allowed(enum st_slot_state from, enum st_slot_state to);

/* The wait of state s in ms under l, or 0 when it has none. */
unsigned slot_state_limit(enum st_slot_state s, const struct st_slot_limits *l);

/* ---- Shared by the slot files ---------------------------------------------------- */

#define NONCE_LEN 32
#define MAX_PROTO_PATH DRV_PROTO_MAX_PATH
#define HELLO_MAX 4096 /* the largest frame the station accepts (announced in HELLO) */
#define REOPEN_BACKOFF_MAX_MS 2000

/* ---- The board in flight ------------------------------------------------------------ */

/* Files one WRITE carries at most (version 6; a board of 8 staged files takes them all). */
#define SLOT_WRITE_FILES 8

/* Version 3 (PROTOCOL.md 7): steps a request carries besides its own. */
#define FOLD_COMMIT 1u /* the WRITE that completes the last file carries COMMIT */
#define FOLD_VERIFY 2u /* that WRITE, or COMMIT, carries VERIFY */

/* A file as it goes over the wire. */
struct wfile {
	char path[MAX_PROTO_PATH + 1]; /* relative to the board's config directory */
	size_t ri;                     /* its file in the run's render (the profile's order) */
	char mode[8];
	uint8_t sha[32];
	const unsigned char *data;     /* in the run's render */
	size_t len;
	int seen;                      /* VERIFY listed it with the right size and hash */
	/* Version 2: bytes cp_at .. cp_at+cp_len are the whole of the earlier file cp_src
	 * (client.pem inside client.chained), sent as copies of it unless nocopy (the board
	 * answered SOURCE: it lost the source). cp_src is -1 when there is none. */
	int cp_src, nocopy;
	size_t cp_at, cp_len;
	/* Version 2, a board that holds files already (its HELLO's gen is not 0: a retry, a
	 * board provisioned again): the file goes as copies of the installed file under its
	 * own path, which the board's hash check at the file's end confirms. 0 for a file that
	 * holds a certificate signed for this run (the board cannot hold it yet) and once the
	 * board answered such a copy with ERROR (another file there, none, or unreadable). */
	int inst;
};

/* What the slot timer is waiting for. */
enum timer_what {
	TW_NONE,
	TW_REQUEST,  /* the outstanding request's answer */
	TW_PROBE,    /* the next probe or presence HELLO */
	TW_REOPEN,   /* the next attempt to open the port */
	TW_QUEUED,   /* a note that the board still waits for signing */
};

struct slot_run {
	struct st_profiles *pset;
	const struct st_profile *profile;
	char device_id[ST_PROFILE_MAX_ID + 1];
	char factory[ST_POLICY_MAX_FACTORY + 1];

	/* CSR as read from the board. */
	uint8_t *csr;
	size_t csr_total, csr_have;
	uint8_t csr_sha[32];
	unsigned csr_restarts;
	int csr_rejected; /* the pool's check refused the CSR: the run failed at its CSR,
			   * whatever state it waited in since */

	/* The key the certificate certifies, for the proof of possession. */
	uint8_t pub[ST_CA_MAX_POINT];
	size_t pub_len;
	enum st_ec_curve curve;

	/* Signing. */
	struct st_sign_req *req; /* submitted or waiting for room; NULL otherwise */
	int in_pool;             /* req is with the pool (cancel it when giving up). Data, not a
				  * state: queued either way, this says who holds req */
	struct st_cert *cert;
	int64_t row_id;
	int reused;
	char auth_id[ST_AUTH_MAX_ID + 1]; /* the authorization its certificate consumed */
	struct st_sign_times pt;

	/* Files, in the order they are written: the nearly that do not hold the certificate
	 * first (rendered without it in render_early, and written while it is signed), the
	 * npublic of them made of the CA's certificates alone before the others (written
	 * from the CSR's arrival: slot_files_open()), then the rest (render; all of them
	 * there when nothing went early). accepted: the pool recorded the intent. */
	struct st_render *render, *render_early;
	struct wfile *wf;
	size_t nfiles, nearly, npublic, wi;
	int accepted;
	uint64_t woff;
	int wident; /* the next chunk names its file (mode, size, sha) even past offset 0 */
	int inst_sent; /* the WRITE outstanding is a copy of the installed file (wfile.inst) */
	size_t nsect;  /* files in the WRITE outstanding (version 6: up to SLOT_WRITE_FILES) */
	int single;    /* version 6: one file a WRITE again, after an ERROR to several */
	/* Version 7: the file the WRITE after the outstanding one starts at when that one is
	 * answered as expected (wi when it does not complete its file). The WRITE sent behind
	 * the outstanding one (st_slot.pipe_at): the file it starts at, the one after it, and its
	 * nsect, fold and inst_sent, which become the run's when it is the outstanding one. */
	size_t next_wi, pipe_wi, pipe_next, pipe_nsect;
	unsigned pipe_fold;
	int pipe_inst;
	unsigned write_restarts, stalls;

	/* VERIFY. */
	uint8_t nonce[NONCE_LEN];
	uint64_t vfiles, vseen;
	int vwant; /* version 2: the VERIFY in flight asked for the sum of the files written */
	int vlist; /* the sum differed: ask for the list, which names the file */
	/* Version 3: the steps the WRITE or COMMIT in flight carries besides its own
	 * (FOLD_COMMIT, FOLD_VERIFY), done when the answer has their fields. */
	unsigned fold;

	/* The station's own requests came back since the board last answered: a console with
	 * echo on (a board rebooting into its getty, a wiring loop). No answer counts as none;
	 * the timeout then says echo. */
	unsigned echoes;

	/* Link. */
	int baud_from;   /* the rate before the switch, to go back to */
	int baud_to;     /* the rate the board switched to (answered HELLO there); 0: none */
	unsigned resyncs;
	unsigned retransmits0; /* the slot's retransmits when the board arrived */
	uint64_t requests0;    /* its requests before the HELLO that found the board */
	uint64_t piped0;       /* the slot's piped requests then */
	uint64_t tx0, rx0;     /* the slot's byte counters when the board's HELLO left */
	uint64_t writes0;      /* its port writes before that HELLO's */

	/* Ending. */
	int failed; /* the failure is recorded and reported (once). Data, not a state: it is
		     * set before the slot enters failed (the outcome goes out first), and on a
		     * board abandoned at stop, which never enters it */
	int fail_code;
	char fail_msg[ST_ERR_MAX];
	enum st_slot_state fail_state;

	/* Times (uv_hrtime()). */
	uint64_t t_hello_sent, t_hello, t_checked, t_signed, t_committed, t_done;
};

/* slot.c: the board in flight, its start and its end */
void slot_end_run(struct st_slot *s);
void slot_fail_run(struct st_slot *s, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void slot_fail_run_quiet(struct st_slot *s, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void slot_pass_run(struct st_slot *s);
void slot_send_done(struct st_slot *s, int pass);
int slot_set_state(struct st_slot *s, enum st_slot_state to);
void slot_start_run(struct st_slot *s, const struct st_slot_board *nb, uint64_t hello_sent);
/* The wait before the next run after streak failed runs in a row in a slot (struct
 * st_slot's fail_streak): none after the first (a person's retry), then 1 s, doubled each
 * time, at most SLOT_RETRY_MAX_MS. */
#define SLOT_RETRY_FIRST_MS 1000u
#define SLOT_RETRY_MAX_MS 30000u
unsigned slot_retry_delay_ms(unsigned streak);
void slot_streak_reset(struct st_slot *s);

/* slot_link.c */
int slot_base_baud(const struct st_slot *s);
void slot_line_heard(struct st_slot *s);
/* The bytes received, up to the end of the frame being handled when a frame is (what
 * follows it in the same read is the next frame's). */
uint64_t slot_rx_upto(const struct st_slot *s);
void slot_line_reset(struct st_slot *s);
void slot_new_board_talking(struct st_slot *s);
void slot_port_close(struct st_slot *s);
void slot_port_open(struct st_slot *s);
void slot_rate_lost(struct st_slot *s);
void slot_schedule(struct st_slot *s, enum timer_what what, unsigned ms);
int slot_set_rate(struct st_slot *s, int rate);
void slot_tx_flush(struct st_slot *s);
/* Writes what slot_tx_flush would leave for the end of the read being handled, now. */
void slot_tx_now(struct st_slot *s);
void slot_unschedule(struct st_slot *s);

/* slot_talk.c */
int slot_bad_answer(struct st_slot *s, int kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int slot_baud_wanted(const struct st_slot *s);
void slot_begin_req(struct st_slot *s, struct drv_proto_builder *b, const char *type);
int slot_board_item(const struct drv_proto_frame *f, const struct drv_proto_field *fld,
		    unsigned idx, size_t max, char *out, size_t outlen, char *err, size_t errlen);
int slot_board_text(const struct drv_proto_frame *f, const char *key, const char *def,
		    size_t max, char *out, size_t outlen, char *err, size_t errlen);
void slot_kick(struct st_slot *s);
void slot_on_frame(void *arg, const struct drv_proto_frame *f);
void slot_on_frame_error(void *arg, int code, const char *msg, const char *line, size_t len);
void slot_on_request_timeout(struct st_slot *s);
void slot_resync(struct st_slot *s);
void slot_retransmit(struct st_slot *s);
void slot_send_baud(struct st_slot *s, int rate);
void slot_send_hello(struct st_slot *s, int kind);
void slot_send_req(struct st_slot *s, struct drv_proto_builder *b, int kind);
int slot_finish_req(struct st_slot *s, struct drv_proto_builder *b, int kind);
void slot_send_finished(struct st_slot *s);
uint32_t slot_seq_after(uint32_t seq);
void slot_pipe_drop(struct st_slot *s);
void slot_pipe_promote(struct st_slot *s);

/* slot_files.c */
void slot_new_nonce(struct slot_run *r);
void slot_on_commit_answer(struct st_slot *s, const struct drv_proto_frame *f);
void slot_on_verify_answer(struct st_slot *s, const struct drv_proto_frame *f);
void slot_on_write_answer(struct st_slot *s, const struct drv_proto_frame *f);
int slot_prepare_files(struct st_slot *s, char *err, size_t errlen);
void slot_prepare_early(struct st_slot *s);
size_t slot_files_open(const struct st_slot *s);
int slot_public_waits(struct st_slot *s);
void slot_pipe_more(struct st_slot *s);
int slot_restart_writing(struct st_slot *s, const char *why);
void slot_send_commit(struct st_slot *s);
void slot_send_verify(struct st_slot *s);
void slot_send_write(struct st_slot *s);

/* slot_csr.c */
void slot_on_csr_answer(struct st_slot *s, const struct drv_proto_frame *f);
void slot_room_remove(struct st_slot *s);
void slot_send_csr(struct st_slot *s);

/* slot_console.c */
void slot_console_add(void *arg, const char *data, size_t n);
void slot_save_console(struct st_slot *s, char *path, size_t pathlen);

#endif
