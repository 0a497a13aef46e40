/* The ledger on PostgreSQL (libpq): one record shared by a line of stations. The contract is
 * ledger.h's, word for word; this file says how PostgreSQL keeps it.
 *
 * - Schema: everything lives in the schema station_ledger; its version is the row 'version'
 *   of station_ledger.meta. Migrations are forward-only and append-only like the SQLite
 *   ones; a station migrates under an advisory lock, so stations starting together do it
 *   once, and refuses a schema newer than its own.
 * - Uniqueness across the line is the database's: partial unique indexes on serial and on
 *   public key over every row but a failed one without a certificate (SQLite's rule), and one
 *   on device id over open intents, so two stations claiming one device id at once cannot
 *   both hold an intent: the second insert waits for the first station's commit and then
 *   finds the row. Inserts use ON CONFLICT DO NOTHING, so a refused row never aborts the
 *   batch's transaction (any error does, in PostgreSQL); why it was refused is then read.
 * - Row and flag ids come from sequences: unique across stations. Device id sequences are
 *   a row per prefix locked by the allocating transaction, so two stations never hand out
 *   one number and a rolled-back number is handed out again, as on SQLite.
 * - Durability: synchronous_commit is on (a session whose server default is off or local
 *   turns it on), so COMMIT returns once the server has flushed the commit to its WAL, and,
 *   when the server names synchronous standbys (synchronous_standby_names), once a standby
 *   has flushed it too: then a failover to that standby loses no committed row.
 * - Every transaction is journaled in memory: each write and lookup with its result. When
 *   the server aborts it under the caller (the connection is lost, a deadlock with another
 *   station, a statement that failed), the journal is replayed on a new transaction with
 *   the same row ids, and the results are compared: the caller's transaction goes on as if
 *   nothing happened, or, when another station changed what the replay reads, it is lost
 *   (every later call and the commit fail, the caller rolls back). A COMMIT whose answer was
 *   lost is resolved by asking the server about the transaction (pg_xact_status): committed,
 *   or replayed and committed again; never twice.
 * - Outage: with a handler (st_ledger_set_outage), a call that cannot reach the server
 *   reconnects with a backoff for as long as the handler lets it; without one it tries to
 *   reconnect once and fails.
 * - Passwords never come from the connection string (it shows in logs, messages and the
 *   configuration); libpq reads them from a password file (passfile=, PGPASSFILE,
 *   ~/.pgpass). TLS is libpq's: sslmode, sslrootcert, ... in the connection string; a
 *   server on another machine must be verified, or the string must give that up in words
 *   (check_server_auth). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "ledger_pg.h"
#include "log.h"
#include "netaddr.h"
#include "testhook.h"

#define APPLICATION "station-ledger"

/* The advisory lock key under which stations migrate the schema ("STLG"). */
#define MIGRATE_LOCK "1398033479"

/* How long a statement waits for another station's lock before giving up, by default. */
#define LEDGER_BUSY_MS 5000

/* Attempts at a call the server aborted for a passing reason (a deadlock between stations). */
#define TRANSIENT_TRIES 8

/* Reconnecting after the server went away: the wait doubles from the first to the last. */
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000

/* Schema migrations: migrations[i] brings a ledger from version i to i + 1. A new version is
 * one more entry; never edit an entry that has shipped. */
static const char *const migrations[] = {
	/* 0 -> 1: the first schema. */
	"CREATE SCHEMA " SCHEMA ";\n"
	"CREATE TABLE " T_META " (key text PRIMARY KEY, value text NOT NULL);\n"
	"INSERT INTO " T_META " VALUES ('application', '" APPLICATION "'), ('version', '0');\n"
	"CREATE SEQUENCE " SCHEMA ".certificates_id_seq;\n"
	"CREATE TABLE " T_CERTS " (\n"
	"  id bigint PRIMARY KEY DEFAULT nextval('" SCHEMA ".certificates_id_seq'),\n"
	"  serial text NOT NULL CHECK (serial ~ '^[0-9a-f]{1,40}$'),\n"
	"  device_id text NOT NULL CHECK (length(device_id) > 0),\n"
	"  profile text,\n"
	"  station text NOT NULL CHECK (length(station) > 0),\n"
	"  slot text,\n"
	"  csr_sha256 bytea NOT NULL CHECK (length(csr_sha256) = 32),\n"
	"  pubkey_sha256 bytea NOT NULL CHECK (length(pubkey_sha256) = 32),\n"
	"  state text NOT NULL CHECK (state IN ('intent', 'signed', 'delivered', 'failed')),\n"
	"  cert_der bytea,\n"
	"  not_before bigint,\n"
	"  not_after bigint,\n"
	"  created bigint NOT NULL,\n"
	"  signed_at bigint,\n"
	"  delivered_at bigint,\n"
	"  reason text,\n"
	"  origin_id bigint,\n"
	"  CHECK (state IN ('intent', 'failed') OR cert_der IS NOT NULL));\n"
	"ALTER SEQUENCE " SCHEMA ".certificates_id_seq OWNED BY " T_CERTS ".id;\n"
	"CREATE UNIQUE INDEX certificates_serial ON " T_CERTS " (serial) WHERE " LIVE ";\n"
	"CREATE UNIQUE INDEX certificates_pubkey ON " T_CERTS " (pubkey_sha256) WHERE " LIVE ";\n"
	"CREATE UNIQUE INDEX certificates_intent ON " T_CERTS " (device_id)\n"
	"  WHERE state = 'intent';\n"
	"CREATE INDEX certificates_device ON " T_CERTS " (device_id);\n"
	"CREATE UNIQUE INDEX certificates_origin ON " T_CERTS " (station, origin_id)\n"
	"  WHERE origin_id IS NOT NULL;\n"
	"CREATE TABLE " T_SEQ " (\n"
	"  prefix text PRIMARY KEY,\n"
	"  next bigint NOT NULL CHECK (next >= 1));\n"
	"CREATE SEQUENCE " SCHEMA ".flags_id_seq;\n"
	"CREATE TABLE " T_FLAGS " (\n"
	"  id bigint PRIMARY KEY DEFAULT nextval('" SCHEMA ".flags_id_seq'),\n"
	"  time bigint NOT NULL,\n"
	"  station text NOT NULL CHECK (length(station) > 0),\n"
	"  slot text,\n"
	"  device_id text,\n"
	"  pubkey_sha256 bytea CHECK (pubkey_sha256 IS NULL OR length(pubkey_sha256) = 32),\n"
	"  reason text NOT NULL,\n"
	"  origin_id bigint);\n"
	"ALTER SEQUENCE " SCHEMA ".flags_id_seq OWNED BY " T_FLAGS ".id;\n"
	"CREATE UNIQUE INDEX flags_origin ON " T_FLAGS " (station, origin_id)\n"
	"  WHERE origin_id IS NOT NULL;\n",
	/* 1 -> 2: production authorizations and the record of every attempt, as in the SQLite
	 * ledger. A row consumes a unit of its authorization (auth_id) while it holds or may yet
	 * hold a certificate (LIVE); the trigger keeps authorizations.used equal to the count of
	 * such rows and the CHECK refuses a row beyond the units, in the writer's transaction,
	 * for every station on the database. */
	"CREATE TABLE " T_AUTHS " (\n"
	"  id text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),\n"
	"  doc_sha256 bytea NOT NULL CHECK (length(doc_sha256) = 32),\n"
	"  units bigint NOT NULL CHECK (units >= 1),\n"
	"  used bigint NOT NULL DEFAULT 0,\n"
	"  lot text,\n"
	"  not_before bigint,\n"
	"  not_after bigint,\n"
	"  registered bigint NOT NULL,\n"
	"  station text NOT NULL,\n"
	"  CHECK (used >= 0 AND used <= units));\n"
	"ALTER TABLE " T_CERTS " ADD COLUMN auth_id text REFERENCES " T_AUTHS " (id);\n"
	"CREATE INDEX certificates_auth ON " T_CERTS " (auth_id) WHERE auth_id IS NOT NULL;\n"
	"CREATE FUNCTION " SCHEMA ".certificates_auth_count() RETURNS trigger\n"
	"LANGUAGE plpgsql AS $$\n"
	"BEGIN\n"
	"  IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.auth_id IS NOT NULL\n"
	"     AND (OLD.state <> 'failed' OR OLD.cert_der IS NOT NULL) THEN\n"
	"    UPDATE " T_AUTHS " SET used = used - 1 WHERE id = OLD.auth_id;\n"
	"  END IF;\n"
	"  IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.auth_id IS NOT NULL\n"
	"     AND (NEW.state <> 'failed' OR NEW.cert_der IS NOT NULL) THEN\n"
	"    UPDATE " T_AUTHS " SET used = used + 1 WHERE id = NEW.auth_id;\n"
	"  END IF;\n"
	"  RETURN NULL;\n"
	"END $$;\n"
	"CREATE TRIGGER certificates_auth AFTER INSERT OR DELETE OR UPDATE OF state, cert_der,\n"
	"  auth_id ON " T_CERTS " FOR EACH ROW EXECUTE FUNCTION " SCHEMA
	".certificates_auth_count();\n"
	"CREATE TABLE " T_ATTEMPTS " (\n"
	"  id bigserial PRIMARY KEY,\n"
	"  time bigint NOT NULL,\n"
	"  station text NOT NULL,\n"
	"  slot text,\n"
	"  outcome text NOT NULL CHECK (outcome IN ('pass', 'fail', 'abandoned')),\n"
	"  reason text,\n"
	"  error text,\n"
	"  device_id text,\n"
	"  serial text,\n"
	"  board_sn text,\n"
	"  hardware_id text,\n"
	"  sku text,\n"
	"  firmware text,\n"
	"  profile text,\n"
	"  auth_id text,\n"
	"  certificate bigint,\n"
	"  reused int NOT NULL DEFAULT 0,\n"
	"  ms bigint);\n"
	"CREATE INDEX attempts_time ON " T_ATTEMPTS " (time);\n",
	/* 2 -> 3: an attempt imported from another ledger (st_ledger_import) remembers where it
	 * came from, its station and its id there, as rows and flags do, so that importing the
	 * same ledger again adds none twice. */
	"ALTER TABLE " T_ATTEMPTS " ADD COLUMN origin_id bigint;\n"
	"CREATE UNIQUE INDEX attempts_origin ON " T_ATTEMPTS " (station, origin_id)\n"
	"  WHERE origin_id IS NOT NULL;\n",
};
#define LEDGER_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* ---- Connection strings -------------------------------------------------------------- */

