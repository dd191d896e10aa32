/* agree.c - the ranks of one job compare their options and outcomes before any work (see
 * agree.h). */
#include "agree.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "kn_common.h"

enum { SLOT_SUB, SLOT_HELP, SLOT_OPT0, NSLOTS = SLOT_OPT0 + CLI_NUM_OPTIONS };
_Static_assert(NSLOTS <= 64, "slots fit one word");

#define TEXT_LEN 1500
#define TAG_TEXT 7301

/* Appends "rank 3" or "ranks 0-1, 5" (the ranks r with pick[r]) to buf. Returns how many. */
static int list_ranks(const unsigned char *pick, int P, char *buf, size_t n)
{
    char body[300] = "";
    int count = 0, cut = 0;
    for (int r = 0; r < P; r++) {
        if (!pick[r]) continue;
        int last = r;
        while (last + 1 < P && pick[last + 1]) last++;
        count += last - r + 1;
        size_t len = strlen(body);
        if (!cut && len + 32 < sizeof body)
            snprintf(body + len, sizeof body - len, r == last ? "%s%d" : "%s%d-%d", len ? ", " : "",
                     r, last);
        else if (!cut)
            cut = 1, snprintf(body + len, sizeof body - len, ", ...");
        r = last;
    }
    size_t len = strlen(buf);
    snprintf(buf + len, n - len, "%s %s", count == 1 ? "rank" : "ranks", body);
    return count;
}

/* Rank `who`'s text arrives at rank 0 (rank 0's own is copied). */
static void fetch_text(int who, const char *mine, char *out, MPI_Comm comm, int rank)
{
    char buf[TEXT_LEN];
    if (who == 0) {
        if (rank == 0) snprintf(out, TEXT_LEN, "%s", mine);
        return;
    }
    if (rank == who) {
        snprintf(buf, sizeof buf, "%s", mine);
        MPICALL(MPI_Send(buf, TEXT_LEN, MPI_CHAR, 0, TAG_TEXT, comm));
    } else if (rank == 0) {
        MPICALL(MPI_Recv(out, TEXT_LEN, MPI_CHAR, who, TAG_TEXT, comm, MPI_STATUS_IGNORE));
        out[TEXT_LEN - 1] = '\0';
    }
}

/* What this rank has for a slot, as a message shows it. */
static void slot_text(const attn_opts *o, int slot, int rc, char *buf, size_t n)
{
    if (slot == SLOT_SUB) {
        snprintf(buf, n, "'attnsim %s'", o->sub);
    } else if (slot == SLOT_HELP) {
        snprintf(buf, n, "%s", rc == 1 ? "--help" : "no --help");
    } else {
        const char *g = o->given[slot - SLOT_OPT0];
        if (!g)
            snprintf(buf, n, "the default");
        else if (!*g)
            snprintf(buf, n, "given");
        else
            snprintf(buf, n, "'%s'", g);
    }
    char *p;
    while ((p = strpbrk(buf, "\n\r\t")) != NULL) *p = ' '; /* one line */
}

