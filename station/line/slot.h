/* One fixture slot: a port, the board in it, and the state machine that provisions the board
 * over the wire protocol (drivers/PROTOCOL.md).
 *
 *   offline -> waiting -> hello -> profile [-> baud-ask -> baud-confirm] -> csr -> checked
 *   -> queued -> signed -> written -> committed -> verified -> pass -> leaving -> waiting -> ...
 *   (any state of a board in flight) -> failed -> leaving
 *
 * The whole machine is one table (slot_table.c): per state, what it sends, which answers it
 * accepts, its timeout and where each outcome leads. Every transition goes through one
 * function, which refuses one the table does not list, logs "old -> new" and writes a state
 * event. Every wait has a timer. Requests that get no answer, or a damaged one, are sent again
 * byte for byte (same seq: the board answers a repeat from its kept answer) up to a limit;
 * policy rejections are never retried. A board that reboots (BOOT, ERROR HELLO) or whose port
 * hangs up and comes back is greeted again and, when it is the same board, resumed where it
 * was: the CSR is read again, files are written from what the board reports it has, VERIFY
 * is asked again. A port that hangs up is closed and reopened on a timer.
 *
 * Slots run on the loop thread only; a slow or silent board holds nothing but its own
 * timers. Memory per slot: the decoder's line buffer, one request frame, a console ring of
 * ST_SLOT_CONSOLE bytes, and, while a board is in flight, its CSR and rendered files. */
#ifndef ST_SLOT_H
#define ST_SLOT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "ca.h"
#include "err.h"
#include "events.h"
#include "policy.h"
#include "pool.h"
#include "port.h"
#include "profile.h"
#include "profiles.h"
#include "proto.h"

/* Console bytes kept per slot (a ring: the newest win), saved for failed boards. */
#define ST_SLOT_CONSOLE 8192
#define ST_SLOT_MAX_NAME 64
#define ST_SLOT_MAX_TEXT 128 /* identity strings a board reports (hardware id, sku, ...) */
/* Room for such a string made printable (st_escape()): every byte escaped at worst. */
#define ST_SLOT_TEXT_SIZE ST_ESCAPE_SIZE(ST_SLOT_MAX_TEXT)

enum st_slot_state {
	ST_SLOT_OFFLINE,   /* no port: not there yet, or hung up; reopened on a timer */
	ST_SLOT_WAITING,   /* port open, no board yet: HELLO probes, listening for BOOT */
	ST_SLOT_HELLO,     /* a board answered HELLO: its identity is known */
	ST_SLOT_PROFILE,   /* its profile is chosen; its device id is being settled (a
			    * sequence number may be on its way from the ledger) */
	ST_SLOT_BAUD_ASK,  /* BAUD sent: the board is asked to switch to a faster rate */
	ST_SLOT_BAUD_CONFIRM, /* the line is at the new rate on trial: HELLO sent there; no
			       * answer within the board's trial and both sides go back */
	ST_SLOT_CSR,       /* CSR requested: the board makes its key, the CSR is read in
			    * chunks */
	ST_SLOT_CHECKED,   /* the CSR is read whole and hashes as the board said; the pool
			    * checks it against the profile's policy on a signing worker,
			    * before anything of it is recorded (a refused CSR fails the run
			    * at its CSR) */
	ST_SLOT_QUEUED,    /* waiting for its certificate: in the signing pool, or for room
			    * in it; never failed for an HSM outage */
	ST_SLOT_SIGNED,    /* signed and recorded in the ledger (or the recorded certificate
			    * found again); the files are being written (WRITE chunks) */
	ST_SLOT_WRITTEN,   /* every file is staged on the board; COMMIT asked */
	ST_SLOT_COMMITTED, /* the board installed the files; VERIFY asked */
	ST_SLOT_VERIFIED,  /* read-back hashes and proof of possession are good; DONE pass
			    * sent. The board counts as provisioned from here, whatever
			    * follows (a lost DONE answer, another board in its place) */
	ST_SLOT_PASS,      /* the board is provisioned and told so */
	ST_SLOT_FAILED,    /* the board failed with a reason; DONE fail sent */
	ST_SLOT_LEAVING,   /* the board is finished (pass or fail): waiting for it to leave
			    * (port hang-up, silence, another board answering, a reboot of a
			    * failed board) */
	ST_SLOT_STOPPED,   /* the station is stopping: no new boards, port closed */
	ST_SLOT_NSTATES,
};

/* "offline", "waiting", ... */
const char *st_slot_state_name(enum st_slot_state s);

/* Whether a board is in flight in state s (hello .. failed). */
int st_slot_state_busy(enum st_slot_state s);

