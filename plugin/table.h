/* table.h - text tables aligned the way kubectl aligns them (Go's text/tabwriter): every
 * column but the last padded to its widest cell plus `padding`, at least `min_width`.
 * Pure: rows in, text out. */
#ifndef KN_TABLE_H
#define KN_TABLE_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct kn_table {
    size_t ncols;
    size_t nrows;
    size_t cap;   /* rows allocated */
    char **cells; /* nrows * ncols copies, row by row */
} kn_table;

/* An empty table of `ncols` (>= 1) columns. */
void kn_table_init(kn_table *t, size_t ncols);

/* Appends a row of t->ncols cells, copied (a NULL cell is empty). Returns 0 or -ENOMEM
 * (the table is then unchanged). */
int kn_table_add(kn_table *t, const char *const *cells);

/* Frees every cell and zeroes the table. Accepts NULL. */
void kn_table_free(kn_table *t);

/* Appends the table to `out`, each line starting with `indent` (may be NULL). Widths
 * count UTF-8 characters, not bytes. Control characters in a cell (a newline in an
 * Event message) print as spaces, so that one row stays one line; trailing blanks are
 * not written. kubectl get uses min_width 6 and padding 3, kubectl describe 0 and 2. */
void kn_table_render(const kn_table *t, const char *indent, size_t min_width, size_t padding,
                     ns_buf *out);

/* Characters (UTF-8 code points) in `s`; continuation bytes are not counted. */
size_t kn_text_width(const char *s);

#endif
