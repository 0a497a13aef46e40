/* station: the provisioning station's command-line entry point. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "version.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: station [--version] [--help] <command> [<args>]\n\ncommands:\n");
	for (const struct st_command *c = st_commands; c->name; c++)
		fprintf(out, "  %-10s %s\n", c->name, c->summary);
	fprintf(out, "\n'station <command> --help' describes a command.\n");
}

int main(int argc, char **argv)
{
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
