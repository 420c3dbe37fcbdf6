/* canary_checks.c - placeholder; being written. */
#include "canary_checks.h"
