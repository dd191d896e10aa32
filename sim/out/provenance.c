/* provenance.c - root and per-run provenance attributes (see provenance.h). */
#include "provenance.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "h5out.h"
#include "kn_common.h"

void prov_utc_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* argv joined with spaces; an argument with characters the shell treats specially is put in
 * single quotes, so the line can be pasted back into a shell. */
static char *quote_command_line(int argc, char **argv)
{
    size_t len = 1;
    for (int i = 0; i < argc; i++) len += 4 * strlen(argv[i]) + 3;
    char *s = kn_xmalloc(len, "command line"), *p = s;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int plain = *a != '\0';
        for (const char *c = a; *c; c++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=.,/:+@%",
                        *c))
                plain = 0;
        if (i) *p++ = ' ';
        if (plain) {
            p += sprintf(p, "%s", a);
            continue;
        }
        *p++ = '\'';
        for (const char *c = a; *c; c++) {
            if (*c == '\'')
                p += sprintf(p, "'\\''");
            else
                *p++ = *c;
        }
        *p++ = '\'';
    }
    *p = '\0';
    return s;
}

void prov_init(attn_provenance *p, int argc, char **argv)
{
    memset(p, 0, sizeof *p);
    snprintf(p->software_version, sizeof p->software_version, "%s", attnsim_version);
    snprintf(p->git_commit, sizeof p->git_commit, "%s", attnsim_git_commit);
    prov_utc_now(p->created_utc, sizeof p->created_utc);
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0;
    MPI_Get_library_version(mpi, &len);
    mpi[strcspn(mpi, "\n")] = '\0';
    snprintf(p->mpi_library_version, sizeof p->mpi_library_version, "%s", mpi);
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    snprintf(p->hdf5_version, sizeof p->hdf5_version, "%u.%u.%u", maj, min, rel);
    p->slurm_job_id = getenv("SLURM_JOB_ID");
    p->slurm_job_nodelist = getenv("SLURM_JOB_NODELIST");
    p->command_line = quote_command_line(argc, argv);
    char host[256] = "unknown";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    char **names = kn_xmalloc(sizeof(char *), "host names");
    names[0] = strdup(host);
    if (!names[0]) kn_fatal("strdup", "out of memory");
    p->host_names = names;
    p->num_hosts = 1;
}

void prov_set_hosts(attn_provenance *p, char **names, size_t n)
{
    for (size_t i = 0; i < p->num_hosts; i++) free(p->host_names[i]);
    free(p->host_names);
    p->host_names = names;
    p->num_hosts = n;
}

void prov_free(attn_provenance *p)
{
    prov_set_hosts(p, NULL, 0);
    free(p->command_line);
    p->command_line = NULL;
}

/* (p outlives the writer's records: the strings are kept, not copied) */
static void write_common(h5node *loc, const attn_provenance *p)
{
    h5_attr_str_kept(loc, "software_version", p->software_version);
    h5_attr_str_kept(loc, "git_commit", p->git_commit);
    h5_attr_str_kept(loc, "command_line", p->command_line);
    h5_attr_strs_kept(loc, "host_names", (const char *const *)p->host_names, p->num_hosts);
    if (p->slurm_job_id) h5_attr_str_kept(loc, "slurm_job_id", p->slurm_job_id);
    if (p->slurm_job_nodelist) h5_attr_str_kept(loc, "slurm_job_nodelist", p->slurm_job_nodelist);
}

void prov_write_root(h5node *file, const attn_provenance *p)
{
    h5_attr_str(file, "schema", H5OUT_SCHEMA);
    h5_attr_str(file, "creation_time", p->created_utc);
    h5_attr_str(file, "mpi_library_version", p->mpi_library_version);
    h5_attr_str(file, "hdf5_version", p->hdf5_version);
    write_common(file, p);
}

void prov_write_run(h5node *group, const attn_provenance *p)
{
    char now[32];
    prov_utc_now(now, sizeof now);
    h5_attr_str(group, "time_utc", now);
    write_common(group, p);
}
