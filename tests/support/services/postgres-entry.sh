#!/bin/sh
# Entrypoint of the PostgreSQL 15 test image (tests/support/mksvcpkg): runs
# postgres in the foreground as the postgres user, on 127.0.0.1:$PGPORT,
# after an initdb when the data directory (a ctcli data path, so empty at
# the first start) holds no cluster yet.
set -eu
PGPORT=${PGPORT:-15432}
PGDATA=${PGDATA:-/var/lib/postgresql/15/main}
BIN=/usr/lib/postgresql/15/bin
export PGPORT PGDATA

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

# The data path is bound from the host: its owner is whatever the host made,
# so the cluster's directories are given to postgres here, as root.
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres /var/lib/postgresql /var/lib/postgresql/15 "$PGDATA" /run/postgresql
chmod 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "postgres-entry: initdb $PGDATA"
  as_postgres "$BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-instructions
fi
echo "postgres-entry: starting postgres on 127.0.0.1:$PGPORT${SERVICE_MARK:+ ($SERVICE_MARK)}"
exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$BIN/postgres" -D "$PGDATA" \
  -c listen_addresses=127.0.0.1 -c port="$PGPORT" -c unix_socket_directories=/run/postgresql \
  -c logging_collector=off -c shared_buffers=32MB -c max_connections=20
