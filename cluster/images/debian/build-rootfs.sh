#!/usr/bin/env bash
# Builds the Debian root filesystem every image here starts from, as a tarball for `docker import`.
# Usage: build-rootfs.sh SUITE MIRROR ROOTFS_DIR DEB_CACHE_DIR SOURCES_FILE OUT_TARBALL   (as root)
#
# debootstrap --variant=minbase (essential + apt), then the suite's -updates and -security applied with
# the image's own apt (inside a private mount namespace: /proc is mounted there only and vanishes with
# it), then apt lists, caches, logs and docs dropped. Service start-up is forbidden inside (policy-rc.d)
# both here and in every image built on top.
set -euo pipefail
suite="$1" mirror="$2" rootfs="$3" debs="$4" sources="$5" out="$6"

debootstrap --variant=minbase --cache-dir="$debs" \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg "$suite" "$rootfs" "$mirror"

rm -f "$rootfs/etc/apt/sources.list"
install -m 0644 "$sources" "$rootfs/etc/apt/sources.list.d/debian.sources"
printf '#!/bin/sh\n# No service starts inside an image build.\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
# Images stay small: no recommends, no documentation, no translations (what Debian's own slim images do).
cat >"$rootfs/etc/apt/apt.conf.d/90immune-slim" <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
CONF
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90immune-nodoc" <<'CONF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
CONF

unshare --mount --propagation private -- bash -euo pipefail -c '
    rootfs="$1"
    mount -t proc proc "$rootfs/proc"
    chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -euc "apt-get -qq update && apt-get -y -qq upgrade && apt-get -qq clean"
' _ "$rootfs"

# Files the container runtime provides, and what a build leaves behind.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/tmp/* "$rootfs"/usr/share/doc/*/changelog* "$rootfs"/usr/share/man/*
find "$rootfs/var/log" -type f -delete
# What debootstrap unpacked before the no-doc rules existed; man1 stays (Java's postinst links into it).
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
mkdir -p "$rootfs/usr/share/man/man1"
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/hostname"
rm -f "$rootfs/etc/machine-id" && : >"$rootfs/etc/machine-id"
find "$rootfs/dev" -mindepth 1 -delete
find "$rootfs/proc" "$rootfs/sys" -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null || true
tar --numeric-owner --xattrs -C "$rootfs" -cf "$out" .
