#!/usr/bin/env bash
# Build the root filesystem tarball for the `omoi-test:latest` Docker image,
# using nothing but the Debian apt mirror (no registry access).
#
#   scripts/services.d/build-rootfs.sh OUTPUT.tar.gz
#
# Preferred: `debootstrap --variant=minbase --include=git,python3,...` against
# the Debian mirror apt already uses (~40 s, ~280 MB unpacked).
# Fallback (debootstrap unavailable / mirror unreachable): a busybox-static
# rootfs plus the host's own git and python3 with their shared libraries.
#
# Either way the rootfs gets a user `omoi` (uid/gid 1000, home /home/omoi), a
# /workspace dir owned by it, and an /etc/gitconfig that trusts every directory
# (tests bind-mount host checkouts owned by another uid) and sets a default
# committer identity.
#
# Env: OMOI_ROOTFS_MIRROR (default: the Debian mirror from apt's sources),
#      OMOI_ROOTFS_SUITE (default: the host's VERSION_CODENAME),
#      OMOI_ROOTFS_METHOD=debootstrap|busybox (default: try debootstrap first).
set -euo pipefail

log() { echo "[services] rootfs: $*" >&2; }
die() { echo "[services] rootfs: ERROR: $*" >&2; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 OUTPUT.tar.gz"
OUT=$1
[[ $EUID -eq 0 ]] || die "must run as root (debootstrap/chroot)"
OUT_DIR=$(dirname "$OUT")
mkdir -p "$OUT_DIR"

apt_install() {
    local opts=(-y -q -o DPkg::Lock::Timeout=300) alog="$OUT_DIR/apt.log"
    log "apt-get install $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >"$alog" 2>&1; then
        apt-get update -q >>"$alog" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >>"$alog" 2>&1 \
            || { tail -n 20 "$alog" >&2; die "apt-get install $* failed"; }
    fi
}

# --- work dir, always cleaned up (unmount anything debootstrap left mounted) --
WORK=$(mktemp -d "$OUT_DIR/.rootfs-build.XXXXXX")
ROOTFS="$WORK/root"
cleanup() {
    local m
    if command -v findmnt >/dev/null; then
        { findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r || true; } | while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- debootstrap ------------------------------------------------------------
detect_mirror() {
    if [[ -n ${OMOI_ROOTFS_MIRROR:-} ]]; then echo "$OMOI_ROOTFS_MIRROR"; return; fi
    local m
    m=$(grep -rhoE '(^URIs:[[:space:]]*|^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)[^[:space:]]+' \
            /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | awk '{print $NF}' | grep -E '/debian/?$' | grep -v security | head -n1 || true)
    echo "${m:-http://deb.debian.org/debian}"
}

detect_suite() {
    if [[ -n ${OMOI_ROOTFS_SUITE:-} ]]; then echo "$OMOI_ROOTFS_SUITE"; return; fi
    local c=""
    [[ -r /etc/os-release ]] && c=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    echo "${c:-bookworm}"
}

build_debootstrap() {
    command -v debootstrap >/dev/null || apt_install debootstrap
    local mirror suite
    mirror=$(detect_mirror)
    suite=$(detect_suite)
    log "debootstrap --variant=minbase $suite from $mirror (takes ~1 min)"
    mkdir -p "$ROOTFS"
    if ! timeout 1200 debootstrap --variant=minbase \
            --include=git,python3,ca-certificates,procps \
            "$suite" "$ROOTFS" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
        tail -n 20 "$WORK/debootstrap.log" >&2 || true
        [[ -f $ROOTFS/debootstrap/debootstrap.log ]] && tail -n 20 "$ROOTFS/debootstrap/debootstrap.log" >&2
        return 1
    fi
    # Trim what a test image doesn't need.
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
        "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
        "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/log/*.log "$ROOTFS"/var/cache/debconf/*-old
    # Make sure containers don't inherit the build host's name resolution.
    : >"$ROOTFS/etc/resolv.conf"
    echo omoi-test >"$ROOTFS/etc/hostname"
}

# --- fallback: busybox + host git/python3 -------------------------------------
cp_into() { # cp_into [cp opts] /abs/path  -> same path inside $ROOTFS
    local src=${*: -1} opts=("${@:1:$#-1}")
    mkdir -p "$ROOTFS$(dirname "$src")"
    cp -a "${opts[@]}" "$src" "$ROOTFS$(dirname "$src")/"
}

copy_with_libs() { # copy ELF files and every shared lib they need, same paths
    local f lib
    for f in "$@"; do
        [[ -e $f ]] || continue
        [[ -e $ROOTFS$f ]] || cp_into "$f" 2>/dev/null || true
        if [[ -f $f ]] && [[ "$(head -c4 "$f" 2>/dev/null | tr -d '\0')" == $'\x7fELF' ]]; then
            { ldd "$f" 2>/dev/null | grep -oE '(/[^ ]+\.so[^ ]*)' || true; } | while read -r lib; do
                [[ -e $ROOTFS$lib ]] && continue
                mkdir -p "$ROOTFS$(dirname "$lib")"
                cp -L "$lib" "$ROOTFS$lib"
            done
        fi
    done
}

build_busybox() {
    log "building busybox-static rootfs + host git/python3 (fallback)"
    local bbldd=""
    [[ -x /bin/busybox ]] && bbldd=$(ldd /bin/busybox 2>&1 || true)
    if [[ $bbldd != *"not a dynamic"* ]]; then
        apt_install busybox-static
    fi
    rm -rf "$ROOTFS"; mkdir -p "$ROOTFS"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,lib,lib64,usr/lib,var/tmp}
    chmod 1777 "$ROOTFS/tmp" "$ROOTFS/var/tmp"
    cp /bin/busybox "$ROOTFS/bin/busybox"
    mknod -m 666 "$ROOTFS/dev/null" c 1 3 2>/dev/null || true   # for the chroot smoke test
    chroot "$ROOTFS" /bin/busybox --install -s
    ln -sf busybox "$ROOTFS/bin/sh"
    cat >"$ROOTFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$ROOTFS/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
    # Host python3 (stdlib + compiled modules) and git (+ helpers, templates).
    local py gitbin
    py=$(readlink -f /usr/bin/python3 2>/dev/null || true)
    gitbin=/usr/bin/git
    if [[ -n $py && -x $py ]]; then
        local ver; ver=$(basename "$py")             # python3.11
        copy_with_libs "$py"
        ln -sf "$ver" "$ROOTFS/usr/bin/python3"
        cp_into "/usr/lib/$ver"
        copy_with_libs /usr/lib/"$ver"/lib-dynload/*.so
    else
        log "WARNING: no host /usr/bin/python3; image will lack python3"
    fi
    if [[ -x $gitbin ]]; then
        copy_with_libs "$gitbin"
        if [[ -d /usr/lib/git-core ]]; then
            cp_into /usr/lib/git-core
            copy_with_libs /usr/lib/git-core/*
        fi
        if [[ -d /usr/share/git-core ]]; then cp_into /usr/share/git-core; fi
    else
        log "WARNING: no host git; image will lack git"
    fi
    if [[ -d /etc/ssl/certs ]]; then cp_into -L /etc/ssl/certs 2>/dev/null || true; fi
}

# --- build ------------------------------------------------------------------
method=${OMOI_ROOTFS_METHOD:-debootstrap}
if [[ $method == debootstrap ]]; then
    if ! build_debootstrap; then
        log "debootstrap failed; falling back to busybox"
        cleanup; mkdir -p "$WORK"
        build_busybox
    fi
else
    build_busybox
fi

# --- common customisation -----------------------------------------------------
if ! grep -q '^omoi:' "$ROOTFS/etc/passwd"; then
    if [[ -x $ROOTFS/usr/sbin/useradd ]]; then
        chroot "$ROOTFS" /usr/sbin/useradd -u 1000 -U -m -d /home/omoi -s /bin/bash omoi
    else
        echo 'omoi:x:1000:1000:omoi:/home/omoi:/bin/sh' >>"$ROOTFS/etc/passwd"
        echo 'omoi:x:1000:' >>"$ROOTFS/etc/group"
        mkdir -p "$ROOTFS/home/omoi"
    fi
fi
mkdir -p "$ROOTFS/home/omoi" "$ROOTFS/workspace"
chown 1000:1000 "$ROOTFS/home/omoi" "$ROOTFS/workspace"
chmod 755 "$ROOTFS/home/omoi" "$ROOTFS/workspace"
cat >"$ROOTFS/etc/gitconfig" <<'EOF'
[safe]
	directory = *
[user]
	name = omoi test
	email = omoi-test@localhost
[init]
	defaultBranch = main
EOF

# Sanity check the result before caching it.
for t in /bin/sh /usr/bin/git /usr/bin/python3; do
    if [[ -e $ROOTFS$t || -L $ROOTFS$t ]]; then :; else log "WARNING: $t missing from rootfs"; fi
done
chroot "$ROOTFS" /bin/sh -c 'git --version && python3 --version' >/dev/null \
    || log "WARNING: git/python3 smoke test in chroot failed"

log "packing $(du -sh "$ROOTFS" | cut -f1) into $(basename "$OUT")"
tar --numeric-owner -C "$ROOTFS" -cf - . | gzip -1 >"$OUT.tmp"
gzip -t "$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