/* Timeouts (ms) and retry limits of every wait. */
struct st_slot_limits {
	unsigned hello_ms;     /* HELLO (and its probes) answered */
	unsigned csr_ms;       /* one CSR chunk (the first one includes key generation) */
	unsigned write_ms;     /* one WRITE chunk */
	unsigned commit_ms;    /* COMMIT (the board syncs its storage) */
	unsigned verify_ms;    /* one VERIFY page (the board signs the nonce) */
	unsigned done_ms;      /* DONE */
	unsigned probe_ms;     /* between HELLO probes of an empty slot */
	unsigned presence_ms;  /* between HELLOs asking whether a finished board is still there */
	unsigned reconnect_ms; /* how long a board in flight may be gone (port hung up) */
	unsigned reopen_ms;    /* between attempts to open a port that is not there */
	unsigned queued_ms;    /* between notes that a board still waits for signing */
	unsigned noframe_ms;   /* how long a line without a board in flight may carry bytes
				* but no frame before the slot says what it sees (at least
				* presence_ms + tries * hello_ms: a finished board is asked no
				* more often) */
	unsigned baud_trial_ms; /* BAUD's fallback delay: the board goes back to the old rate
				 * unless a good frame arrives at the new one within it, and the
				 * station gives up on the new rate after as long */
	unsigned tries;        /* transmissions of one request before the board has failed */
	unsigned resyncs;      /* reboots and reconnects one board may go through */
};

void st_slot_limits_default(struct st_slot_limits *l);

struct st_slot;

/* What slots share: set up by the engine, read by every slot. Loop thread only. */
struct st_slot_env {
	uv_loop_t *loop;
	struct st_pool *pool;
	struct st_ledger_queue *ledger; /* the pool's (st_pool_ledger()) */
	const struct st_ca *ca;
	const char *chain_pem; /* the device CA and intermediates (client.chained's tail) */
	const char *root_pem;  /* the factory root (root.crt) */
	struct st_events *events;
	struct st_slot_limits lim;
	const char *console_dir; /* where failed boards' consoles go; NULL: not saved */
	int stopping;            /* no new boards */

	/* The engine's hooks. */
	void *arg;
	/* The current profile set, with a new reference. */
	struct st_profiles *(*profiles)(void *arg);
	/* A board finished (pass or fail, not abandoned). */
	void (*outcome)(void *arg, struct st_slot *s, int pass);

	/* Private to slot.c: slots waiting for room in the pool, oldest first. */
	struct st_slot *room_head, *room_tail;
	/* Private to slot_link.c: slots with a character device open (port_rdev). */
	struct st_slot *open_head, *open_tail;
	unsigned saving; /* console logs being written */
};

/* How to reach one slot's port. Strings are copied. */
struct st_slot_def {
	const char *name;
	const char *path;    /* the port (a stable name: by-path link, simboard's tty link) */
	const char *backend; /* "serial", "pty" or NULL/"auto" */
	int baud;            /* 0: 115200 */
	int max_baud;        /* fastest rate to switch a board to (BAUD); 0: stay at baud */
	enum drv_port_flow flow;
	const char *profile; /* the slot's own profile file; NULL: chosen by hardware id */
};

/* Identity a board reported in HELLO, made printable where it entered (st_escape(): a
 * control byte reads "\x1b", a backslash "\\"; printable text is unchanged), since every
 * string here ends up in messages, events, the view or the ledger. */
struct st_slot_board {
	char dev[ST_SLOT_TEXT_SIZE];
	char hw[ST_SLOT_TEXT_SIZE];
	char sku[ST_SLOT_TEXT_SIZE];
	char fw[ST_SLOT_TEXT_SIZE];
	char sn[ST_SLOT_TEXT_SIZE];
	char key[ST_ESCAPE_SIZE(15)];
	char boot[ST_ESCAPE_SIZE(39)];
	uint64_t gen;
	unsigned max; /* largest frame it accepts */
	unsigned version; /* protocol version its HELLO chose (1, or 2: PROTOCOL.md 6) */
	unsigned win;     /* version 7: requests it takes outstanding at once (1: one) */
	int bauds[8]; /* rates it offers for BAUD */
	unsigned nbauds;
};

struct slot_run; /* the board in flight (slot.c) */

/* The slot itself is the line's own (slot.c, and engine.c for its slots); the rest of the
 * station reads a slot through st_slot_info(). */
struct st_slot {
	struct st_slot_env *env;
	unsigned idx;
	char name[ST_SLOT_MAX_NAME + 1];
	char *path;
	char *backend;
	char *profile_path;
	int baud;                /* the line's starting rate (a new board's) */
	int max_baud;            /* 0: never switch */
	int cur_baud;            /* the port's rate now */
	enum drv_port_flow flow;

