#!/bin/sh
# The daemons run as the polymur system user; its home is the units'
# StateDirectory (spool and state file).
set -e
if ! getent passwd polymur >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /var/lib/polymur --shell /usr/sbin/nologin polymur 2>/dev/null ||
        adduser --system --home /var/lib/polymur --no-create-home --group polymur 2>/dev/null || true
fi
