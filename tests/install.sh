#!/bin/sh
# make install into a temporary DESTDIR, then check what it put there: the
# binary runs and takes the installed configuration, the man page lints
# clean and renders, the systemd unit verifies. usage: tests/install.sh [BUILD]
set -u
build=${1:-build}
dest=$(mktemp -d /tmp/regtest-install.XXXXXX)
fail=0
bad() { echo "install: FAIL: $*"; fail=1; }
trap 'rm -rf "$dest"' EXIT

make -s install BUILD="$build" DESTDIR="$dest" PREFIX=/usr >"$dest.log" 2>&1 || {
    cat "$dest.log"; rm -f "$dest.log"; echo "install: FAIL: make install"; exit 1; }
rm -f "$dest.log"

for f in usr/bin/registry usr/share/man/man8/registry.8 usr/share/doc/registry/registry.conf.sample \
         etc/registry/registry.conf usr/lib/systemd/system/registry.service; do
    [ -f "$dest/$f" ] || bad "$f not installed"
done
[ -x "$dest/usr/bin/registry" ] || bad "usr/bin/registry is not executable"
"$dest/usr/bin/registry" version >/dev/null || bad "the installed binary does not run"

# The installed configuration loads, and keeps its data where the unit lets it write.
out=$("$dest/usr/bin/registry" check-config "$dest/etc/registry/registry.conf" 2>&1) ||
    bad "installed registry.conf does not load: $out"
echo "$out" | grep -qx 'root = /var/lib/registry' || bad "installed registry.conf: root is not /var/lib/registry"

# A second install keeps an edited configuration.
echo '; edited' >>"$dest/etc/registry/registry.conf"
make -s install BUILD="$build" DESTDIR="$dest" PREFIX=/usr >/dev/null 2>&1 || bad "second make install"
grep -q '^; edited' "$dest/etc/registry/registry.conf" || bad "make install overwrote registry.conf"

# The man page: no mandoc warnings, and man renders it.
if command -v mandoc >/dev/null; then
    mandoc -T lint -W warning "$dest/usr/share/man/man8/registry.8" || bad "mandoc -T lint registry.8"
else
    bad "mandoc is missing (make deps-test installs it)"
fi
MANWIDTH=80 man -l "$dest/usr/share/man/man8/registry.8" 2>/dev/null | grep -q 'check-config' ||
    bad "man -l registry.8 does not render the commands"

# The unit: paths filled in, hardened, reload by SIGHUP; systemd-analyze verify
# on a copy pointing at the installed binary (it checks that ExecStart exists)
# with the installed man page on MANPATH (it checks Documentation=).
unit="$dest/usr/lib/systemd/system/registry.service"
grep -q '^ExecStart=/usr/bin/registry serve --config /etc/registry/registry.conf$' "$unit" ||
    bad "ExecStart is not the installed binary and configuration"
grep -q '@[A-Z]*@' "$unit" && bad "placeholders left in the unit"
for k in 'DynamicUser=yes' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' \
         'PrivateTmp=yes' 'StateDirectory=registry' 'ReadWritePaths=/var/lib/registry' \
         'ExecReload=/bin/kill -HUP $MAINPID'; do
    grep -qxF "$k" "$unit" || bad "the unit lacks $k"
done
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$dest/verify"
    sed "s|/usr/bin/registry|$dest/usr/bin/registry|g" "$unit" >"$dest/verify/registry.service"
    out=$(MANPATH="$dest/usr/share/man" systemd-analyze verify "$dest/verify/registry.service" 2>&1) ||
        bad "systemd-analyze verify: $out"
    [ -z "$out" ] || bad "systemd-analyze verify says: $out"
else
    bad "systemd-analyze is missing (make deps-test installs systemd)"
fi

[ $fail -eq 0 ] && echo "install: ok (binary, man page, registry.conf, systemd unit)"
exit $fail
