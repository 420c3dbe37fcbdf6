/* arena.h - a per-thread bump allocator behind cJSON, for request-scoped JSON work.
 *
 * Answering an AdmissionReview builds and frees a few hundred small cJSON nodes; with
 * malloc that is most of the time spent. Between ns_arena_begin() and ns_arena_end()
 * every cJSON allocation of the calling thread comes from a bump arena and cJSON's
 * frees are no-ops; ns_arena_end() drops it all at once. Outside that window (and on
 * other threads) cJSON uses malloc and free as usual.
 *
 * Rule: nothing cJSON allocated inside the window may be used after ns_arena_end().
 * Copy results out (e.g. into an ns_buf, which uses malloc) before ending.
 */
#ifndef NS_ARENA_H
#define NS_ARENA_H

/* Installs the cJSON hooks. Call once at start-up, before any thread uses cJSON. */
void ns_arena_install(void);

/* Starts this thread's window. Windows do not nest. */
void ns_arena_begin(void);

/* Ends the window and releases everything it allocated. */
void ns_arena_end(void);

#endif
