#!/bin/sh
# Entrypoint of the Redis test image (tests/support/mksvcpkg): runs
# redis-server in the foreground as the redis user on 127.0.0.1:$REDIS_PORT,
# its data in /var/lib/redis (a ctcli data path).  Every write goes to the
# append-only file at once, so a backup of the data path holds every key
# written before it.
set -eu
REDIS_PORT=${REDIS_PORT:-16379}
mkdir -p /var/lib/redis
chown redis:redis /var/lib/redis
chmod 0750 /var/lib/redis
echo "redis-entry: starting redis on 127.0.0.1:$REDIS_PORT${SERVICE_MARK:+ ($SERVICE_MARK)}"
exec setpriv --reuid=redis --regid=redis --init-groups -- redis-server \
  --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes --dir /var/lib/redis \
  --daemonize no --supervised no --logfile "" --pidfile "" \
  --appendonly yes --appendfsync always --save ""
