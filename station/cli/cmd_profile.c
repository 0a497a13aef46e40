/* `station profile`: what profile authors run. `check` validates profiles and reports every
 * problem as file:line:col; `render` is a dry run that writes (or prints) every file exactly
 * as a board would receive it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca.h"
#include "commands.h"
#include "config.h"
#include "err.h"
#include "profile.h"
#include "sota.h"
#include "yamlload.h"

/* Stand-ins when no certificate is given: PEM-shaped so templates and files look as they
 * will, and saying plainly on every line that they are not certificates. */
static const char placeholder_cert[] =
	"-----BEGIN CERTIFICATE-----\n"
	"PLACEHOLDER/device/certificate/written/by/station/profile/render\n"
	"PLACEHOLDER/not/a/certificate/the/station/issues/the/real/one/on/the/line\n"
	"-----END CERTIFICATE-----\n";
static const char placeholder_chain[] =
	"-----BEGIN CERTIFICATE-----\n"
	"PLACEHOLDER/device/CA/certificate/written/by/station/profile/render\n"
	"-----END CERTIFICATE-----\n";
static const char placeholder_root[] =
	"-----BEGIN CERTIFICATE-----\n"
	"PLACEHOLDER/factory/root/certificate/written/by/station/profile/render\n"
	"-----END CERTIFICATE-----\n";

#define MAX_PEM_BYTES (64 * 1024)

static void profile_usage(FILE *out)
{
	fprintf(out,
		"usage: station profile check FILE...\n"
		"       station profile render FILE --device-id ID --hardware-id HW [options]\n"
		"\n"
		"Per-SKU profiles (the schema is in profiles/README.md).\n"
		"\n"
		"  check    validate profiles; every problem is printed as\n"
		"           file:line:col: message, then the count per file;\n"
		"           exit 0 when all are valid, 1 otherwise\n"
		"  render   dry run: write or print every file a board would receive\n"
		"\n"
		"'station profile check --help' and 'station profile render --help' say more.\n");
}

static void check_usage(FILE *out)
{
	fprintf(out,
		"usage: station profile check [-c STATION.yaml] FILE|DIR...\n"
		"\n"
		"Loads each profile (following 'extends') and checks everything the station\n"
		"checks before it touches a board: keys and their types, ranges and allowed\n"
		"values, template variables, template files, device id patterns, file paths\n"
		"and modes. Every problem goes to stderr as one line 'file:line:col: message',\n"
		"then one line 'N errors in FILE'; valid profiles are listed on stdout as\n"
		"'FILE: ok'.\n"
		"A directory is checked as the station loads it: every *.yaml in it, and no two\n"
		"profiles with the same sku or matching the same board.\n"
		"With -c, each profile is also checked against the CA of that station\n"
		"configuration: its factory must be the CA certificate's OU.\n"
		"\n"
		"Exit status: 0 when every profile is valid, 1 when any is not, 2 on bad usage.\n");
}

static void render_usage(FILE *out)
{
	fprintf(out,
		"usage: station profile render FILE --device-id ID --hardware-id HW [--sku SKU]\n"
		"         [--cert FILE] [--chain FILE] [--root FILE]\n"
		"         [--config-dir DIR] [--override SECTION.KEY=VALUE]... [--out DIR]\n"
		"\n"
		"Renders every file profile FILE writes to a board, byte for byte as the\n"
		"board would receive it. Nothing is signed and no board is touched. The\n"
		"certificate subject the board's CSR must carry is written to stderr, with a\n"
		"warning when the profile would not be chosen for this hardware id and sku.\n"
		"\n"
		"  --device-id ID        the board's device id (checked against the profile)\n"
		"  --hardware-id HW      the hardware id the board reports\n"
		"  --sku SKU             the sku the board reports (checked against match.sku)\n"
		"  --cert FILE           the board's certificate (PEM); without it a placeholder\n"
		"                        block marked PLACEHOLDER stands in\n"
		"  --chain FILE          the device CA certificate(s) above it (PEM; placeholder)\n"
		"  --root FILE           the factory root certificate (PEM; placeholder)\n"
		"  --config-dir DIR      sota config dir, as a registration request may set it\n"
		"  --override S.K=V      a sota.toml override as a registration request sends it\n"
		"                        (V is TOML text: --override 'pacman.tags=\"main\"')\n"
		"  --out DIR             write each file under DIR (DIR/var/sota/client.pem ...),\n"
		"                        creating directories and applying the file's mode\n"
		"                        (a symbolic link inside DIR is refused, not followed);\n"
		"                        without it every file is printed to stdout after a\n"
		"                        '==> PATH (mode 0644, N bytes) <==' header\n"
		"\n"
		"Exit status: 0 when every file was rendered, 1 otherwise, 2 on bad usage.\n");
}

