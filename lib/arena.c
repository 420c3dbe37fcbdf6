/* arena.c - request-scoped bump allocation for cJSON. */
#include "arena.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define BLOCK_SIZE (64 * 1024)
#define ALIGN      16

typedef struct block {
    struct block *next;
    size_t used, size;
    _Alignas(ALIGN) unsigned char data[];
} block;

typedef struct arena {
    bool active;
    block *head; /* the block being filled; older blocks follow */
} arena;

static _Thread_local arena tls_arena;

static bool owns(const arena *a, const void *p)
{
    for (const block *b = a->head; b; b = b->next)
        if ((const unsigned char *)p >= b->data && (const unsigned char *)p < b->data + b->size)
            return true;
    return false;
}

static void *arena_malloc(size_t n)
{
    arena *a = &tls_arena;
    if (!a->active)
        return malloc(n);
    n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    block *b = a->head;
    if (!b || b->used + n > b->size) {
        size_t size = n > BLOCK_SIZE ? n : BLOCK_SIZE;
        b = malloc(sizeof(block) + size);
        if (!b)
            return NULL;
        b->used = 0;
        b->size = size;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static void arena_free(void *p)
{
    arena *a = &tls_arena;
    if (p && a->active && owns(a, p))
        return; /* released with the whole arena */
    free(p);
}

void ns_arena_install(void)
{
    cJSON_Hooks hooks = {.malloc_fn = arena_malloc, .free_fn = arena_free};
    cJSON_InitHooks(&hooks);
}

void ns_arena_begin(void)
{
    tls_arena.active = true;
}

void ns_arena_end(void)
{
    arena *a = &tls_arena;
    a->active = false;
    /* All blocks go: keeping one for the next request would save one malloc but leak
     * it when the thread exits. */
    for (block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}
