/* admission.h - AdmissionReview in, AdmissionReview out: the webhook's protocol layer,
 * pure and synchronous so that it is unit-tested and fuzzed without a server. */
#ifndef INJ_ADMISSION_H
#define INJ_ADMISSION_H

#include "config.h"

#include <stddef.h>

/* Request bodies above this are refused with 413 before parsing. The API server caps
 * objects at about 1.5 MiB (etcd's request limit) and a review may carry the object
 * twice (object and oldObject), so 3 MiB leaves room for any pod it can send. */
#define INJ_MAX_BODY (3u * 1024u * 1024u)

typedef enum inj_review_result {
    INJ_REVIEW_INJECTED,
    INJ_REVIEW_SKIPPED,
    INJ_REVIEW_REJECTED, /* answered allowed:false */
    INJ_REVIEW_INVALID,  /* not a usable AdmissionReview: HTTP 400 */
} inj_review_result;

typedef struct inj_review_reply {
    int http_status; /* 200, or 400 for a request we cannot read */
    char *body;      /* malloc'd AdmissionReview JSON; caller frees */
    size_t body_len;
    inj_review_result result;
    char message[512]; /* for logs: why skipped/rejected/invalid; "" when injected */
    char uid[128];     /* the request uid, "" if none */
    char pod[256];     /* namespace/name (or generateName) for logs */
} inj_review_reply;

/* Handles one review. Never fails for bad input: every problem becomes an answer.
 * Returns 0, or -ENOMEM (then reply->body is NULL and the caller answers 500). */
int inj_review(const inj_config *cfg, const char *body, size_t len, inj_review_reply *reply);

/* Returns the static lowercase name of a result, for metric labels. */
const char *inj_review_result_name(inj_review_result r);

#endif