/* Whether spec is a PostgreSQL connection string: a postgresql:// (or postgres://) URI, or
 * key=value words that libpq takes. A file path has neither (a path with '=' in it does not
 * parse as libpq's words). */
static int pg_claims(const char *spec)
{
	PQconninfoOption *opts;
	char *msg = NULL;

	if (!spec)
		return 0;
	if (strncmp(spec, "postgresql://", 13) == 0 || strncmp(spec, "postgres://", 11) == 0)
		return 1;
	if (!strchr(spec, '='))
		return 0;
	opts = PQconninfoParse(spec, &msg);
	PQfreemem(msg);
	if (!opts)
		return 0;
	PQconninfoFree(opts);
	return 1;
}

/* Whether one entry of libpq's host or hostaddr list (n bytes at h) is this machine: empty
 * (libpq's default, the Unix socket), a Unix socket directory (a path, or @ an abstract one),
 * localhost, or a loopback address. */
static int pg_host_is_local(const char *h, size_t n)
{
	if (n == 0 || h[0] == '/' || h[0] == '@')
		return 1;
	if (n == 9 && strncasecmp(h, "localhost", 9) == 0)
		return 1;
	return st_ip_is_loopback(h, n) == 1;
}

/* Entry i of the comma-separated list (NULL: none), as *at and *n; 0 when there is none. */
static int list_entry(const char *list, size_t i, const char **at, size_t *n)
{
	for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		if (i-- == 0) {
			*at = p;
			*n = strcspn(p, ",");
			return 1;
		}
	}
	return 0;
}

/* The first server of the lists that is not this machine, as *at and *n; 0 when every one
 * is. libpq pairs the lists entry by entry and connects to an entry's hostaddr, or to its
 * host where the hostaddr is empty or missing (a socket directory where both are). */
static int pg_remote_host(const char *hosts, const char *addrs, const char **at, size_t *n)
{
	for (size_t i = 0;; i++) {
		const char *h = "", *a = "";
		size_t hn = 0, an = 0;
		int more = list_entry(hosts, i, &h, &hn) | list_entry(addrs, i, &a, &an);

		if (!more)
			return 0;
		if (an ? !pg_host_is_local(a, an) : !pg_host_is_local(h, hn)) {
			*at = an ? a : h;
			*n = an ? an : hn;
			return 1;
		}
	}
}

static const char *opt_val(const PQconninfoOption *opts, const char *key)
{
	for (; opts->keyword; opts++) {
		if (strcmp(opts->keyword, key) == 0)
			return opts->val && *opts->val ? opts->val : NULL;
	}
	return NULL;
}

/* A ledger on another machine must know its server: whoever answers in its place could read
 * every device's record and change what the line has issued. So a server that is not this
 * machine needs a connection string (or PGSSLMODE) that verifies its certificate
 * (sslmode=verify-ca or verify-full) or Kerberos encryption (gssencmode=require), or that
 * gives up verifying in words (sslmode=require, allow or disable; a warning says so).
 * libpq's default, prefer, falls back to plain text and verifies nothing: refused. Where a
 * service file names the server, the string must say sslmode itself. */