/* Checks profile p (loaded from name) against the station's CA: its factory must be the CA
 * certificate's OU, or every CSR would be refused. (Every key algorithm a profile may allow
 * is an EC key, which the CA certifies whatever its own curve.) Returns 0, or 1 with a line
 * on stderr. */
static int check_against_ca(const struct st_profile *p, const char *name, const struct st_ca *ca)
{
	if (p->policy.factory[0] && strcmp(p->policy.factory, ca->ou) != 0) {
		fprintf(stderr,
			"%s: factory '%s' is not the station CA's OU '%s'; every CSR for this "
			"profile would be refused\n",
			name, p->policy.factory, ca->ou);
		return 1;
	}
	return 0;
}

static int cmd_check(int argc, char **argv)
{
	const char *config = NULL;
	struct st_config *cfg = NULL;
	struct st_ca *ca = NULL;
	int bad = 0, first = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			check_usage(stdout);
			return 0;
		}
	}
	if (argc >= 3 && (strcmp(argv[1], "-c") == 0 || strcmp(argv[1], "--config") == 0)) {
		config = argv[2];
		first = 3;
	}
	if (argc <= first) {
		check_usage(stderr);
		return 2;
	}
	if (config) {
		char err[1024];

		if (st_config_load(config, stderr, &cfg, err, sizeof(err)) < 0 ||
		    st_ca_load(cfg->ca.cert, cfg->ca.chain, cfg->ca.root, &ca, err,
			       sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			st_config_free(cfg);
			return 1;
		}
	}
	for (int i = first; i < argc; i++) {
		const struct st_profile *p = NULL;
		struct stat st;
		char err[512];
		int rc;

		fflush(stdout);
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			struct st_profile_set *set = NULL;

			rc = st_profile_set_load(argv[i], stderr, &set, err, sizeof(err));
			if (rc != 0) {
				fprintf(stderr, "%s\n", err);
				bad = 1;
				continue;
			}
			for (size_t k = 0; ca && k < st_profile_set_count(set); k++) {
				const struct st_profile *sp = st_profile_set_get(set, k);

				if (check_against_ca(sp, sp->path ? sp->path : argv[i], ca))
					rc = 1;
			}
			if (rc == 0)
				printf("%s: ok (%zu profiles)\n", argv[i],
				       st_profile_set_count(set));
			else
				bad = 1;
			st_profile_set_free(set);
			continue;
		}
		rc = st_profile_load(argv[i], stderr, &p, err, sizeof(err));
		if (rc != 0) {
			fprintf(stderr, "%s\n", err);
			bad = 1;
			continue;
		}
		if (ca && check_against_ca(p, argv[i], ca))
			bad = 1;
		else
			printf("%s: ok (sku %s, %zu file%s)\n", argv[i], p->sku, p->n_files,
			       p->n_files == 1 ? "" : "s");
		st_profile_free(p);
	}
	st_ca_free(ca);
	st_config_free(cfg);
	return bad;
}

