#!/bin/sh
# Entrypoint of the nginx test image (tests/support/mksvcpkg): runs nginx in
# the foreground as www-data (master too), listening on
# 127.0.0.1:$NGINX_PORT, serving /srv/www (a ctcli data path; an index.html
# is written when it is missing).  The port goes into a file the config
# (/etc/nginx/nginx.conf, a ctcli config path) includes, so the config is
# the same for every port.
set -eu
NGINX_PORT=${NGINX_PORT:-18080}
mkdir -p /srv/www /run/nginx /tmp/nginx
if [ ! -e /srv/www/index.html ]; then
  echo "hello from nginx${SERVICE_MARK:+ $SERVICE_MARK}" >/srv/www/index.html
  chmod 0644 /srv/www/index.html
fi
echo "listen 127.0.0.1:$NGINX_PORT;" >/run/nginx/listen.conf
chown www-data:www-data /run/nginx /tmp/nginx
echo "nginx-entry: starting nginx on 127.0.0.1:$NGINX_PORT${SERVICE_MARK:+ ($SERVICE_MARK)}"
exec setpriv --reuid=www-data --regid=www-data --init-groups -- \
  nginx -e stderr -c /etc/nginx/nginx.conf