static int check_server_auth(const PQconninfoOption *opts, char *err, size_t errlen)
{
	const char *hostaddr = opt_val(opts, "hostaddr"), *host = opt_val(opts, "host");
	const char *mode = opt_val(opts, "sslmode"), *gss = opt_val(opts, "gssencmode");
	const char *remote = NULL;
	size_t n = 0;

	if (!mode)
		mode = getenv("PGSSLMODE");
	if (!gss)
		gss = getenv("PGGSSENCMODE");
	/* Each from the environment where the string has none, as libpq takes them. */
	if (!hostaddr)
		hostaddr = getenv("PGHOSTADDR");
	if (!host)
		host = getenv("PGHOST");
	if (!pg_remote_host(host, hostaddr, &remote, &n))
		remote = NULL;
	if (!remote && !opt_val(opts, "service") && !getenv("PGSERVICE"))
		return 0;
	if (mode && (strcmp(mode, "verify-full") == 0 || strcmp(mode, "verify-ca") == 0))
		return 0;
	if (gss && strcmp(gss, "require") == 0)
		return 0;
	if (mode && (strcmp(mode, "require") == 0 || strcmp(mode, "allow") == 0 ||
		     strcmp(mode, "disable") == 0)) {
		st_warn("ledger: the PostgreSQL server %.*s is not verified (sslmode=%s): whoever "
			"answers in its place can read and change the ledger",
			remote ? (int)n : 7, remote ? remote : "service", mode);
		return 0;
	}
	if (!remote)
		return st_errf(err, errlen, ST_E_INVAL,
			       "ledger: the connection string names a service, and not how the "
			       "station knows the server it names: add sslmode=verify-full (with "
			       "sslrootcert=FILE) to the string, or sslmode=require or disable in "
			       "words to take an unverified server");
	return st_errf(err, errlen, ST_E_INVAL,
		       "ledger: the PostgreSQL server %.*s is not on this machine, and the "
		       "connection string does not say how the station knows it is the ledger's "
		       "(sslmode=%s verifies nothing): add sslmode=verify-full with "
		       "sslrootcert=FILE (the CA of the server's certificate), or write "
		       "sslmode=require or sslmode=disable in words to take a server that "
		       "cannot be verified",
		       (int)(n > 200 ? 200 : n), remote, mode ? mode : "prefer, libpq's default,");
}

/* Refuses a password in the connection string: it would be in the configuration, in the
 * command lines of `station ledger --ledger` and in every message naming the ledger. Then
 * a server on another machine that nothing verifies (check_server_auth). */
static int check_spec(const char *spec, char *err, size_t errlen)
{
	PQconninfoOption *opts, *o;
	char *msg = NULL, m[256];
	int rc = 0;

	opts = PQconninfoParse(spec, &msg);
	if (!opts) {
		/* libpq's message quotes the part it could not parse, never the password. */
		rc = st_errf(err, errlen, ST_E_INVAL, "ledger: not a valid PostgreSQL connection "
			     "string: %s", pgl_message(msg, m, sizeof(m)));
		PQfreemem(msg);
		return rc;
	}
	for (o = opts; o->keyword; o++) {
		if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
			rc = st_errf(err, errlen, ST_E_INVAL,
				     "ledger: the PostgreSQL connection string holds a password; "
				     "put it in a password file instead (passfile=FILE in the "
				     "connection string, or PGPASSFILE)");
	}
	if (rc == 0)
		rc = check_server_auth(opts, err, errlen);
	PQconninfoFree(opts);
	return rc;
}

/* ---- Opening: schema version and migrations -------------------------------------------- */

/* The schema's state: 0 (no ledger schema yet), its version, or an error for a schema that
 * is not a ledger's. */
static int schema_version(struct pg_ledger *l, int *version, char *err, size_t errlen)
{
	PGresult *res;
	const char *app = NULL, *ver = NULL;
	int rc = 0, i;

	*version = 0;
	/* The catalogs read in this statement's snapshot (to_regclass() may answer from a
	 * cache that another station's migration, just committed, has not reached yet). */
	res = pgl_exec_fixed(l,
			     "SELECT EXISTS (SELECT FROM pg_namespace "
			     "WHERE nspname = '" SCHEMA "'), "
			     "EXISTS (SELECT FROM pg_class c JOIN pg_namespace n "
			     "ON n.oid = c.relnamespace "
			     "WHERE n.nspname = '" SCHEMA "' AND c.relname = 'meta')",
			     "reading the schema", &rc, err, errlen);
	if (!res)
		return rc;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		PQclear(res);
		return 0;
	}
	if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
		PQclear(res);
		return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			       "ledger %s: the database has a schema " SCHEMA " that is not a "
			       "station ledger (no table meta)",
			       l->spec);
	}
	PQclear(res);
	res = pgl_exec_fixed(l, "SELECT key, value FROM " T_META, "reading the schema version", &rc,
			     err, errlen);
	if (!res)
		return rc;
	for (i = 0; i < PQntuples(res); i++) {
		if (strcmp(PQgetvalue(res, i, 0), "application") == 0)
			app = PQgetvalue(res, i, 1);
		else if (strcmp(PQgetvalue(res, i, 0), "version") == 0)
			ver = PQgetvalue(res, i, 1);
	}
	if (!app || strcmp(app, APPLICATION) != 0 || !ver) {
		rc = st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			     "ledger %s: the schema " SCHEMA " is not a station ledger "
			     "(application '%s', expected '" APPLICATION "')",
			     l->spec, app ? app : "(none)");
	} else {
		*version = atoi(ver);
		if (*version < 1)
			rc = st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
				     "ledger %s: schema version '%s' is not a version", l->spec,
				     ver);
	}
	PQclear(res);
	return rc;
}

static int refuse_newer(struct pg_ledger *l, int version, char *err, size_t errlen)
{
	return st_errf(err, errlen, ST_E_LEDGER_VERSION,
		       "ledger %s: schema version %d is newer than this station's (%d); use a "
		       "newer station",
		       l->spec, version, LEDGER_VERSION);
}

/* Checks the version and migrates an older schema in one transaction, under an advisory
 * lock so that stations starting together migrate once. */
static int migrate(struct pg_ledger *l, char *err, size_t errlen)
{
	PGresult *res;
	char sql[96];
	int version, rc;

	rc = schema_version(l, &version, err, errlen);
	if (rc < 0)
		return rc;
	if (version > LEDGER_VERSION)
		return refuse_newer(l, version, err, errlen);
	if (version == LEDGER_VERSION)
		return 0;
	if (version == 0 && (l->flags & ST_LEDGER_NOCREATE))
		return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			       "ledger %s: the database holds no station ledger (no schema "
			       SCHEMA ")",
			       l->spec);
	res = pgl_exec_fixed(l, "BEGIN; SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ")",
			     "starting the schema migration", &rc, err, errlen);
	if (!res)
		goto fail;
	PQclear(res);
	/* Another station may have migrated it while this one waited for the lock. */
	rc = schema_version(l, &version, err, errlen);
	if (rc < 0)
		goto fail;
	if (version > LEDGER_VERSION) {
		rc = refuse_newer(l, version, err, errlen);
		goto fail;
	}
	for (; version < LEDGER_VERSION; version++) {
		res = pgl_exec_fixed(l, migrations[version], "migrating the schema", &rc, err,
				     errlen);
		if (!res)
			goto fail;
		PQclear(res);
		snprintf(sql, sizeof(sql),
			 "UPDATE " T_META " SET value = '%d' WHERE key = 'version'", version + 1);
		res = pgl_exec_fixed(l, sql, "migrating the schema", &rc, err, errlen);
		if (!res)
			goto fail;
		PQclear(res);
	}
	res = pgl_exec_fixed(l, "COMMIT", "committing the schema migration", &rc, err, errlen);
	if (!res)
		goto fail;
	PQclear(res);
	return 0;