	enum st_slot_state state;
	uint64_t since;          /* uv_hrtime() of the last transition */
	char last_error[ST_ERR_MAX]; /* the last failure or problem, for the view */
	int last_code;           /* ST_E_* the last board failed with; 0: none (operator.h) */
	char device_id[ST_PROFILE_MAX_ID + 1]; /* of the board in flight or last finished */
	int last_pass;           /* outcome of the last finished board: 1 pass, 0 fail, -1 none */
	/* Failed runs in a row here, with no pass between and no board seen gone (a presence
	 * check unanswered, the port lost), and when the next run may start (uv_hrtime()):
	 * a board that fails and reboots, or fixtures swapped by a machine, would otherwise
	 * start a run, an attempt row and a console log hundreds of times a second. */
	unsigned fail_streak;
	uint64_t retry_at;
	int held;                /* a board waits for retry_at (said once in the log) */
	char hold_note[64];      /* the view's note while one does */
	uint64_t handled;        /* boards finished on this slot (pass or fail) */
	uint64_t passed;

	/* Port. */
	struct drv_port *port;
	uv_poll_t *poll;         /* allocated per open; freed in its close callback */
	int poll_events;
	int port_announced;      /* the first open was reported (data, not a state: it words the
				  * port event "open" or "back") */
	uv_timer_t timer;        /* the current request or wait */
	int timer_what;          /* what it waits for (slot.c) */
	uv_timer_t aux;          /* reopen attempts and the reconnect deadline */
	unsigned reopen_fails;
	/* The port's name as it was opened (lstat of the configured path: the link itself for a
	 * by-path link) and when it hung up: until reconnect_ms have passed, the same name is not
	 * opened again, since a stale link may point at a device number already given to
	 * another device; a board that comes back does so under a new link or node. A name is
	 * its file system, inode number and change time: a file system may give a new link the
	 * inode number of the one just removed (ext4 does, at once), but the new link's change
	 * time is when it was made. */
	struct slot_name_id {
		uint64_t dev, ino;
		int64_t ctime_ns;
	} port_name, lost_name;
	uint64_t lost_at;
	/* The open port's device number when it is a character device (0: none), and the
	 * env's list of slots with such a port open: two names of one device (a glob that
	 * matches a by-path link and its ttyUSB node, a stale link whose number another board
	 * got) would give one board two slots that steal each other's answers. */
	uint64_t port_rdev;
	struct st_slot *open_prev, *open_next;
	int in_feed;             /* the decoder is feeding (callbacks must not close it). Not a
				  * state: a guard of the call stack, whatever the state */
	int closing;             /* st_slot_close() was called. Not a state: the handles' life
				  * cycle, after stopped */
	int handles;             /* uv handles not yet closed */
	void (*close_cb)(struct st_slot *s);

	/* Protocol. */
	struct drv_proto_decoder dec;
	uint32_t seq;            /* last sequence number used */
	int req_kind;            /* what the outstanding request is for (slot.c), 0: none */
	uint32_t req_seq;
	char req_type[DRV_PROTO_MAX_TYPE + 1];
	unsigned req_tries;      /* transmissions of the outstanding request */
	unsigned req_timeout;    /* its timeout, ms */
	uint64_t req_sent;       /* uv_hrtime() of its first transmission */
	uint64_t req_rx0;        /* rx_bytes then */
	uint64_t req_writes0;    /* tx_writes before it left */
	size_t req_len, req_off; /* bytes of req, bytes of it written */
	size_t tx_max;           /* the board's frame limit */
	/* Version 7 (PROTOCOL.md 11): a WRITE sent behind the outstanding one, before its answer,
	 * at req + pipe_at (0: none), with seq pipe_seq. It is sent and sent again with it, and
	 * becomes the outstanding request once that one is answered as expected. */
	size_t pipe_at;
	uint32_t pipe_seq;
	char req[2 * DRV_PROTO_MAX_LINE];
	int echo_warned;         /* the echo was logged once (data: only the log's rate) */
	/* Version 8 (PROTOCOL.md 12): the board in hand came from a BOOT that said who it is;
	 * the next request opens its session (slot_begin_req). boot_len: that BOOT's bytes. */
	int boot_open;
	size_t boot_len;
	/* The last sota.toml rendered for a board of this slot (slot_files.c): the next board
	 * of the same profile and hardware id gets a copy. */
	struct st_sota_cache sota_cache;
	uint64_t frames_bad;     /* damaged frames received */
	uint64_t requests;       /* requests sent, first transmissions only, ever */
	uint64_t piped;          /* of them, sent behind another (version 7), ever */
	uint64_t retransmits;
	uint64_t tx_bytes, rx_bytes; /* moved over the port, ever */
	uint64_t tx_writes;      /* writes to the port (write(2) calls that moved bytes), ever */

