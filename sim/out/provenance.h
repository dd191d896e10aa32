/* provenance.h - where and how a file or a run was made: the root attributes of schema
 * attnsim/1 and the per-run provenance attributes. */
#ifndef ATTNSIM_PROVENANCE_H
#define ATTNSIM_PROVENANCE_H

#include <stddef.h>

#include "h5rec.h"

typedef struct {
    char software_version[32];
    char git_commit[64];
    char created_utc[32]; /* ISO 8601, UTC */
    char mpi_library_version[256];
    char hdf5_version[32];
    const char *slurm_job_id; /* NULL when not under Slurm */
    const char *slurm_job_nodelist;
    char *command_line; /* argv, shell-quoted */
    char **host_names;  /* one per rank (rank order); one entry for a single process */
    size_t num_hosts;
} attn_provenance;

extern const char attnsim_version[];
extern const char attnsim_git_commit[];

/* Collects everything available without MPI running (MPI_Get_library_version is allowed before
 * MPI_Init); host_names holds this host. */
void prov_init(attn_provenance *p, int argc, char **argv);
/* Replaces the host list (the MPI executor gathers one name per rank). */
void prov_set_hosts(attn_provenance *p, char **names, size_t n);
void prov_free(attn_provenance *p);

/* Root attributes of a new file. */
void prov_write_root(h5node *root, const attn_provenance *p);
/* Per-run attributes: command line, time, version, commit, hosts, Slurm job (the record keeps
 * p's strings: p must stay unchanged until the writer is closed). */
void prov_write_run(h5node *run, const attn_provenance *p);

/* Current UTC time, ISO 8601 ("2026-11-26T08:47:22Z"). */
void prov_utc_now(char *buf, size_t n);

#endif