fail:
	if (l->conn)
		PQclear(PQexec(l->conn, "ROLLBACK"));
	return rc;
}

/* STATION_TEST_FAIL=ledger.commit_answer_lost[:N] (test builds only): the answer to the
 * Nth COMMIT is lost, as when the connection drops right after the server committed. */
static void parse_fail_hook(struct pg_ledger *l)
{
#ifdef STATION_TEST_HOOKS
	const char *arg = st_test_hook("ledger.commit_answer_lost");

	if (arg)
		l->fail_at = *arg ? strtoul(arg, NULL, 10) : 1;
#else
	(void)l;
#endif
}

static void pg_close(void *inst);

static int pg_open(const char *spec, const char *station, unsigned flags, void **out,
		   char *err, size_t errlen)
{
	struct pg_ledger *l;
	char host[HOST_NAME_MAX + 1];
	int rc;

	*out = NULL;
	rc = check_spec(spec, err, errlen);
	if (rc < 0)
		return rc;
	if (!station) {
		if (gethostname(host, sizeof(host)) != 0)
			strcpy(host, "station");
		host[sizeof(host) - 1] = 0;
		station = host;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return st_errf(err, errlen, ST_E_NOMEM, "ledger: out of memory");
	l->spec = strdup(spec);
	l->station = strdup(station);
	l->flags = flags;
	l->busy_ms = LEDGER_BUSY_MS;
	l->jtail = &l->journal;
	parse_fail_hook(l);
	if (!l->spec || !l->station) {
		pg_close(l);
		return st_errf(err, errlen, ST_E_NOMEM, "ledger: out of memory");
	}
	rc = pgl_connect(l, err, errlen);
	if (rc == 0)
		rc = migrate(l, err, errlen);
	if (rc < 0) {
		pg_close(l);
		return rc;
	}
	*out = l;
	return 0;
}

static void journal_free(struct pg_ledger *l);

static void pg_close(void *inst)
{
	struct pg_ledger *l = inst;

	if (!l)
		return;
	/* Closing the connection rolls an open transaction back. */
	pgl_disconnect(l);
	journal_free(l);
	free(l->spec);
	free(l->station);
	free(l);
}

static void pg_set_busy_timeout(void *inst, int ms)
{
	struct pg_ledger *l = inst;

	l->busy_ms = ms > 0 ? ms : 0;
	l->settings_due = 1;
}

static const char *pg_path(const void *inst)
{
	const struct pg_ledger *l = inst;

	return l->spec;
}

static void pg_set_hook(void *inst, void (*fn)(enum st_ledger_hook_point point, void *arg),
			void *arg)
{
	struct pg_ledger *l = inst;

	l->hook = fn;
	l->hook_arg = arg;
}

static void pg_set_outage(void *inst, const struct st_ledger_outage *outage)
{
	struct pg_ledger *l = inst;

	if (outage)
		l->outage = *outage;
	else
		memset(&l->outage, 0, sizeof(l->outage));
}

/* ---- Transactions: the journal, restoring, committing ---------------------------------- */

/* Whether the server aborted the open transaction. */
int pgl_in_error(const struct pg_ledger *l)
{
	return l->conn && PQtransactionStatus(l->conn) == PQTRANS_INERROR;
}

static int is_read(enum call_kind k)
{
	return k == C_LOOKUP || k == C_GET || k == C_GET_SERIAL || k == C_NEWEST;
}

static void call_free(struct pg_call *c)
{
	int i;

	for (i = 0; i < PG_CALL_STRINGS; i++)
		free(c->s[i]);
	free(c->der);
	free(c);
}

static void journal_free(struct pg_ledger *l)
{
	struct pg_call *c;

	while ((c = l->journal)) {
		l->journal = c->next;
		call_free(c);
	}
	l->jtail = &l->journal;
}

/* Keeps a copy of a call of the open transaction (its inputs and its result). */
static int journal_add(struct pg_ledger *l, const struct pg_call *c)
{
	struct pg_call *j = calloc(1, sizeof(*j));
	int i, oom = !j;

	if (!j)
		return -1;
	*j = *c;
	j->next = NULL;
	j->der = NULL;
	for (i = 0; i < PG_CALL_STRINGS; i++) {
		j->s[i] = c->s[i] ? strdup(c->s[i]) : NULL;
		oom |= c->s[i] && !j->s[i];
	}
	if (c->der && c->len) {
		j->der = malloc(c->len);
		if (j->der)
			memcpy(j->der, c->der, c->len);
		oom |= !j->der;
	}
	if (oom) {
		call_free(j);
		return -1;
	}
	*l->jtail = j;
	l->jtail = &j->next;
	return 0;
}

static void tx_end(struct pg_ledger *l, int rollback)
{
	if (rollback && l->conn && PQtransactionStatus(l->conn) != PQTRANS_IDLE)
		PQclear(PQexec(l->conn, "ROLLBACK"));
	journal_free(l);
	l->in_tx = l->own_tx = l->aborted = l->lost = l->unjournaled = 0;
	l->xid[0] = 0;
	l->lost_why[0] = 0;
}

static int lost_error(struct pg_ledger *l, char *err, size_t errlen)
{
	return st_errf(err, errlen, ST_E_LEDGER_IO,
		       "ledger %s: the open transaction was lost: the database aborted it and "
		       "replaying it gave other results (%s); roll it back and try again",
		       l->spec, l->lost_why);
}

/* BEGIN, and the transaction's id for asking about it after a lost COMMIT. */
static int tx_begin(struct pg_ledger *l, char *err, size_t errlen)
{
	PGresult *res;
	int rc;

	res = pgl_exec_fixed(l, "BEGIN; SELECT pg_current_xact_id()::text",
			     "starting a transaction", &rc, err, errlen);
	if (!res) {
		if (pgl_in_error(l))
			PQclear(PQexec(l->conn, "ROLLBACK"));
		return rc;
	}
	st_msgf(l->xid, sizeof(l->xid), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* A connection lost in the middle of a transaction may leave its server process running for
 * a while (a network cut is noticed late), holding the transaction's locks: ends it, if the
 * role may and it is still the same process. */
static void end_old_backend(struct pg_ledger *l)
{
	const char *vals[2];
	char pid[16];

	if (!l->old_pid || l->old_pid == l->backend_pid || !l->conn)
		return;
	snprintf(pid, sizeof(pid), "%d", l->old_pid);
	vals[0] = pid;
	vals[1] = l->old_start;
	PQclear(PQexecParams(l->conn,
			     "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
			     "WHERE pid = $1::int4 AND backend_start = $2::timestamptz",
			     2, NULL, vals, NULL, NULL, 0));
}

/* Waiting for the database between attempts. */
struct retry {
	unsigned n;
	int waited;
};

/* After the database could not be reached: whether to try again. The first time at once;
 * then only with the outage handler, which waits the backoff. */
static int retry_again(struct pg_ledger *l, struct retry *t, const char *reason)
{
	unsigned ms = BACKOFF_FIRST_MS, i;
	size_t n = strlen(l->spec);

	if (t->n++ == 0)
		return 1;
	if (!l->outage.wait)
		return 0;
	/* The handler shows the reason to the operator: what the database said, without the
	 * connection string before it. */
	if (strncmp(reason, "ledger ", 7) == 0 && strncmp(reason + 7, l->spec, n) == 0 &&
	    strncmp(reason + 7 + n, ": ", 2) == 0)
		reason += 9 + n;
	for (i = 2; i < t->n && ms < BACKOFF_MAX_MS; i++)
		ms *= 2;
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	if (!t->waited)
		st_warn("ledger %s: %s; waiting for the database", l->spec, reason);
	t->waited = 1;
	return l->outage.wait(l->outage.arg, reason, ms) == 0;
}

static void retry_done(struct pg_ledger *l, struct retry *t)
{
	if (!t->waited)
		return;
	st_notice("ledger %s: the database answers again", l->spec);
	if (l->outage.back)
		l->outage.back(l->outage.arg);
}

/* The caller's transaction after the server aborted it: a new transaction with the journal
 * replayed, each call with the ids of its first run and each result compared. */
static int restore(struct pg_ledger *l, char *err, size_t errlen)
{
	struct pg_call *c;
	char msg[256];
	uint64_t value;
	int64_t out;
	int rc, was, n = 0;

	if (pgl_in_error(l))
		PQclear(PQexec(l->conn, "ROLLBACK"));
	if (l->unjournaled) {
		st_msgf(l->lost_why, sizeof(l->lost_why), "it held imported rows");
		l->lost = 1;
		return lost_error(l, err, errlen);
	}
	end_old_backend(l);
	rc = tx_begin(l, err, errlen);
	if (rc < 0)
		return rc;
	for (c = l->journal; c; c = c->next, n++) {
		was = c->rc;
		out = c->out;
		value = c->value;
		msg[0] = 0;
		rc = pgl_run_call(l, c, 1, NULL, msg, sizeof(msg));
		if (l->gone || pgl_in_error(l))
			return st_errf(err, errlen, rc < 0 ? rc : ST_E_LEDGER_IO, "%s", msg);
		if (rc != was || c->out != out || c->value != value) {
			st_msgf(l->lost_why, sizeof(l->lost_why),
				"call %d of the transaction returned %s, first %s%s%s", n + 1,
				rc < 0 ? st_errname(rc) : "a different result",
				was < 0 ? st_errname(was) : "success", msg[0] ? ": " : "", msg);
			c->rc = was;
			c->out = out;
			c->value = value;
			l->lost = 1;
			PQclear(PQexec(l->conn, "ROLLBACK"));
			return lost_error(l, err, errlen);
		}
	}
	l->aborted = 0;
	st_info("ledger %s: transaction restored (%d calls replayed)", l->spec, n);
	return 0;
}

/* Before the statements of a call: a connection, and the caller's transaction restored when
 * the server aborted it. */
int pgl_prepare(struct pg_ledger *l, char *err, size_t errlen)
{
	int rc;

	l->gone = l->transient = 0;
	if (l->in_tx && l->lost)
		return lost_error(l, err, errlen);
	if (!l->conn || PQstatus(l->conn) != CONNECTION_OK) {
		if (l->in_tx)
			l->aborted = 1;
		rc = pgl_connect(l, err, errlen);
		if (rc < 0) {
			l->gone = rc != ST_E_NOMEM;
			return rc;
		}
	} else if (l->settings_due && !l->in_tx) {
		rc = pgl_session_setup(l, err, errlen);
		if (rc < 0)
			return rc;
	}
	if (l->in_tx && l->aborted)
		return restore(l, err, errlen);
	return 0;
}

/* The answer to COMMIT was lost with the connection: asks the server what became of the
 * transaction. 1: it committed; 0: it did not (never arrived, or rolled back): replay it;
 * negative: the database could not be asked (the handler gave up). */
static int resolve(struct pg_ledger *l, struct retry *t, char *err, size_t errlen)
{
	const char *vals[1] = { l->xid }, *state;
	struct timespec pause = { 0, 100 * 1000000L };
	char why[512], m[256];
	PGresult *res;
	int running = 0, rc;

	st_msgf(why, sizeof(why), "%s", err ? err : "connection lost");
	for (;;) {
		if (!retry_again(l, t, why))
			return st_errf(err, errlen, ST_E_LEDGER_IO,
				       "ledger %s: the answer to COMMIT was lost and the database "
				       "cannot be asked whether it committed (%s)",
				       l->spec, why);
		if (pgl_connect(l, why, sizeof(why)) < 0)
			continue;
		end_old_backend(l);
		res = PQexecParams(l->conn, "SELECT pg_xact_status($1::xid8)", 1, NULL, vals, NULL,
				   NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK) {
			state = PQgetisnull(res, 0, 0) ? "unknown" : PQgetvalue(res, 0, 0);
			rc = strcmp(state, "committed") == 0 ? 1 :
			     strcmp(state, "aborted") == 0   ? 0 :
							       -1;
			st_notice("ledger %s: the answer to COMMIT was lost; transaction %s %s",
				  l->spec, l->xid, state);
			PQclear(res);
			if (rc >= 0)
				return rc;
			/* In progress: its server process has not noticed the lost connection. */
			if (running++ < 50) {
				t->n = 0;
				nanosleep(&pause, NULL);
			}
			st_msgf(why, sizeof(why), "transaction %s is still in progress", l->xid);
			continue;
		}
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		/* An id in this server's future: it never saw the transaction (a failover to a
		 * standby that had not received it). */
		if (state && strcmp(state, "22023") == 0) {
			PQclear(res);
			return 0;
		}
		st_msgf(why, sizeof(why), "asking about transaction %s: %s", l->xid,
			pgl_message(PQresultErrorMessage(res), m, sizeof(m)));
		PQclear(res);
		if (PQstatus(l->conn) == CONNECTION_OK)
			return st_errf(err, errlen, ST_E_LEDGER_IO, "ledger %s: %s", l->spec, why);
	}
}

static void note_rolled_back(char *err, size_t errlen)
{
	size_t n = err ? strlen(err) : 0;

	if (err && n + 1 < errlen)
		snprintf(err + n, errlen - n, " (the transaction was rolled back)");
}

/* Commits the open transaction: once PostgreSQL confirms it, or after a lost answer once
 * the server says it committed; a transaction the server aborted is restored and committed
 * again. */
static int commit_tx(struct pg_ledger *l, char *err, size_t errlen)
{
	struct retry t = { 0 };
	PGresult *res;
	int rc, transient = 0;

	for (;;) {
		rc = pgl_prepare(l, err, errlen);
		if (rc == 0) {
			if (l->hook)
				l->hook(ST_LEDGER_HOOK_COMMIT_START, l->hook_arg);
			res = pgl_exec_fixed(l, "COMMIT", "committing", &rc, err, errlen);
			if (res && strcmp(PQcmdStatus(res), "COMMIT") == 0 &&
			    ++l->commits == l->fail_at) {
				PQclear(res);
				res = NULL;
				pgl_disconnect(l);
				l->gone = 1;
				rc = st_errf(err, errlen, ST_E_LEDGER_IO,
					     "ledger %s: test fault: the answer to COMMIT was lost",
					     l->spec);
			}
			if (res && strcmp(PQcmdStatus(res), "COMMIT") == 0) {
				PQclear(res);
				break;
			}
			if (res) {
				/* The server had aborted the transaction: restore it and commit
				 * again. */
				PQclear(res);
				rc = st_errf(err, errlen, ST_E_LEDGER_IO,
					     "ledger %s: the database rolled the transaction "
					     "back at COMMIT",
					     l->spec);
				l->transient = 1;
			} else if (l->gone) {
				rc = resolve(l, &t, err, errlen);
				if (rc == 1)
					break;
				if (rc < 0) {
					tx_end(l, 0);
					return rc;
				}
				l->aborted = 1;
				continue;
			}
			l->aborted = 1;
		}
		if (l->lost)
			goto rolled_back;
		if (l->gone && retry_again(l, &t, err))
			continue;
		if (l->transient && transient++ < TRANSIENT_TRIES) {
			l->aborted = 1;
			continue;
		}
		goto rolled_back;
	}
	if (l->hook)
		l->hook(ST_LEDGER_HOOK_COMMIT_DONE, l->hook_arg);
	tx_end(l, 0);
	retry_done(l, &t);
	return 0;
rolled_back:
	tx_end(l, 1);
	note_rolled_back(err, errlen);
	return rc;
}

/* Runs one call: in the caller's transaction (kept in the journal), on its own (a read), or
 * in a transaction of its own (a write outside the caller's: committed before it returns).
 * The database going away or aborting the transaction is dealt with here. */
static int call(struct pg_ledger *l, struct pg_call *c, struct st_ledger_row **row, char *err,
		size_t errlen)
{
	struct retry t = { 0 };
	int rc, own, transient = 0;

	for (;;) {
		own = 0;
		rc = pgl_prepare(l, err, errlen);
		if (rc == 0 && !l->in_tx && !is_read(c->kind)) {
			rc = tx_begin(l, err, errlen);
			own = l->in_tx = l->own_tx = rc == 0;
		}
		if (rc == 0) {
			rc = pgl_run_call(l, c, 0, row, err, errlen);
			if (!l->gone && !pgl_in_error(l)) {
				if (l->in_tx && c->kind != C_GET && c->kind != C_GET_SERIAL &&
				    c->kind != C_NEWEST &&
				    journal_add(l, c) < 0) {
					l->lost = 1;
					st_msgf(l->lost_why, sizeof(l->lost_why),
						"out of memory keeping the transaction's journal");
				}
				if (own && rc < 0) {
					tx_end(l, 1);
				} else if (own) {
					int crc = commit_tx(l, err, errlen);

					if (crc < 0)
						rc = crc;
				}
				retry_done(l, &t);
				return rc;
			}
			if (row && *row) {
				st_ledger_row_free(*row);
				*row = NULL;
			}
			if (own)
				tx_end(l, 1);
			else if (l->in_tx)
				l->aborted = 1;
		}
		if (l->in_tx && l->lost)
			return rc;
		if (l->gone && retry_again(l, &t, err))
			continue;
		if (l->transient && transient++ < TRANSIENT_TRIES)
			continue;
		return rc;
	}
}

/* ---- The ops --------------------------------------------------------------------------- */

static int pg_begin(void *inst, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct retry t = { 0 };
	int rc;

	if (l->in_tx)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: a transaction is already open",
			       l->spec);
	for (;;) {
		rc = pgl_prepare(l, err, errlen);
		if (rc == 0)
			rc = tx_begin(l, err, errlen);
		if (rc == 0) {
			l->in_tx = 1;
			retry_done(l, &t);
			return 0;
		}
		if (!l->gone || !retry_again(l, &t, err))
			return rc;
	}
}

static int pg_commit(void *inst, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;

	if (!l->in_tx)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: no transaction is open",
			       l->spec);
	return commit_tx(l, err, errlen);
}

static int pg_rollback(void *inst)
{
	struct pg_ledger *l = inst;

	if (l->in_tx)
		tx_end(l, 1);
	return 0;
}

static int pg_lookup(void *inst, const char *device_id, const uint8_t pubkey_sha256[32],
		     struct st_ledger_row **row, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { .kind = C_LOOKUP };

	if (row)
		*row = NULL;
	if (!device_id || !*device_id)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: lookup without a device id",
			       l->spec);
	c.s[0] = (char *)device_id;
	memcpy(c.key, pubkey_sha256, 32);
	return call(l, &c, row, err, errlen);
}

