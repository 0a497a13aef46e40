/* Subcommands of the station program. Each takes the arguments after its own name
 * (argv[0] is the subcommand name) and returns the process exit status. */
#ifndef ST_COMMANDS_H
#define ST_COMMANDS_H

struct st_command {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
};

/* NULL-terminated table of subcommands, in the order --help lists them. */
extern const struct st_command st_commands[];

int st_cmd_ca(int argc, char **argv);      /* cmd_ca.c */
int st_cmd_sign(int argc, char **argv);    /* cmd_sign.c */
int st_cmd_profile(int argc, char **argv); /* cmd_profile.c */
int st_cmd_ports(int argc, char **argv);   /* cmd_ports.c */
int st_cmd_ledger(int argc, char **argv);  /* cmd_ledger.c */
int st_cmd_serve(int argc, char **argv);   /* cmd_serve.c */
int st_cmd_run(int argc, char **argv);     /* cmd_run.c */
int st_cmd_bench(int argc, char **argv);   /* cmd_bench.c */
int st_cmd_auth(int argc, char **argv);    /* cmd_auth.c */
int st_cmd_report(int argc, char **argv);  /* cmd_report.c */

#endif
