/* validate.h - checks for the values users put in annotations and config: resource
 * quantities, port lists, CIDR lists, log levels, images. Pure functions. */
#ifndef INJ_VALIDATE_H
#define INJ_VALIDATE_H

#include "err.h"

#include <stdbool.h>

/* Parses a Kubernetes resource quantity ("100m", "1.5", "128Mi", "1G", "2e3") into its
 * value in base units (cores or bytes). Returns 0 or -EINVAL. */
int inj_quantity_parse(const char *s, double *out);

/* A comma list of ports ("15020, 8080"), or "*" when `allow_star`, or "" (empty list).
 * On error err names the offending item. Returns 0 or -EINVAL. */
int inj_port_list_check(const char *s, bool allow_star, ns_err *err);

/* A comma list of CIDRs or addresses, or "*" when `allow_star`, or "". */
int inj_cidr_list_check(const char *s, bool allow_star, ns_err *err);

/* One of debug, info, warn, error. */
bool inj_log_level_valid(const char *s);

/* A plausible container image reference: non-empty, printable, no spaces, < 256 bytes. */
bool inj_image_valid(const char *s);

/* "true" or "false" exactly, as Kubernetes annotations are strings. Returns 0 or -EINVAL. */
int inj_bool_parse(const char *s, bool *out);

#endif
