#!/usr/bin/env bash
# Runs once, when the postgres container initialises an empty data volume: one role and one
# database per service (Keycloak, gateway, orchestrator), each role owning only its database.
# Passwords come from the container's environment (compose reads them from .env).
set -euo pipefail

create() {
  local name="$1" password="$2"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=name="$name" --set=password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
}

create keycloak "${MRO_PG_KEYCLOAK_PASSWORD:?}"
create gateway "${MRO_PG_GATEWAY_PASSWORD:?}"
create orchestrator "${MRO_PG_ORCHESTRATOR_PASSWORD:?}"
