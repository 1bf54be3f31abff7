#!/usr/bin/env bash
# Installs what building and testing Strata needs on Debian 12, only if it
# is missing. Run as root. Go comes from the machine (1.26) and the module
# proxy; everything else from Debian's packages.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have git || need+=(git)
have make || need+=(make)
have curl || need+=(curl)
have ip || need+=(iproute2)
have python3 || need+=(python3)
# The node agent runs containers with runc; tests build images from
# busybox-static and use nftables/iproute2 for the pod network.
have runc || need+=(runc)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
have nft || need+=(nftables)
# bench/netperf measures pod-to-pod throughput with iperf3.
have iperf3 || need+=(iperf3)
# VMs: QEMU (the launcher image is built from it on each node), qemu-img for
# overlays, and a Debian kernel for the test VM image (internal/vm/testimage).
have qemu-system-x86_64 || need+=(qemu-system-x86)
have qemu-img || need+=(qemu-utils)
# A bootable test disk for VM e2e tests (internal/vm/testimage.BootDisk).
have mkfs.fat || need+=(dosfstools)
have mcopy || need+=(mtools)
have syslinux || need+=(syslinux syslinux-common)
compgen -G '/boot/vmlinuz-*' >/dev/null || need+=(linux-image-cloud-amd64)
# The OpenStack APIs are judged by the real openstack CLI (test/e2e).
have openstack || need+=(python3-openstackclient)
# Object storage is judged by Debian's swift, aws and s3cmd (test/e2e); by
# path, as another aws may come first on PATH.
[[ -x /usr/bin/swift ]] || need+=(python3-swiftclient)
[[ -x /usr/bin/aws ]] || need+=(awscli)
[[ -x /usr/bin/s3cmd ]] || need+=(s3cmd)

if ((${#need[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "install-deps: missing ${need[*]}; run as root or install them" >&2
		exit 1
	fi
	echo "install-deps: installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! have go; then
	echo "install-deps: Go 1.26 is required (not in Debian 12); install it to /usr/local/go" >&2
	exit 1
fi
if ! have kubectl; then
	# The e2e tests use the machine's kubectl when there is one; otherwise
	# they use the version-matched kubectl bundled in bin/strata.
	echo "install-deps: no kubectl on PATH; tests will use 'strata kubectl'"
fi
