/* fuzz_yaml.c - libFuzzer target: arbitrary bytes as a manifest for `inject -f`
 * (YAML or JSON parsing, injection of every pod found, YAML/JSON emission). */
#include "buf.h"
#include "cli.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static inj_config cfg;
    static int ready;
    if (!ready) {
        inj_config_defaults(&cfg);
        ready = 1;
    }
    ns_buf out, notes;
    ns_buf_init(&out);
    ns_buf_init(&notes);
    ns_err err = {0};
    inj_manifests(&cfg, (const char *)data, size, "default", false, &out, &notes, &err);
    ns_buf_free(&out);
    ns_buf_free(&notes);
    return 0;
}
