/* parse.h - pure parsing for nutshell-bench-injector: strict numbers, the AdmissionReview
 * text (compacting, request.uid, "allowed": true) and HTTP/1.x responses.
 *
 * No I/O and no allocation: every function works on the bytes it is handed, so the
 * bench's --self-test exercises all of it. Errors follow the project's convention:
 * 0 or a negative errno, with a sentence for a person in the caller's buffer.
 */
#ifndef NBI_PARSE_H
#define NBI_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NBI_MAX_HEADER   (64u << 10) /* response head */
#define NBI_MAX_RESPONSE (4u << 20)  /* response body */

/* Writes a printf-style sentence into err[errlen] (does nothing if err is NULL). */
void nbi_errorf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Whole-string unsigned decimal in [min, max] (no sign, no spaces, no trailing bytes).
 * Returns 0 and sets *out, or -EINVAL / -ERANGE and leaves *out alone. */
int nbi_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Whole-string finite decimal number in [min, max], same rules. */
int nbi_parse_double(const char *s, double min, double max, double *out);

/* Removes whitespace outside strings from JSON text in place; returns the new length. */
size_t nbi_json_minify(char *s, size_t len);

/* Finds the value of request.uid in a compact AdmissionReview. Returns 0 with the offset
 * and length of the value (between its quotes), or -ENOENT. */
int nbi_review_find_uid(const char *body, size_t len, size_t *off, size_t *vlen);

/* True if the JSON text has a key "allowed" whose value is true (any whitespace). */
bool nbi_body_allows(const char *body, size_t len);

/* Copies at most outlen - 1 bytes of s into out for a one-line message, with bytes that
 * are not printable ASCII shown as '.'; out is always terminated. outlen must be > 0. */
void nbi_snippet(const char *s, size_t len, char *out, size_t outlen);

struct nbi_http_resp {
    int status;
    bool keep_alive; /* false after "Connection: close" or an HTTP/1.0 answer */
    char *body;      /* inside the caller's buffer; a chunked body is decoded in place */
    size_t body_len;
    size_t total; /* bytes of the whole response as received (head + body) */
};

/* Parses one HTTP/1.x response at the start of buf[0..len). Content-Length and chunked
 * bodies are supported; a body delimited by the connection's end is refused.
 * Returns 1 when the response is complete (fills *r; since a chunked body is decoded in
 * place, do not call it again on the same bytes), 0 if more bytes are needed, or
 * -EPROTO (malformed) / -EMSGSIZE (over the limits above) with a sentence in err. */
int nbi_http_parse_response(char *buf, size_t len, struct nbi_http_resp *r, char *err,
                            size_t errlen);

#endif
