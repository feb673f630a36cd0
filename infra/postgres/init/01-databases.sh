#!/bin/sh
# First start of the PostgreSQL container only (docker-entrypoint-initdb.d): one database and
# one login role per service, each role owning only its own database.
# Environment: AUTH_DB_PASSWORD, ANALYSIS_DB_PASSWORD (required); AUTH_DB_NAME and
# ANALYSIS_DB_NAME (default auth / analysis; the role has the database's name).
set -eu

create() {
    name="$1"
    password="$2"
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
        -v name="$name" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
}

create "${AUTH_DB_NAME:-auth}" "${AUTH_DB_PASSWORD:?AUTH_DB_PASSWORD is not set}"
create "${ANALYSIS_DB_NAME:-analysis}" "${ANALYSIS_DB_PASSWORD:?ANALYSIS_DB_PASSWORD is not set}"
