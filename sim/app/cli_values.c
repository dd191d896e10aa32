/* cli_values.c - the values of the command line (see cli.h): counts with k/M/G suffixes,
 * comma-separated lists, choices from a table, grids. Every error says what is wrong and what
 * is accepted; the --lock-timeout default. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "h5out.h"

#define COUNT_FORMS                                                                                \
    "a positive integer with an optional k, M or G suffix (powers of two: 4k = 4096)"

static int too_large(const char *text, uint64_t max, const char *forms, char *err, size_t errlen)
{
    snprintf(err, errlen, "'%s' is too large; accepted: %s, at most %llu", text, forms,
             (unsigned long long)max);
    return -1;
}

static int parse_number(const char *text, uint64_t max, int allow_zero, uint64_t *out, char *err,
                        size_t errlen)
{
    const char *forms =
        allow_zero ? "a non-negative integer with an optional k, M or G suffix" : COUNT_FORMS;
    if (*text == '\0') return snprintf(err, errlen, "the value is empty; accepted: %s", forms), -1;
    if (*text == '-')
        return snprintf(err, errlen, "'%s' is negative; accepted: %s", text, forms), -1;
    if (*text < '0' || *text > '9')
        return snprintf(err, errlen, "'%s' is not a number; accepted: %s", text, forms), -1;
    uint64_t v = 0;
    const char *p = text;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10) return too_large(text, max, forms, err, errlen);
        v = v * 10 + digit;
    }
    unsigned shift = 0;
    if (*p == 'k' || *p == 'K')
        shift = 10, p++;
    else if (*p == 'M')
        shift = 20, p++;
    else if (*p == 'G')
        shift = 30, p++;
    if (*p == '.' || *p == ',')
        return snprintf(err, errlen, "'%s' is not an integer; accepted: %s", text, forms), -1;
    if (*p != '\0')
        return snprintf(err, errlen, "'%s' has a bad suffix '%s'; accepted: %s", text, p, forms),
               -1;
    if (shift && v > (UINT64_MAX >> shift)) return too_large(text, max, forms, err, errlen);
    v <<= shift;
    if (v == 0 && !allow_zero)
        return snprintf(err, errlen, "'%s' is zero; accepted: %s", text, forms), -1;
    if (v > max) return too_large(text, max, forms, err, errlen);
    *out = v;
    return 0;
}

int cli_parse_count(const char *text, uint64_t max, uint64_t *out, char *err, size_t errlen)
{
    return parse_number(text, max, 0, out, err, errlen);
}

int cli_parse_uint(const char *text, uint64_t max, uint64_t *out, char *err, size_t errlen)
{
    return parse_number(text, max, 1, out, err, errlen);
}

/* Calls item(text of one item) for each comma-separated item; rejects empty items. */
typedef int (*item_fn)(const char *item, void *ctx, char *err, size_t errlen);

static int for_each_item(const char *text, item_fn fn, void *ctx, char *err, size_t errlen)
{
    char item[128];
    const char *p = text;
    if (*text == '\0') return snprintf(err, errlen, "the list is empty"), -1;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0)
            return snprintf(err, errlen,
                            "'%s' has an empty item; accepted: items separated by single "
                            "commas, e.g. 1k,2k",
                            text),
                   -1;
        if (len >= sizeof item)
            return snprintf(err, errlen, "an item of '%.40s...' is too long", text), -1;
        memcpy(item, p, len);
        item[len] = '\0';
        if (fn(item, ctx, err, errlen)) return -1;
        if (!comma) return 0;
        p = comma + 1;
    }
}

typedef struct {
    cli_u64_list *list;
    uint64_t max;
} count_ctx;

static int count_item(const char *item, void *ctx, char *err, size_t errlen)
{
    count_ctx *c = ctx;
    if (c->list->n == CLI_MAX_LIST)
        return snprintf(err, errlen, "more than %d values", CLI_MAX_LIST), -1;
    return cli_parse_count(item, c->max, &c->list->v[c->list->n++], err, errlen);
}

