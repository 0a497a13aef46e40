#include "commands.h"

#include <stddef.h>

const struct st_command st_commands[] = {
	{ "ca", "create or import the station's certificate authority", st_cmd_ca },
	{ "sign", "sign one CSR and print the certificate", st_cmd_sign },
	{ "ports", "list serial ports with their USB ids and stable names", st_cmd_ports },
	{ "profile", "check per-SKU profiles and render their files (dry run)", st_cmd_profile },
	{ "run", "provision the boards in every slot at once (the station's main job)", st_cmd_run },
	{ "ledger", "list, show, export and check the certificate ledger", st_cmd_ledger },
	{ "serve", "serve the lmp-device-register registration API over HTTP", st_cmd_serve },
	{ "auth", "issue, check and count production authorizations", st_cmd_auth },
	{ "report", "production records: yield, failures, signed job-end reports", st_cmd_report },
	{ "bench", "benchmark the station against simulated boards", st_cmd_bench },
	{ NULL, NULL, NULL },
};
