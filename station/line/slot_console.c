/* The slot's console: bytes outside frames go to a ring of ST_SLOT_CONSOLE bytes (and tell
 * the slot when they look like another rate), and a failed board's ring is written to the
 * console directory in the background, printable. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/rand.h>

#include "ecdsa.h"
#include "err.h"
#include "log.h"
#include "slot_int.h"
#include "sota.h"

static int garbage(const char *data, size_t n);
static void on_save_closed(uv_fs_t *req);
static void on_save_written(uv_fs_t *req);
static void on_save_opened(uv_fs_t *req);
static void clean_name(char *out, size_t outlen, const char *in);

/* Mostly bytes no console prints: what a UART at another rate than the sender's reads. */
static int garbage(const char *data, size_t n)
{
	size_t bad = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)data[i];

		bad += c >= 0x80 || (c < 0x20 && c != '\r' && c != '\n' && c != '\t' &&
				     c != '\b' && c != 0x1b);
	}
	return bad >= 4 && bad * 2 > n;
}

void slot_console_add(void *arg, const char *data, size_t n)
{
	struct st_slot *s = arg;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)data[i];

		if ((c >= 0x20 && c < 0x7f) || c == '\r' || c == '\n' || c == '\t')
			s->text++;
		else
			s->junk++;
	}

	if (s->cur_baud != slot_base_baud(s) && garbage(data, n)) {
		if (!s->run)
			slot_new_board_talking(s);
		else if (s->state != ST_SLOT_FAILED &&
			 !(s->state == ST_SLOT_BAUD_CONFIRM && s->req_kind == RQ_BAUD_HELLO))
			slot_rate_lost(s);
	}
	if (n >= ST_SLOT_CONSOLE) {
		data += n - ST_SLOT_CONSOLE;
		n = ST_SLOT_CONSOLE;
	}
	for (size_t i = 0; i < n; i++) {
		size_t at = (s->con_head + s->con_len) % ST_SLOT_CONSOLE;

		s->console[at] = data[i];
		if (s->con_len < ST_SLOT_CONSOLE)
			s->con_len++;
		else
			s->con_head = (s->con_head + 1) % ST_SLOT_CONSOLE;
	}
}

/* ---- Console logs of failed boards --------------------------------------------------- */

struct console_save {
	uv_fs_t req;
	struct st_slot_env *env;
	uv_buf_t buf;
	uv_file fd;
	char path[1];
};

static void on_save_closed(uv_fs_t *req)
{
	struct console_save *cs = req->data;

	uv_fs_req_cleanup(req);
	cs->env->saving--;
	free(cs->buf.base);
	free(cs);
}

static void on_save_written(uv_fs_t *req)
{
	struct console_save *cs = req->data;

	if (req->result < 0)
		st_warn("console log %s: %s", cs->path, uv_strerror((int)req->result));
	uv_fs_req_cleanup(req);
	if (uv_fs_close(req->loop, &cs->req, cs->fd, on_save_closed) < 0)
		on_save_closed(&cs->req);
}

static void on_save_opened(uv_fs_t *req)
{
	struct console_save *cs = req->data;
	uv_loop_t *loop = req->loop;

	if (req->result < 0) {
		st_warn("console log %s: %s", cs->path, uv_strerror((int)req->result));
		uv_fs_req_cleanup(req);
		cs->env->saving--;
		free(cs->buf.base);
		free(cs);
		return;
	}
	cs->fd = (uv_file)req->result;
	uv_fs_req_cleanup(req);
	if (uv_fs_write(loop, &cs->req, cs->fd, &cs->buf, 1, -1, on_save_written) < 0)
		on_save_written(&cs->req);
}

static void clean_name(char *out, size_t outlen, const char *in)
{
	size_t i;

	for (i = 0; in[i] && i + 1 < outlen; i++) {
		char c = in[i];

		out[i] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.') ?
				 c :
				 '_';
	}
	out[i] = 0;
}

/* A console log's header: whose console it is and why it was kept. */
#define CONSOLE_HDR_MAX (ST_ERR_MAX + 4 * ST_SLOT_TEXT_SIZE)

/* Writes the console ring (and a header saying whose it is) to the console directory, in
 * the background (libuv's fs work); path receives the file name. Nothing when no directory
 * is configured. The console is written as printable text (st_escape() keeping its lines):
 * an operator reads it on a terminal, which must not obey what the board printed. */
void slot_save_console(struct st_slot *s, char *path, size_t pathlen)
{
	struct slot_run *r = s->run;
	struct st_slot_env *env = s->env;
	struct console_save *cs;
	char slot[ST_SLOT_MAX_NAME + 1], who[ST_PROFILE_MAX_ID + 1], stamp[32];
	struct timespec ts;
	struct tm tm;
	size_t hdr, len, first;
	char *buf, *ring;
	int n;

	path[0] = 0;
	if (!env->console_dir)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
	clean_name(slot, sizeof(slot), s->name);
	clean_name(who, sizeof(who), r->device_id[0] ? r->device_id :
				     s->board.sn[0] ? s->board.sn : "unknown");
	n = snprintf(path, pathlen, "%s/%s-%s-%s.%03ldZ.log", env->console_dir, slot, who, stamp,
		     ts.tv_nsec / 1000000L);
	if (n < 0 || (size_t)n >= pathlen) {
		path[0] = 0;
		return;
	}
	len = CONSOLE_HDR_MAX + ST_ESCAPE_SIZE(s->con_len);
	buf = malloc(len);
	ring = malloc(s->con_len + 1);
	cs = calloc(1, sizeof(*cs) + (size_t)n);
	if (!buf || !ring || !cs) {
		free(buf);
		free(ring);
		free(cs);
		path[0] = 0;
		return;
	}
	st_msgf(buf, CONSOLE_HDR_MAX,
		"# station console log: slot %s, device %s, hardware id %s, sn %s\n"
		"# failed in %s: %s: %s\n",
		s->name, r->device_id, s->board.hw, s->board.sn, st_slot_state_name(r->fail_state),
		st_errname(r->fail_code), r->fail_msg);
	hdr = strlen(buf);
	first = ST_SLOT_CONSOLE - s->con_head;
	if (first > s->con_len)
		first = s->con_len;
	memcpy(ring, s->console + s->con_head, first);
	memcpy(ring + first, s->console, s->con_len - first);
	st_escape(buf + hdr, len - hdr, ring, s->con_len, ST_ESCAPE_LINES);
	free(ring);
	memcpy(cs->path, path, (size_t)n + 1);
	cs->env = env;
	cs->buf = uv_buf_init(buf, (unsigned)strlen(buf));
	cs->req.data = cs;
	env->saving++;
	if (uv_fs_open(env->loop, &cs->req, cs->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		       0644, on_save_opened) < 0) {
		env->saving--;
		free(buf);
		free(cs);
		path[0] = 0;
	}
}