	/* Line watch (slot.c): bytes but no frame, on a line with no board in flight. */
	uint64_t heard_at;       /* uv_hrtime() of the last frame that made sense (an answer to
				  * the outstanding request, BOOT) or of the port's opening */
	uint64_t heard_rx, heard_bad; /* rx_bytes and frames_bad then */
	uint64_t junk, text;     /* console bytes since: unprintable, printable */
	uint64_t stray;          /* answers to no request of the station's since */
	uint64_t unread;         /* seq 0 errors since: the board could not read a request */
	uint64_t rx_at;          /* uv_hrtime() of the last bytes read */
	uint64_t note_at, note_rx; /* the note's rate: measured from then, and rx_bytes then */
	int noframe;             /* said in the log and an event since heard_at (data: the line
				  * watch reports, it never moves the state) */
	char line_note[128];     /* what the slot sees, for the view; "" when nothing */

	/* Console ring. */
	char console[ST_SLOT_CONSOLE];
	size_t con_head, con_len;

	struct st_slot_board board; /* the board in the slot (valid from hello on) */
	struct slot_run *run;       /* the board in flight; NULL when none */

	/* Backpressure queue (slot.c). */
	struct st_slot *room_prev, *room_next;
	int room_waiting;        /* in the env's room queue (data, not a state: queued either
				  * way, this says which list holds the slot) */
};

/* Creates a slot on env's loop; its port is opened by st_slot_start(). Returns 0 and *out,
 * or ST_E_NOMEM; *out is NULL then. */
int st_slot_new(struct st_slot_env *env, unsigned idx, const struct st_slot_def *def,
		struct st_slot **out, char *err, size_t errlen);

/* Opens the port, or schedules attempts while it is absent. */
void st_slot_start(struct st_slot *s);

/* 1 when a board is in flight on s: its run has started and has neither passed nor failed
 * (what st_slot_stop() would abandon or pass on the spot). */
int st_slot_in_flight(const struct st_slot *s);

/* The station stops: a board in flight is abandoned (reported as such; its ledger row, if
 * any, is marked failed "station stopping", so that its next run gets the recorded
 * certificate), except one that is already verified, which passes. The port is closed.
 * Returns 1 when a board was abandoned (the summary names its slot), else 0: no board, one
 * that passed on the spot, or one whose failure was already reported. */
int st_slot_stop(struct st_slot *s);

/* Closes the slot's handles and port; cb(s) runs from the last close callback, after which
 * the caller frees s with st_slot_free(). Call after st_slot_stop(). */
void st_slot_close(struct st_slot *s, void (*cb)(struct st_slot *s));
void st_slot_free(struct st_slot *s);

/* Milliseconds the slot has been in its state. */
double st_slot_ms_in_state(const struct st_slot *s, uint64_t now);

/* A short word for what the slot waits for right now, for the view ("port gone", "paused"
 * ...), or "" when nothing special. */
const char *st_slot_note(const struct st_slot *s);

/* A slot as the rest of the station sees it (the live view): a copy, valid on its own. */
struct st_slot_info {
	unsigned idx;
	char name[ST_SLOT_MAX_NAME + 1];
	enum st_slot_state state;
	uint64_t since; /* uv_hrtime() of the last transition */
	char device_id[sizeof(((struct st_slot *)0)->device_id)];
	char last_error[sizeof(((struct st_slot *)0)->last_error)];
	int last_pass;  /* outcome of the last finished board: 1 pass, 0 fail, -1 none */
	int last_code;  /* ST_E_* the last board failed with; 0: none */
	uint64_t handled; /* boards finished on this slot (pass or fail) */
	uint64_t passed;
	char note[sizeof(((struct st_slot *)0)->line_note)]; /* st_slot_note() */
	char path[4096]; /* the configured port */
	struct st_slot_board board; /* the board in the slot */
	int writing; /* queued, and writing meanwhile the files that do not hold the
		      * certificate */
};

/* Milliseconds the slot of *i had been in its state at now. */
double st_slot_info_ms(const struct st_slot_info *i, uint64_t now);

/* Copies what s shows into *out (not its console: st_slot_console()). Loop thread. */
void st_slot_info(const struct st_slot *s, struct st_slot_info *out);

/* Copies s's console ring, oldest byte first, into buf (cap bytes; ST_SLOT_CONSOLE hold it
 * all) and returns the bytes copied. Loop thread. */
size_t st_slot_console(const struct st_slot *s, char *buf, size_t cap);

#endif