static int read_pem(const char *path, char **out)
{
	char err[256];
	size_t len;
	int rc = st_yl_read_file(path, MAX_PEM_BYTES, out, &len, err, sizeof(err));

	if (rc != 0) {
		fprintf(stderr, "station profile render: cannot read %s: %s\n", path, err);
		return rc;
	}
	if (memchr(*out, '\0', len) || !strstr(*out, "-----BEGIN ")) {
		fprintf(stderr, "station profile render: %s is not PEM text\n", path);
		free(*out);
		*out = NULL;
		return ST_E_INVAL;
	}
	return 0;
}

/* mkdir -p DIR. DIR is the operator's own choice, so a link on its way is followed. */
static int make_out_dir(char *path)
{
	size_t len = strlen(path);

	for (size_t i = 1; i <= len; i++) {
		char c = path[i];

		if (c != '/' && c != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0755) != 0 && errno != EEXIST) {
			int e = errno;

			fprintf(stderr, "station profile render: cannot create %s: %s\n", path,
				strerror(e));
			path[i] = c;
			return -1;
		}
		path[i] = c;
	}
	return 0;
}

/* Why opening a component of dest (its first `len` bytes, opened below dfd as comp) failed
 * with errno e: a symbolic link is named as one. */
static void refuse_component(int dfd, const char *comp, const char *dest, size_t len, int e)
{
	struct stat st;

	if ((e == ELOOP || e == ENOTDIR) &&
	    fstatat(dfd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		fprintf(stderr,
			"station profile render: cannot write %s: '%.*s' is a symbolic link, which "
			"is not followed\n",
			dest, (int)len, dest);
	else
		fprintf(stderr, "station profile render: cannot write %s: %.*s: %s\n", dest,
			(int)len, dest, strerror(e));
}

/* Opens dest (DIR/rel, rel below the directory dfd) for writing, creating the directories
 * between with mkdirat. Each component is opened on its own with O_NOFOLLOW, the file
 * itself too: a symbolic link someone left inside DIR (DIR/etc -> /etc) is refused, never
 * written through, as the agent's store and st_yl_open_beneath refuse them. */
static int open_below(int dfd, const char *rel, const char *dest, mode_t mode)
{
	size_t base = strlen(dest) - strlen(rel);
	char comp[NAME_MAX + 1];
	size_t i = 0;
	int fd = -1;

	dfd = dup(dfd);
	if (dfd < 0) {
		fprintf(stderr, "station profile render: cannot write %s: %s\n", dest,
			strerror(errno));
		return -1;
	}
	for (;;) {
		size_t n = strcspn(rel + i, "/");
		int last = rel[i + n] == '\0';

		if (n > NAME_MAX || (n == 2 && strncmp(rel + i, "..", 2) == 0)) {
			fprintf(stderr,
				"station profile render: cannot write %s: a component is '..' or "
				"longer than %d bytes\n",
				dest, NAME_MAX);
			break;
		}
		memcpy(comp, rel + i, n);
		comp[n] = '\0';
		if (last) {
			fd = openat(dfd, comp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
				    mode);
			if (fd < 0)
				refuse_component(dfd, comp, dest, base + i + n, errno);
			break;
		}
		if (n > 0 && !(n == 1 && comp[0] == '.')) {
			int sub;

			if (mkdirat(dfd, comp, 0755) != 0 && errno != EEXIST) {
				refuse_component(dfd, comp, dest, base + i + n, errno);
				break;
			}
			sub = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				refuse_component(dfd, comp, dest, base + i + n, errno);
				break;
			}
			close(dfd);
			dfd = sub;
		}
		i += n + 1;
	}
	close(dfd);
	return fd;
}

static int write_one(int dirfd, const char *dir, const struct st_render_file *f)
{
	char *dest = st_yl_join(dir, f->path + 1);
	size_t done = 0;
	int fd = -1, rc = -1;

	if (!dest) {
		fprintf(stderr, "station profile render: out of memory\n");
		goto out;
	}
	/* The file's own mode, not the umask's idea of it: the dry run shows what the board
	 * gets. */
	fd = open_below(dirfd, f->path + 1, dest, 0600);
	if (fd < 0)
		goto out;
	if (fchmod(fd, f->mode) != 0) {
		fprintf(stderr, "station profile render: cannot write %s: %s\n", dest,
			strerror(errno));
		goto out;
	}
	while (done < f->len) {
		ssize_t w = write(fd, f->data + done, f->len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			fprintf(stderr, "station profile render: cannot write %s: %s\n", dest,
				strerror(errno));
			goto out;
		}
		done += (size_t)w;
	}
	if (close(fd) != 0) {
		fd = -1;
		fprintf(stderr, "station profile render: cannot write %s: %s\n", dest,
			strerror(errno));
		goto out;
	}
	fd = -1;
	printf("%s (mode %04o, %zu bytes)\n", dest, f->mode, f->len);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(dest);
	return rc;
}

static int add_override(struct st_sota_overrides *o, const char *arg)
{
	const char *dot = strchr(arg, '.');
	const char *eq = strchr(arg, '=');
	char *section = NULL, *key = NULL;
	int rc = -1;

	if (!dot || !eq || dot > eq || dot == arg || eq == dot + 1) {
		fprintf(stderr,
			"station profile render: --override '%s' is not SECTION.KEY=VALUE\n", arg);
		return -1;
	}
	section = strndup(arg, (size_t)(dot - arg));
	key = strndup(dot + 1, (size_t)(eq - dot - 1));
	if (section && key && st_sota_override_set(o, section, key, eq + 1) == 0)
		rc = 0;
	else
		fprintf(stderr, "station profile render: out of memory\n");
	free(section);
	free(key);
	return rc;
}

/* Says on stderr which subject the board's CSR must carry for this profile, and warns
 * when the profile would not be the one chosen for a board reporting hwid and sku. */
static void explain_board(const struct st_profile *p, const char *file, const char *device_id,
			  const char *hwid, const char *sku)
{
	const struct st_policy *pol = &p->policy;

	fprintf(stderr,
		"station profile render: the board's CSR must have the subject CN=%s, OU=%s%s\n",
		device_id, pol->factory[0] ? pol->factory : "(the station CA's OU)",
		pol->production ? ", businessCategory=production" : "");
	if (p->match_sku && !sku)
		fprintf(stderr,
			"station profile render: warning: %s applies only to boards reporting sku "
			"'%s'; no --sku given\n",
			file, p->match_sku);
	else if (p->match_sku && strcmp(sku, p->match_sku) != 0)
		fprintf(stderr,
			"station profile render: warning: --sku '%s' does not match %s: its "
			"match.sku is '%s'\n",
			sku, file, p->match_sku);
	if (!st_profile_matches(p, hwid, p->match_sku)) {
		fprintf(stderr,
			"station profile render: warning: --hardware-id '%s' does not match %s: "
			"its match.hardware_ids are",
			hwid, file);
		for (size_t i = 0; i < p->n_match_hardware_ids; i++)
			fprintf(stderr, "%s'%s'", i ? ", " : " ", p->match_hardware_ids[i]);
		fprintf(stderr, "%s\n", p->n_match_hardware_ids ? "" : " empty");
	}
}

static int cmd_render(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "device-id", required_argument, NULL, 'd' },
		{ "hardware-id", required_argument, NULL, 'w' },
		{ "sku", required_argument, NULL, 's' },
		{ "cert", required_argument, NULL, 'c' },
		{ "chain", required_argument, NULL, 'C' },
		{ "root", required_argument, NULL, 'r' },
		{ "config-dir", required_argument, NULL, 'D' },
		{ "override", required_argument, NULL, 'o' },
		{ "out", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *device_id = NULL, *hwid = NULL, *sku = NULL, *cert = NULL, *chain = NULL, *root = NULL;
	const char *config_dir = NULL, *outdir = NULL, *file;
	char *pem[3] = { NULL, NULL, NULL };
	struct st_sota_overrides ov = { 0 };
	const struct st_profile *p = NULL;
	struct st_render *r = NULL;
	struct st_render_input in;
	char err[512];
	int c, status = 2, outfd = -1;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			/* A UUID is recorded in lower case; render what a board would get. */
			st_device_id_normalize(optarg);
			device_id = optarg;
			break;
		case 'w':
			hwid = optarg;
			break;
		case 's':
			sku = optarg;
			break;
		case 'c':
			cert = optarg;
			break;
		case 'C':
			chain = optarg;
			break;
		case 'r':
			root = optarg;
			break;
		case 'D':
			config_dir = optarg;
			break;
		case 'o':
			if (add_override(&ov, optarg) != 0)
				goto out;
			break;
		case 'O':
			outdir = optarg;
			break;
		case 'h':
			render_usage(stdout);
			status = 0;
			goto out;
		default:
			render_usage(stderr);
			goto out;
		}
	}
	if (optind != argc - 1 || !device_id || !hwid) {
		fprintf(stderr, "station profile render: %s\n",
			optind >= argc	    ? "name one profile FILE"
			: optind < argc - 1 ? "name exactly one profile FILE"
			: !device_id	    ? "--device-id is required"
					    : "--hardware-id is required");
		render_usage(stderr);
		goto out;
	}
	file = argv[optind];
	status = 1;
	if ((cert && read_pem(cert, &pem[0]) != 0) || (chain && read_pem(chain, &pem[1]) != 0) ||
	    (root && read_pem(root, &pem[2]) != 0))
		goto out;
	if (st_profile_load(file, stderr, &p, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	explain_board(p, file, device_id, hwid, sku);
	memset(&in, 0, sizeof(in));
	in.device_id = device_id;
	in.hardware_id = hwid;
	in.cert_pem = pem[0] ? pem[0] : placeholder_cert;
	in.chain_pem = pem[1] ? pem[1] : placeholder_chain;
	in.root_pem = pem[2] ? pem[2] : placeholder_root;
	in.config_dir = config_dir;
	in.overrides = ov.n ? &ov : NULL;
	if (st_profile_render(p, &in, &r, err, sizeof(err)) != 0) {
		fprintf(stderr, "station profile render: %s: %s\n", file, err);
		goto out;
	}
	if (outdir) {
		char *d = strdup(outdir);

		if (!d || make_out_dir(d) != 0) {
			if (!d)
				fprintf(stderr, "station profile render: out of memory\n");
			free(d);
			goto out;
		}
		free(d);
		outfd = open(outdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (outfd < 0) {
			fprintf(stderr, "station profile render: cannot open %s: %s\n", outdir,
				strerror(errno));
			goto out;
		}
	}
	for (size_t i = 0; i < r->n; i++) {
		const struct st_render_file *f = &r->files[i];

		if (outdir) {
			if (write_one(outfd, outdir, f) != 0)
				goto out;
			continue;
		}
		printf("%s==> %s (mode %04o, %zu bytes) <==\n", i ? "\n" : "", f->path, f->mode,
		       f->len);
		fwrite(f->data, 1, f->len, stdout);
		if (f->len && f->data[f->len - 1] != '\n')
			printf("\n(no newline at end of file)\n");
	}
	if (!pem[0])
		fprintf(stderr, "station profile render: no --cert given: certificates are "
				"PLACEHOLDER blocks\n");
	status = fflush(stdout) == 0 ? 0 : 1;
out:
	if (outfd >= 0)
		close(outfd);
	st_render_free(r);
	st_profile_free(p);
	st_sota_overrides_clear(&ov);
	for (int i = 0; i < 3; i++)
		free(pem[i]);
	return status;
}

int st_cmd_profile(int argc, char **argv)
{
	if (argc < 2) {
		profile_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		profile_usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "check") == 0)
		return cmd_check(argc - 1, argv + 1);
	if (strcmp(argv[1], "render") == 0)
		return cmd_render(argc - 1, argv + 1);
	fprintf(stderr, "station profile: unknown subcommand '%s'; known: check, render\n",
		argv[1]);
	return 2;
}