/* The call of an intent for row (kind C_ADD_INTENT), its inputs checked. */
static int intent_call(struct pg_ledger *l, const struct st_ledger_row *row, struct pg_call *c,
		       char *err, size_t errlen)
{
	size_t n = row->serial ? strlen(row->serial) : 0;

	if (n < 1 || n > 40 || strspn(row->serial, "0123456789abcdef") != n)
		return st_errf(err, errlen, ST_E_INVAL,
			       "ledger %s: serial '%s' is not 1 to 40 lower-case hex digits",
			       l->spec, row->serial ? row->serial : "(null)");
	if (!row->device_id || !*row->device_id)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: intent for serial %s has no "
			       "device id", l->spec, row->serial);
	c->kind = C_ADD_INTENT;
	c->s[0] = row->serial;
	c->s[1] = row->device_id;
	c->s[2] = row->profile;
	c->s[3] = row->slot;
	memcpy(c->csr, row->csr_sha256, 32);
	memcpy(c->key, row->pubkey_sha256, 32);
	c->t[0] = (int64_t)time(NULL);
	return 0;
}

static int pg_add_intent(void *inst, const struct st_ledger_row *row, int64_t *id, char *err,
			 size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { 0 };
	int rc;

	*id = 0;
	rc = intent_call(l, row, &c, err, errlen);
	if (rc == 0)
		rc = call(l, &c, NULL, err, errlen);
	if (rc == 0)
		*id = c.out;
	return rc;
}

