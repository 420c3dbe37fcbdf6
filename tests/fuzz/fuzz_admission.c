/* fuzz_admission.c - libFuzzer target: arbitrary bytes as an AdmissionReview body.
 * Whatever comes in, inj_review must answer (a body and a status) without crashing,
 * leaking or reading out of bounds. */
#include "admission.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static inj_config cfg;
    static int ready;
    if (!ready) {
        inj_config_defaults(&cfg);
        ready = 1;
    }
    inj_review_reply r;
    if (inj_review(&cfg, (const char *)data, size, &r) == 0) {
        if (!r.body || (r.http_status != 200 && r.http_status != 400 && r.http_status != 413))
            abort();
        free(r.body);
    }
    return 0;
}
