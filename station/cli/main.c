/* station: the provisioning station's command-line entry point. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "heap.h"
#include "log.h"
#include "version.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: station [--version] [--help] [--log-format text|journal|json]\n"
		     "               <command> [<args>]\n\ncommands:\n");
	for (const struct st_command *c = st_commands; c->name; c++)
		fprintf(out, "  %-10s %s\n", c->name, c->summary);
	fprintf(out, "\n'station <command> --help' describes a command.\n\n"
		"--log-format sets the form of log lines on stderr: text (words on a\n"
		"terminal, syslog priority prefixes such as <3> otherwise), journal (the\n"
		"prefixes always) or json (one object per line: priority, level, msg).\n");
}

/* Takes the global options that come before the command out of argv. Returns the index of
 * the command, or -1 after printing what is wrong. */
static int global_options(int argc, char **argv)
{
	const char *value;
	int i = 1, f;

	while (i < argc && strncmp(argv[i], "--log-format", 12) == 0) {
		if (argv[i][12] == '=') {
			value = argv[i] + 13;
			i++;
		} else if (argv[i][12] == 0 && i + 1 < argc) {
			value = argv[i + 1];
			i += 2;
		} else if (argv[i][12] == 0) {
			fprintf(stderr, "station: --log-format needs a value: text, journal or "
					"json\n");
			return -1;
		} else {
			break;
		}
		f = st_log_format_parse(value);
		if (f < 0) {
			fprintf(stderr, "station: --log-format '%s' is unknown; use text, "
					"journal or json\n",
				value);
			return -1;
		}
		st_log_set_format((enum st_log_format)f);
	}
	return i;
}

int main(int argc, char **argv)
{
	int first = global_options(argc, argv);

	if (first < 0)
		return 2;
	st_heap_tune();
	/* From here on argv[1] is the command, whatever global options came before it. */
	argc -= first - 1;
	argv += first - 1;
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("station %s\n", st_version_string());
		return 0;
	}
	for (const struct st_command *c = st_commands; c->name; c++) {
		if (strcmp(argv[1], c->name) == 0)
			return c->run(argc - 1, argv + 1);
	}
	fprintf(stderr, "station: unknown command '%s'; known commands:", argv[1]);
	for (const struct st_command *c = st_commands; c->name; c++)
		fprintf(stderr, " %s", c->name);
	fprintf(stderr, "\n");
	return 2;
}