static int pg_auth_register(void *inst, const struct st_ledger_auth *a, int64_t *used,
			    char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { .kind = C_AUTH_REGISTER };
	int rc;

	c.s[0] = (char *)a->id;
	c.s[1] = (char *)a->lot;
	memcpy(c.key, a->doc_sha256, 32);
	c.t[0] = a->units;
	c.t[1] = (int64_t)a->not_before;
	c.t[2] = (int64_t)a->not_after;
	c.value = (uint64_t)time(NULL);
	rc = call(l, &c, NULL, err, errlen);
	if (rc == 0 && used)
		*used = c.out;
	return rc;
}

static int pg_add_intent_auth(void *inst, const struct st_ledger_row *row, const char *auth_id,
			      int64_t *id, int64_t *used, int64_t *units, char *err,
			      size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { 0 };
	int rc;

	rc = intent_call(l, row, &c, err, errlen);
	if (rc < 0)
		return rc;
	c.kind = C_ADD_INTENT_AUTH;
	c.s[4] = (char *)auth_id;
	rc = call(l, &c, NULL, err, errlen);
	if (rc < 0)
		return rc;
	*id = c.out;
	if (used)
		*used = (int64_t)c.value;
	if (units)
		*units = c.t[1];
	return 0;
}

/* A write of one row by id (kind), with what else it takes in c. */
static int row_call(struct pg_ledger *l, struct pg_call *c, enum call_kind kind, int64_t id,
		    char *err, size_t errlen)
{
	c->kind = kind;
	c->id = id;
	return call(l, c, NULL, err, errlen);
}