int cli_parse_count_list(const char *text, uint64_t max, cli_u64_list *out, char *err,
                         size_t errlen)
{
    count_ctx c = {out, max};
    out->n = 0;
    return for_each_item(text, count_item, &c, err, errlen);
}

void cli_join_names(const char *const *names, char *buf, size_t n)
{
    buf[0] = '\0';
    for (size_t i = 0; names[i]; i++) {
        strncat(buf, i ? ", " : "", n - strlen(buf) - 1);
        strncat(buf, names[i], n - strlen(buf) - 1);
    }
}

int cli_parse_choice(const char *text, const char *const *names, int *out, char *err, size_t errlen)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return 0;
        }
    char all[256];
    cli_join_names(names, all, sizeof all);
    /* a long value is cut to fit the message buffer; the message stays one line */
    if (snprintf(err, errlen, "unknown value '%s'; accepted: %s", text, all) >= (int)errlen)
        err[errlen - 1] = '\0';
    return -1;
}

typedef struct {
    const char *const *names;
    unsigned *mask;
} choice_ctx;

static int choice_item(const char *item, void *ctx, char *err, size_t errlen)
{
    choice_ctx *c = ctx;
    int i;
    if (cli_parse_choice(item, c->names, &i, err, errlen)) return -1;
    *c->mask |= 1u << i;
    return 0;
}

int cli_parse_choice_set(const char *text, const char *const *names, unsigned *mask, char *err,
                         size_t errlen)
{
    choice_ctx c = {names, mask};
    *mask = 0;
    if (for_each_item(text, choice_item, &c, err, errlen) == 0) return 0;
    if (strncmp(err, "unknown", 7) == 0) return -1;
    char all[256];
    cli_join_names(names, all, sizeof all);
    size_t len = strlen(err);
    snprintf(err + len, errlen - len, "; accepted: a comma-separated list of %s", all);
    return -1;
}

int cli_parse_grid(const char *text, cli_grid *out, char *err, size_t errlen)
{
    static const char forms[] = "RxC with positive integers R and C (e.g. 4x4), or auto";
    if (strcmp(text, "auto") == 0) {
        out->is_auto = 1;
        out->rows = out->cols = 0;
        return 0;
    }
    const char *x = strchr(text, 'x');
    if (!x || x == text || x[1] == '\0' || strchr(x + 1, 'x'))
        return snprintf(err, errlen, "'%s' is not a grid; accepted: %s", text, forms), -1;
    char left[64];
    size_t len = (size_t)(x - text);
    if (len >= sizeof left)
        return snprintf(err, errlen, "'%s' is not a grid; accepted: %s", text, forms), -1;
    memcpy(left, text, len);
    left[len] = '\0';
    char sub[200];
    if (cli_parse_count(left, 1u << 20, &out->rows, sub, sizeof sub) ||
        cli_parse_count(x + 1, 1u << 20, &out->cols, sub, sizeof sub))
        return snprintf(err, errlen, "'%s' is not a grid (%s); accepted: %s", text, sub, forms), -1;
    out->is_auto = 0;
    return 0;
}

int cli_parse_seconds(const char *text, double max, double *out, char *err, size_t errlen)
{
    const char *forms = "a non-negative number of seconds (e.g. 0, 30, 2.5)";
    if (*text == '\0') return snprintf(err, errlen, "the value is empty; accepted: %s", forms), -1;
    if (strspn(text, "0123456789.") != strlen(text) || strchr(text, '.') != strrchr(text, '.') ||
        !strcmp(text, "."))
        return snprintf(err, errlen, "'%s' is not a number of seconds; accepted: %s", text, forms),
               -1;
    double v = strtod(text, NULL);
    if (v > max)
        return snprintf(err, errlen, "'%s' is too large; accepted: %s, at most %g", text, forms,
                        max),
               -1;
    *out = v;
    return 0;
}

double cli_lock_timeout(const attn_opts *o)
{
    return o->lock_timeout_set ? o->lock_timeout : H5OUT_LOCK_TIMEOUT_DEFAULT;
}
