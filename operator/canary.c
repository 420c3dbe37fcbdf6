/* canary.c - placeholder; being written. */
#include "canary.h"
