/* Shared by the integration tests: where the real servers are. */
#ifndef SB_TEST_ENV_H
#define SB_TEST_ENV_H
#include <libpq-fe.h>
#include <stdlib.h>

#include "sb/config.h"

static inline const char *test_db_url(void)
{
    return sb_cfg_str("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres");
}

static inline const char *test_brokers(void)
{
    return sb_cfg_str("KAFKA_BROKERS", "127.0.0.1:9092");
}

/* Drops and recreates database `name` so every run starts from nothing. */
static inline int test_fresh_db(const char *name)
{
    const char *keys[] = {"dbname", NULL};
    const char *vals[] = {test_db_url(), NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        return -1;
    }
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    PQclear(PQexec(c, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
    PQclear(r);
    PQfinish(c);
    return ok;
}

#endif