static int pg_supersede(void *inst, int64_t id, char *err, size_t errlen)
{
	struct pg_call c = { 0 };

	return row_call(inst, &c, C_SUPERSEDE, id, err, errlen);
}

static int pg_set_cert(void *inst, int64_t id, const uint8_t *der, size_t len,
		       time_t not_before, time_t not_after, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { 0 };

	if (!der || len == 0 || len > INT_MAX)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: row %lld: empty certificate",
			       l->spec, (long long)id);
	c.der = (uint8_t *)der;
	c.len = len;
	c.t[0] = (int64_t)not_before;
	c.t[1] = (int64_t)not_after;
	c.t[2] = (int64_t)time(NULL);
	return row_call(l, &c, C_SET_CERT, id, err, errlen);
}

static int pg_mark_delivered(void *inst, int64_t id, char *err, size_t errlen)
{
	struct pg_call c = { 0 };

	c.t[0] = (int64_t)time(NULL);
	return row_call(inst, &c, C_DELIVERED, id, err, errlen);
}

static int pg_mark_failed(void *inst, int64_t id, const char *reason, char *err,
			  size_t errlen)
{
	struct pg_call c = { 0 };

	c.s[0] = (char *)(reason && *reason ? reason : "unspecified");
	return row_call(inst, &c, C_FAILED, id, err, errlen);
}

static int pg_flag(void *inst, const char *device_id, const uint8_t pubkey_sha256[32],
		   const char *slot, const char *reason, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { .kind = C_FLAG };

	if (!reason || !*reason)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: flag without a reason",
			       l->spec);
	c.s[0] = (char *)device_id;
	c.s[1] = (char *)slot;
	c.s[2] = (char *)reason;
	if (pubkey_sha256) {
		memcpy(c.key, pubkey_sha256, 32);
		c.has_key = 1;
	}
	c.t[0] = (int64_t)time(NULL);
	return call(l, &c, NULL, err, errlen);
}

static int pg_next_sequence(void *inst, const char *prefix, uint64_t *n, char *err,
			    size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { .kind = C_SEQUENCE };
	int rc;

	*n = 0;
	if (!prefix)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: sequence without a prefix",
			       l->spec);
	c.s[0] = (char *)prefix;
	rc = call(l, &c, NULL, err, errlen);
	if (rc == 0)
		*n = c.value;
	return rc;
}

static int pg_get(void *inst, int64_t id, struct st_ledger_row **row, char *err,
		  size_t errlen)
{
	struct pg_call c = { .kind = C_GET, .id = id };

	*row = NULL;
	return call(inst, &c, row, err, errlen);
}

static int pg_get_serial(void *inst, const char *serial, struct st_ledger_row **row,
			 char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { .kind = C_GET_SERIAL };

	*row = NULL;
	if (!serial)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: no serial given", l->spec);
	c.s[0] = (char *)serial;
	return call(l, &c, row, err, errlen);
}

static int pg_newest(void *inst, const char *device_id, struct st_ledger_row **row, char *err,
		     size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { .kind = C_NEWEST };

	*row = NULL;
	if (!device_id || !*device_id)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: lookup without a device id",
			       l->spec);
	c.s[0] = (char *)device_id;
	return call(l, &c, row, err, errlen);
}

/* Reads a whole table through a cursor WITH HOLD: the server keeps one snapshot of it for
 * the caller to fetch a chunk at a time, and other statements (fn's calls) may run on the
 * connection meanwhile, inside a transaction or not. */
int pgl_scan(struct pg_ledger *l, const char *declare, const char *fetch, const char *close,
	     int (*each)(struct pg_ledger *l, const PGresult *res, int i, void *ctx,
			 char *err, size_t errlen),
	     void *ctx, const char *what, char *err, size_t errlen)
{
	struct retry t = { 0 };
	PGresult *res;
	int rc, i, n, stop = 0;

	for (;;) {
		rc = pgl_prepare(l, err, errlen);
		if (rc == 0 && pgl_run_fixed(l, declare, what, err, errlen) == 0)
			break;
		if (rc == 0)
			rc = ST_E_LEDGER_IO;
		if (l->in_tx && (l->gone || pgl_in_error(l)))
			l->aborted = 1;
		if (!l->gone || !retry_again(l, &t, err))
			return rc;
	}
	retry_done(l, &t);
	do {
		res = pgl_exec_fixed(l, fetch, what, &rc, err, errlen);
		if (!res)
			break;
		n = PQntuples(res);
		for (i = 0; i < n && !stop; i++) {
			rc = each(l, res, i, ctx, err, errlen);
			if (rc != 0)
				stop = 1;
		}
		PQclear(res);
		if (rc > 0)
			rc = 0;
	} while (!stop && n > 0);
	if (l->gone || pgl_in_error(l)) {
		if (l->in_tx)
			l->aborted = 1;
	} else {
		pgl_run_fixed(l, close, what, NULL, 0);
	}
	return rc;
}

struct row_ctx {
	int (*fn)(const struct st_ledger_row *row, void *arg);
	void *arg;
};

static int each_row(struct pg_ledger *l, const PGresult *res, int i, void *ctx, char *err,
		    size_t errlen)
{
	struct row_ctx *c = ctx;
	struct st_ledger_row *r;
	const char *auth_id = pgl_col_text(res, i, 16);
	int rc = pgl_read_row(l, res, i, 0, &r, err, errlen);

	if (rc < 0)
		return rc;
	if (auth_id && !(r->auth_id = strdup(auth_id))) {
		st_ledger_row_free(r);
		return st_errf(err, errlen, ST_E_NOMEM, "ledger %s: out of memory", l->spec);
	}
	rc = c->fn(r, c->arg);
	st_ledger_row_free(r);
	return rc != 0 ? 1 : 0;
}

