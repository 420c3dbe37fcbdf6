/* table.c - kubectl-style column alignment. */
#include "table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void kn_table_init(kn_table *t, size_t ncols)
{
    *t = (kn_table){.ncols = ncols ? ncols : 1};
}

int kn_table_add(kn_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        char **grown = realloc(t->cells, cap * t->ncols * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        t->cells = grown;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        row[i] = strdup(cells[i] ? cells[i] : "");
        if (!row[i]) {
            while (i-- > 0)
                free(row[i]);
            return -ENOMEM;
        }
    }
    t->nrows++;
    return 0;
}

void kn_table_free(kn_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    *t = (kn_table){0};
}

size_t kn_text_width(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/* Appends `s` with control characters as spaces. */
static void put_cell(ns_buf *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        ns_buf_putc(out, c < 0x20 || c == 0x7f ? ' ' : (char)c);
    }
}

void kn_table_render(const kn_table *t, const char *indent, size_t min_width, size_t padding,
                     ns_buf *out)
{
    if (t->nrows == 0)
        return;
    size_t *width = calloc(t->ncols, sizeof(*width));
    if (!width) {
        out->failed = true;
        return;
    }
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c + 1 < t->ncols; c++) {
            size_t w = kn_text_width(t->cells[r * t->ncols + c]) + padding;
            if (w < min_width)
                w = min_width;
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        size_t line_start = out->len;
        if (indent)
            ns_buf_puts(out, indent);
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            put_cell(out, cell);
            if (c + 1 < t->ncols)
                for (size_t w = kn_text_width(cell); w < width[c]; w++)
                    ns_buf_putc(out, ' ');
        }
        /* An empty last cell (or a blank message) would leave padding at the end. */
        while (out->len > line_start && out->data[out->len - 1] == ' ')
            out->len--;
        if (out->data)
            out->data[out->len] = '\0';
        ns_buf_putc(out, '\n');
    }
    free(width);
}
