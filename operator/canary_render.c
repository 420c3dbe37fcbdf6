/* canary_render.c - placeholder; being written. */
#include "canary_render.h"