int agree_options(const attn_opts *o, int rc, MPI_Comm comm)
{
    int rank, P;
    MPICALL(MPI_Comm_rank(comm, &rank));
    MPICALL(MPI_Comm_size(comm, &P));
    uint64_t mine[NSLOTS + 1];
    mine[SLOT_SUB] = cli_digest(CLI_DIGEST_SEED, o->sub, strlen(o->sub) + 1);
    mine[SLOT_HELP] = rc == 1;
    cli_option_digests(o, mine + SLOT_OPT0);
    mine[NSLOTS] = (uint64_t)rc;
    uint64_t *all = rank == 0 ? kn_xmalloc((size_t)P * sizeof mine, "option digests") : NULL;
    MPICALL(MPI_Gather(mine, NSLOTS + 1, MPI_UINT64_T, all, NSLOTS + 1, MPI_UINT64_T, 0, comm));

    /* rank 0 decides: {status, rank whose text is needed, slot (-1: its error line)} */
    int decision[3] = {0, 0, -1};
    unsigned char *pick = rank == 0 ? kn_xcalloc((size_t)P, 1, "ranks") : NULL;
    if (rank == 0) {
#define AT(r, s) all[(size_t)(r) * (NSLOTS + 1) + (s)]
        int first_bad = -1;
        for (int r = 0; r < P; r++)
            if (AT(r, NSLOTS) == 2) {
                pick[r] = 1;
                if (first_bad < 0) first_bad = r;
            }
        if (first_bad >= 0) {
            decision[0] = 2, decision[1] = first_bad;
        } else {
            for (int s = 0; s < NSLOTS && decision[0] == 0; s++)
                for (int r = 1; r < P; r++)
                    if (AT(r, s) != AT(0, s)) {
                        decision[0] = 2, decision[1] = r, decision[2] = s;
                        break;
                    }
            if (decision[0] == 0) decision[0] = rc == 1 ? 1 : 0;
        }
    }
    MPICALL(MPI_Bcast(decision, 3, MPI_INT, 0, comm));
    cli_defer(0);
    if (decision[0] == 2) {
        int who = decision[1], slot = decision[2];
        char text[TEXT_LEN] = "", own[TEXT_LEN] = ""; /* who's text; this rank's */
        if (slot < 0) {
            fetch_text(who, cli_kept_line(), text, comm, rank);
        } else {
            slot_text(o, slot, rc, own, sizeof own);
            fetch_text(who, own, text, comm, rank);
        }
        if (rank == 0) {
            char line[3 * TEXT_LEN];
            if (slot < 0 && who == 0) {
                snprintf(line, sizeof line, "%s", text);
            } else if (slot < 0) {
                char ranks[400] = "";
                int n = list_ranks(pick, P, ranks, sizeof ranks);
                if (n > 1)
                    snprintf(line, sizeof line, "%s (on rank %d; %s refused their options)", text,
                             who, ranks);
                else
                    snprintf(line, sizeof line, "%s (on rank %d only)", text, who);
            } else { /* the ranks with rank 0's value, and those with the first other value */
                char same[400] = "", other[400] = "", rest[400] = "";
                int others = 0;
                for (int r = 0; r < P; r++) pick[r] = AT(r, slot) == AT(0, slot);
                list_ranks(pick, P, same, sizeof same);
                for (int r = 0; r < P; r++) pick[r] = AT(r, slot) == AT(who, slot);
                list_ranks(pick, P, other, sizeof other);
                for (int r = 0; r < P; r++)
                    others += pick[r] = AT(r, slot) != AT(0, slot) && AT(r, slot) != AT(who, slot);
                if (others) {
                    snprintf(rest, sizeof rest, ", other values on ");
                    list_ranks(pick, P, rest, sizeof rest);
                }
                if (slot == SLOT_SUB)
                    snprintf(line, sizeof line,
                             "attnsim %s: the ranks run different subcommands: %s on %s, %s on "
                             "%s%s; accepted: one subcommand and the same options on every rank",
                             o->sub, own, same, text, other, rest);
                else
                    snprintf(line, sizeof line,
                             "attnsim %s: %s: the ranks were started with different values: %s "
                             "on %s, %s on %s%s; accepted: the same value on every rank (one "
                             "command line for the whole job)",
                             o->sub,
                             slot == SLOT_HELP
                                 ? "--help"
                                 : cli_option_name((opt_id)(slot - SLOT_OPT0 + OPT_ALGO)),
                             own, same, text, other, rest);
            }
            fprintf(stderr, "%s\n", line);
            fflush(stderr);
        }
#undef AT
    }
    free(all);
    free(pick);
    return decision[0];
}

int agree_outcome(const attn_opts *o, int rc, MPI_Comm comm)
{
    (void)o;
    int rank, P;
    MPICALL(MPI_Comm_rank(comm, &rank));
    MPICALL(MPI_Comm_size(comm, &P));
    int *all = rank == 0 ? kn_xmalloc((size_t)P * sizeof(int), "outcomes") : NULL;
    MPICALL(MPI_Gather(&rc, 1, MPI_INT, all, 1, MPI_INT, 0, comm));
    int who = -1;
    unsigned char *pick = rank == 0 ? kn_xcalloc((size_t)P, 1, "ranks") : NULL;
    for (int r = 0; rank == 0 && r < P; r++)
        if (all[r]) {
            pick[r] = 1;
            if (who < 0) who = r;
        }
    MPICALL(MPI_Bcast(&who, 1, MPI_INT, 0, comm));
    cli_defer(0);
    if (who >= 0) {
        char text[TEXT_LEN] = "";
        fetch_text(who, cli_kept_line(), text, comm, rank);
        if (rank == 0) {
            char ranks[400] = "";
            int n = list_ranks(pick, P, ranks, sizeof ranks);
            (void)n;
            if (P > 1)
                fprintf(stderr, "%s (on %s of %d)\n", text, ranks, P);
            else
                fprintf(stderr, "%s\n", text);
            fflush(stderr);
        }
    }
    free(all);
    free(pick);
    return who >= 0 ? 2 : 0;
}