static int pg_foreach(void *inst, int (*fn)(const struct st_ledger_row *row, void *arg),
		      void *arg, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct row_ctx c = { fn, arg };
	int rc;

	if (l->iterating)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: nested st_ledger_foreach",
			       l->spec);
	l->iterating = 1;
	rc = pgl_scan(l,
		      "DECLARE st_ledger_rows BINARY NO SCROLL CURSOR WITH HOLD FOR "
		      "SELECT " ROW_COLUMNS ", auth_id FROM " T_CERTS " ORDER BY id",
		      "FETCH FORWARD " FETCH_ROWS " FROM st_ledger_rows", "CLOSE st_ledger_rows",
		      each_row, &c, "reading the rows", err, errlen);
	l->iterating = 0;
	return rc;
}

struct flag_ctx {
	int (*fn)(const struct st_ledger_flag *flag, void *arg);
	void *arg;
};

static int each_flag(struct pg_ledger *l, const PGresult *res, int i, void *ctx, char *err,
		     size_t errlen)
{
	struct flag_ctx *c = ctx;
	struct st_ledger_flag f;

	(void)l;
	(void)err;
	(void)errlen;
	f.id = pgl_col_i64(res, i, 0);
	f.time = (time_t)pgl_col_i64(res, i, 1);
	f.station = pgl_col_text(res, i, 2);
	f.slot = pgl_col_text(res, i, 3);
	f.device_id = pgl_col_text(res, i, 4);
	f.pubkey_sha256 = PQgetlength(res, i, 5) == 32 && !PQgetisnull(res, i, 5) ?
				  (const uint8_t *)PQgetvalue(res, i, 5) :
				  NULL;
	f.reason = pgl_col_text(res, i, 6);
	if (!f.station)
		f.station = "";
	if (!f.reason)
		f.reason = "";
	return c->fn(&f, c->arg) != 0 ? 1 : 0;
}

static int pg_foreach_flag(void *inst, int (*fn)(const struct st_ledger_flag *flag, void *arg),
			   void *arg, char *err, size_t errlen)
{
	struct flag_ctx c = { fn, arg };

	return pgl_scan(inst,
			"DECLARE st_ledger_flags BINARY NO SCROLL CURSOR WITH HOLD FOR "
			"SELECT id, time, station, slot, device_id, pubkey_sha256, reason "
			"FROM " T_FLAGS " ORDER BY id",
			"FETCH FORWARD " FETCH_ROWS " FROM st_ledger_flags",
			"CLOSE st_ledger_flags", each_flag, &c, "reading the flags", err,
			errlen);
}

/* PostgreSQL checks its own pages (WAL, and checksums when the cluster has them): this
 * checks what is the ledger's, the schema version and the indexes that carry its unique
 * rules, present and valid. */
static int pg_integrity(void *inst, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	PGresult *res;
	int rc, version;

	rc = pgl_prepare(l, err, errlen);
	if (rc == 0)
		rc = schema_version(l, &version, err, errlen);
	if (rc < 0)
		return rc;
	if (version != LEDGER_VERSION)
		return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			       "ledger %s: integrity check failed: schema version %d, expected %d",
			       l->spec, version, LEDGER_VERSION);
	res = pgl_exec_fixed(l,
			     "SELECT n.name, i.indisvalid AND i.indisready AND i.indisunique "
			     "FROM unnest(ARRAY['certificates_serial', 'certificates_pubkey', "
			     "'certificates_intent']) AS n(name) "
			     "LEFT JOIN pg_class c ON c.relname = n.name "
			     "AND c.relnamespace = '" SCHEMA "'::regnamespace "
			     "LEFT JOIN pg_index i ON i.indexrelid = c.oid "
			     "WHERE i.indisvalid IS NOT TRUE "
			     "OR NOT (i.indisready AND i.indisunique)",
			     "checking integrity", &rc, err, errlen);
	if (!res)
		return rc;
	if (PQntuples(res) > 0)
		rc = st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			     "ledger %s: integrity check failed: unique index %s is missing or not "
			     "valid",
			     l->spec, PQgetvalue(res, 0, 0));
	PQclear(res);
	if (rc < 0)
		return rc;
	/* The units are counted by the trigger: it is there and enabled, and every count is
	 * the number of rows that consume a unit. */
	res = pgl_exec_fixed(l,
			     "SELECT 'trigger certificates_auth is missing or disabled' WHERE NOT "
			     "EXISTS (SELECT FROM pg_trigger WHERE tgrelid = '" T_CERTS
			     "'::regclass AND tgname = 'certificates_auth' AND tgenabled <> 'D') "
			     "UNION ALL SELECT format('authorization %s counts %s units used, its "
			     "rows %s', a.id, a.used, (SELECT count(*) FROM " T_CERTS
			     " c WHERE c.auth_id = a.id AND " LIVE ")) FROM " T_AUTHS " a WHERE "
			     "a.used <> (SELECT count(*) FROM " T_CERTS " c WHERE c.auth_id = a.id "
			     "AND " LIVE ")",
			     "checking integrity", &rc, err, errlen);
	if (!res)
		return rc;
	if (PQntuples(res) > 0)
		rc = st_errf(err, errlen, ST_E_LEDGER_CORRUPT, "ledger %s: integrity check failed: %s",
			     l->spec, PQgetvalue(res, 0, 0));
	PQclear(res);
	return rc;
}

/* The line's ledger is a database: it is backed up as one, where its server is. */
static int pg_backup(void *inst, const char *dest, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;

	return st_errf(err, errlen, ST_E_INVAL,
		       "ledger backup %s: %s is a PostgreSQL database shared by the line; back "
		       "it up with pg_dump (pg_dump --schema=" SCHEMA " -Fc) or the server's "
		       "base backups, or write its rows with `station ledger export`",
		       dest ? dest : "", l->spec);
}

const struct st_ledger_ops st_ledger_pg_ops = {
	.name = "postgresql",
	.claims = pg_claims,
	.open = pg_open,
	.close = pg_close,
	.set_busy_timeout = pg_set_busy_timeout,
	.path = pg_path,
	.set_hook = pg_set_hook,
	.set_outage = pg_set_outage,
	.lookup = pg_lookup,
	.newest = pg_newest,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.add_intent = pg_add_intent,
	.supersede = pg_supersede,
	.set_cert = pg_set_cert,
	.mark_delivered = pg_mark_delivered,
	.mark_failed = pg_mark_failed,
	.flag = pg_flag,
	.next_sequence = pg_next_sequence,
	.get = pg_get,
	.get_serial = pg_get_serial,
	.foreach = pg_foreach,
	.foreach_flag = pg_foreach_flag,
	.integrity = pg_integrity,
	.backup = pg_backup,
	.foreach_sequence = pgl_foreach_sequence,
	.import_row = pgl_import_row,
	.import_flag = pgl_import_flag,
	.import_sequence = pgl_import_sequence,
	.import_auth = pgl_import_auth,
	.import_attempt = pgl_import_attempt,
	.auth_register = pg_auth_register,
	.add_intent_auth = pg_add_intent_auth,
	.foreach_auth = pgl_foreach_auth,
	.auth_stations = pgl_auth_stations,
	.foreach_auth_cert = pgl_foreach_auth_cert,
	.add_attempt = pgl_add_attempt,
	.foreach_attempt = pgl_foreach_attempt,
};
