/* canary_machine.c - placeholder; being written. */
#include "canary_machine.h"
