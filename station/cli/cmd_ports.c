/* `station ports`: lists the serial ports of this machine with what identifies a board
 * fixture across reboots and re-plugs (USB vid:pid and serial number, /dev/serial/by-path and
 * by-id names), so that a station configuration can name ports by something stable. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "err.h"
#include "port.h"

static void ports_usage(FILE *out)
{
	fprintf(out,
		"usage: station ports [--json]\n"
		"\n"
		"Lists serial ports (libserialport) with transport, USB vid:pid, manufacturer,\n"
		"product and serial number, and their /dev/serial/by-path and by-id names.\n"
		"Prefer the by-path name in a station configuration: it names the fixture's USB\n"
		"socket and survives re-plugging and reboots. Simulated boards on PTYs are not\n"
		"listed; their map file names them.\n"
		"\n"
		"  --json   one JSON array of objects on stdout\n");
}

static void print_text(const struct drv_port_info *list, size_t n)
{
	size_t i;

	if (n == 0) {
		fprintf(stderr, "station ports: no serial ports found\n");
		return;
	}
	for (i = 0; i < n; i++) {
		const struct drv_port_info *p = &list[i];

		printf("%s  %s", p->path, p->transport);
		if (p->usb_vid >= 0)
			printf(" %04x:%04x", (unsigned)p->usb_vid, (unsigned)p->usb_pid);
		if (p->serial)
			printf(" serial=%s", p->serial);
		if (p->description[0])
			printf(" \"%s\"", p->description);
		printf("\n");
		if (p->manufacturer || p->product)
			printf("    usb:     %s%s%s (bus %d address %d)\n",
			       p->manufacturer ? p->manufacturer : "",
			       p->manufacturer && p->product ? " " : "",
			       p->product ? p->product : "", p->usb_bus, p->usb_address);
		if (p->by_path)
			printf("    by-path: %s\n", p->by_path);
		if (p->by_id)
			printf("    by-id:   %s\n", p->by_id);
	}
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static int print_json(const struct drv_port_info *list, size_t n)
{
	json_t *arr = json_array();
	size_t i;
	int rc = -1;

	if (!arr)
		return -1;
	for (i = 0; i < n; i++) {
		const struct drv_port_info *p = &list[i];
		json_t *o = json_object();

		if (!o || json_array_append_new(arr, o) != 0)
			goto out;
		json_object_set_new(o, "path", json_string(p->path));
		json_object_set_new(o, "transport", json_string(p->transport));
		json_object_set_new(o, "description", json_string(p->description));
		if (p->usb_vid >= 0) {
			json_object_set_new(o, "usb_vid", json_integer(p->usb_vid));
			json_object_set_new(o, "usb_pid", json_integer(p->usb_pid));
			json_object_set_new(o, "usb_bus", json_integer(p->usb_bus));
			json_object_set_new(o, "usb_address", json_integer(p->usb_address));
		}
		json_object_set_new(o, "manufacturer", str_or_null(p->manufacturer));
		json_object_set_new(o, "product", str_or_null(p->product));
		json_object_set_new(o, "serial", str_or_null(p->serial));
		json_object_set_new(o, "by_path", str_or_null(p->by_path));
		json_object_set_new(o, "by_id", str_or_null(p->by_id));
	}
	if (json_dumpf(arr, stdout, JSON_INDENT(2)) != 0)
		goto out;
	printf("\n");
	rc = 0;
out:
	json_decref(arr);
	return rc;
}

int st_cmd_ports(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct drv_port_info *list = NULL;
	char err[256];
	size_t n = 0;
	int json = 0, c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = 1;
			break;
		case 'h':
			ports_usage(stdout);
			return 0;
		default:
			ports_usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "station ports: unexpected argument '%s'\n", argv[optind]);
		ports_usage(stderr);
		return 2;
	}
	rc = drv_port_list(&list, &n, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "station ports: %s (%s)\n", err, st_errname(rc));
		return 1;
	}
	if (json)
		rc = print_json(list, n);
	else
		print_text(list, n);
	drv_port_list_free(list, n);
	if (rc < 0) {
		fprintf(stderr, "station ports: cannot write JSON\n");
		return 1;
	}
	return 0;
}
