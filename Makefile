# wwserver / wwclient — see README.md. Two entry points for a new user:
#   make lab    a QEMU node PXE-boots from wwserver in a private network namespace
#   make test   unit tests (-race) and the QEMU PXE integration cases
SHELL := /bin/bash
# Go: go.mod's version or newer (Debian 12's golang-go is 1.19, too old). When
# no go is on the PATH, the go.dev/dl tarball's /usr/local/go/bin/go is used.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
# PATH for tools and tests that run go or nginx themselves.
GO_WANT := $(shell sed -n 's/^go \([0-9.]*\)$$/\1/p' go.mod)
BIN := $(CURDIR)/bin
# The version linked into wwserver and wwclient (--version) and, turned into
# a dpkg/rpm version by tools/pkg, the packages'; the commit time dates an
# untagged build's package version and every packaged file.
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
VERSION_TIME := $(shell git log -1 --format=%ct 2>/dev/null || echo 1)
LDFLAGS := -X main.buildVersion=$(VERSION)
# make packages: .deb and .rpm of wwserver (amd64) and wwclient (amd64, arm64).
PKG_DIR := $(CURDIR)/build/packages
# The fresh Debian 12 root the package tests install into (tools/pkg/testroot.sh), outside the clone.
PKG_ROOT := /var/cache/ww/pkgtest/debian12-root
IMAGE := $(CURDIR)/build/image
# Debian packages per target, installed with --no-install-recommends (deps-%).
# lab: QEMU (qemu-system-x86_64; seabios and ipxe-qemu's efi-virtio.rom come
# as its dependencies), iPXE boot files, OVMF (UEFI nodes), ip(8).
LAB_PACKAGES := qemu-system-x86 ipxe ipxe-qemu ovmf iproute2
# image (initramfs/build.sh): depmod; the kernel and busybox .debs are
# downloaded with apt-get download, not installed.
IMAGE_PACKAGES := kmod
# image-systemd, image-selinux, image-hpc (initramfs/debian-image.sh).
DEBIAN_IMAGE_PACKAGES := mmdebstrap kmod
# test: the lab's and the images' (integration boots image and image-systemd),
# plus the tools unit tests call: busybox (DHCP client in netns tests, image
# import), tftp and curl (TFTP/HTTP clients), cpio (archive checks) and the
# libraries of the nginx binary unpacked for TestStorm20 (see NGINX below);
# kea-admin ships perfdhcp, the DHCP load client of TestTwoServersShareLeasesAndStatus.
TEST_PACKAGES := $(LAB_PACKAGES) $(DEBIAN_IMAGE_PACKAGES) busybox-static tftp-hpa curl cpio libssl3 libpcre2-8-0 kea-admin
# rpm: the package tests install the .rpm into a temporary root (rpm --root).
TEST_PACKAGES += rpm
# power (wwserver power/console): OpenIPMI's BMC simulator ipmi_sim, the BMC
# of the unit tests in make test and of the QEMU node in make test-power.
TEST_PACKAGES += openipmi
# server/netrender's tool checks: systemd-networkd (systemd) and the libraries
# of the network tools unpacked under build/nettools (see NETTOOLS below);
# ssh-keygen reads the host keys server/hostkeys writes.
TEST_PACKAGES += systemd libglib2.0-0 libgnutls30 openssh-client
# test-cluster: ssh and ping from the lab's namespace to the nodes.
CLUSTER_PACKAGES := $(TEST_PACKAGES) iputils-ping
# bench and storm: the load generators and peers measured side by side.
BENCH_PACKAGES := wrk kea-dhcp4-server kea-admin dnsmasq-base curl iproute2 libssl3 libpcre2-8-0
STORM_PACKAGES := iproute2 ipxe libssl3 libpcre2-8-0
# vagrant (make test-vagrant, vagrant-lab): Vagrant with vagrant-libvirt and
# libvirt's QEMU driver (dnsmasq-base for its networks), OVMF (UEFI nodes),
# and what tools/lab/vagrant/box.sh builds the server's box with.
VAGRANT_PACKAGES := vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients dnsmasq-base qemu-system-x86 \
	qemu-utils ovmf mmdebstrap extlinux syslinux-common fdisk e2fsprogs rsync
# test-arm64: QEMU for arm64 and its UEFI firmware (EDK2 for QEMU virt).
ARM64_PACKAGES := qemu-system-arm qemu-efi-aarch64
# nginx (the reference static server of TestStorm20, bench and storm) is
# unpacked from Debian's nginx package under build/, not installed: the
# package would start and enable a web server on port 80.
NGINX_DIR := $(CURDIR)/build/nginx
NGINX := $(NGINX_DIR)/usr/sbin/nginx
# nmcli (--offline), ifquery and udevadm check the network files netrender
# writes; unpacked from Debian's packages under build/, not installed: the
# packages would start NetworkManager, networking and udevd on this machine.
NETTOOLS_DIR := $(CURDIR)/build/nettools
NETTOOLS_PACKAGES := network-manager libnm0 ifupdown udev
NETTOOLS := $(NETTOOLS_DIR)/usr/bin/nmcli
# PATH for tests and scripts that run go or nginx themselves.
TOOL_PATH := $(dir $(NGINX)):$(dir $(shell command -v $(GO) 2>/dev/null || echo $(GO))):$(PATH)

.PHONY: vagrant-files vagrant-box vagrant-lab test-vagrant deps-vagrant bench-etcd packages pkgroot test-packages image-arm64 test-arm64 test-cluster deps-cluster bench-edit all check-go deps deps-lab deps-image deps-debian-image deps-test deps-bench deps-storm build image image-systemd image-selinux image-hpc bootloaders lab test test-selinux test-measure unit integration vet staticcheck fmt-check fuzz bench storm clean

all: build

# Stops with what to do when go is missing or older than go.mod wants.
check-go:
	@have=$$($(GO) version 2>/dev/null | sed -n 's/^go version go\([0-9.]*\).*/\1/p'); \
	if [ -z "$$have" ] || [ "$$(printf '%s\n' "$(GO_WANT)" "$$have" | sort -V | head -n1)" != "$(GO_WANT)" ]; then \
	  echo "Go $(GO_WANT) or newer is needed (go.mod); found: $${have:-no go ($(GO))}." >&2; \
	  echo "Debian 12's golang-go is 1.19, too old. Install Go from the go.dev/dl tarball to /usr/local/go:" >&2; \
	  echo "  curl -fLO https://go.dev/dl/go$(GO_WANT).linux-amd64.tar.gz && rm -rf /usr/local/go && tar -C /usr/local -xzf go$(GO_WANT).linux-amd64.tar.gz" >&2; \
	  echo "  export PATH=/usr/local/go/bin:\$$PATH   (or: make GO=/usr/local/go/bin/go ...)" >&2; \
	  exit 1; \
	fi

# deps-TARGET installs the missing Debian packages of TARGET (apt-get update
# first, once), without recommended packages.
deps-lab: PKGS = $(LAB_PACKAGES)
deps-image: PKGS = $(IMAGE_PACKAGES)
deps-debian-image: PKGS = $(DEBIAN_IMAGE_PACKAGES)
deps-test: PKGS = $(TEST_PACKAGES)
deps-bench: PKGS = $(BENCH_PACKAGES)
deps-storm: PKGS = $(STORM_PACKAGES)
deps-vagrant: PKGS = $(VAGRANT_PACKAGES)
deps-arm64: PKGS = $(ARM64_PACKAGES)
deps-cluster: PKGS = $(CLUSTER_PACKAGES)
deps-lab deps-image deps-debian-image deps-test deps-bench deps-storm deps-arm64 deps-cluster deps-vagrant:
	@missing=""; for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

# Every package of every target.
deps: deps-test deps-bench

# nginx unpacked from Debian's package (apt-get download; no service, no root needed).
$(NGINX):
	rm -rf $(NGINX_DIR).tmp && mkdir -p $(NGINX_DIR).tmp
	cd $(NGINX_DIR).tmp && { apt-get download -q nginx || { echo "apt-get download nginx failed: run apt-get update (as root), then make again" >&2; exit 1; }; } && dpkg-deb -x nginx_*.deb root
	rm -rf $(NGINX_DIR) && mv $(NGINX_DIR).tmp/root $(NGINX_DIR) && rm -rf $(NGINX_DIR).tmp
	$(NGINX) -v

$(NETTOOLS):
	rm -rf $(NETTOOLS_DIR).tmp && mkdir -p $(NETTOOLS_DIR).tmp
	cd $(NETTOOLS_DIR).tmp && { apt-get download -q $(NETTOOLS_PACKAGES) || { echo "apt-get download $(NETTOOLS_PACKAGES) failed: run apt-get update (as root), then make again" >&2; exit 1; }; } && for d in *.deb; do dpkg-deb -x $$d root; done
	rm -rf $(NETTOOLS_DIR) && mv $(NETTOOLS_DIR).tmp/root $(NETTOOLS_DIR) && rm -rf $(NETTOOLS_DIR).tmp
	LD_LIBRARY_PATH=$(NETTOOLS_DIR)/usr/lib/x86_64-linux-gnu $(NETTOOLS) --version

# wwclient is stripped (-s -w) as in the packages: every node downloads it in
# its system overlay and the kernel unpacks it (12 MB with DWARF, 7.1 MB gzip;
# 8.4 MB, 3.8 MB gzip without). Panics still print symbolised stacks.
build: check-go
	mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(BIN)/wwclient ./wwclient
	CGO_ENABLED=0 GOARCH=arm64 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(BIN)/arm64/wwclient ./wwclient
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/wwserver ./server/cmd/wwserver

# Static (CGO_ENABLED=0), stripped binaries, man pages and completions from
# the cobra commands (wwserver __gendocs), then the packages (tools/pkg,
# nfpm): build/packages/wwserver_*.deb, wwserver-*.rpm, wwclient_* (README).
packages: check-go
	rm -rf $(PKG_DIR) && mkdir -p $(PKG_DIR)/bin
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(PKG_DIR)/bin/wwserver ./server/cmd/wwserver
	for a in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(PKG_DIR)/bin/wwclient-$$a ./wwclient || exit 1; \
	done
	$(PKG_DIR)/bin/wwserver __gendocs $(PKG_DIR)/docs
	$(GO) run ./tools/pkg --bin $(PKG_DIR)/bin --docs $(PKG_DIR)/docs --out $(PKG_DIR) --version $(VERSION) --time $(VERSION_TIME)

# The Debian 12 root (minbase, ipxe, systemd; mmdebstrap, cached) the package tests install into.
pkgroot: deps-debian-image
	./tools/pkg/testroot.sh $(PKG_ROOT)

# The package tests alone (integration/package_*_test.go; also part of make integration).
test-packages: check-go deps-test build image packages pkgroot
	WW_PKG_BOOT=1 WW_PACKAGES=$(PKG_DIR) WW_PKG_ROOT=$(PKG_ROOT) WW_BIN=$(BIN) WW_IMAGE=$(IMAGE) $(GO) test -count=1 -timeout 15m -v -run 'TestPackage' ./integration/

# The lab node image (Debian kernel + busybox), cached under build/.
image: deps-image
	./initramfs/build.sh $(IMAGE)

# Debian 12 node images (mmdebstrap, the lab kernel), cached under build/:
# systemd (~200 MB, booted by make test), selinux (enforcing), hpc (1-3 GB).
image-systemd image-selinux image-hpc: image-%: deps-debian-image
	./initramfs/debian-image.sh $* $(CURDIR)/build/debian-$*

# Debian's signed shim and GRUB (Secure Boot nodes, bootloader = "grub"),
# downloaded (apt-get download) and unpacked under build/secureboot, never
# installed: shim-signed's maintainer scripts would install a boot loader.
bootloaders:
	./initramfs/bootloaders.sh $(CURDIR)/build/secureboot

# The arm64 lab node image (Debian linux-image-arm64 + busybox-static:arm64,
# dpkg --add-architecture arm64 once), cached under build/.
image-arm64: deps-image
	WW_ARCH=arm64 ./initramfs/build.sh $(CURDIR)/build/image-arm64

# LAB_ARGS, e.g. --firmware uefi-secureboot (needs make bootloaders) --nodes 2
lab: check-go deps-lab build image
	$(GO) build -o $(BIN)/lab ./tools/lab/cmd/lab
	$(BIN)/lab --bin $(BIN) --image $(IMAGE) $(LAB_ARGS)

vet: check-go
	$(GO) vet ./...

# staticcheck from the Go module proxy, pinned (v0.8.2 knows Go 1.26); no install step.
STATICCHECK_VERSION := v0.8.2
staticcheck: check-go
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit: check-go deps-test build $(NGINX) $(NETTOOLS)
	WW_NETTOOLS=$(NETTOOLS_DIR) PATH=$(TOOL_PATH) $(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

integration: check-go deps-test deps-arm64 build image image-systemd image-arm64 bootloaders packages pkgroot
	WW_ARM64_IMAGE=$(CURDIR)/build/image-arm64 WW_PACKAGES=$(PKG_DIR) WW_PKG_ROOT=$(PKG_ROOT) WW_BIN=$(BIN) WW_IMAGE=$(IMAGE) WW_SYSTEMD_IMAGE=$(CURDIR)/build/debian-systemd WW_SECUREBOOT=$(CURDIR)/build/secureboot $(GO) test -race -count=1 -timeout 30m -v ./integration/

test: fmt-check vet staticcheck unit integration

# Every fuzz target for FUZZTIME each (default 30s; FUZZ=regexp picks targets). Not part of make test.
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) FUZZ='$(FUZZ)' GO=$(GO) ./tools/fuzz.sh

# SELinux enforcing boot (~5-10 min under TCG; not part of make test).
test-selinux: check-go deps-lab build image image-selinux
	$(GO) test -count=1 -v -run TestLookupMatchesLibselinux ./wwclient/selabel/
	WW_BIN=$(BIN) WW_IMAGE=$(IMAGE) WW_SELINUX_IMAGE=$(CURDIR)/build/debian-selinux $(GO) test -race -count=1 -timeout 25m -v -run TestSELinuxEnforcingBoot ./integration/

# IPMI power and console through the BMC: a QEMU lab node whose BMC is
# ipmi_sim (power on/cycle/reset/off, SOL console, wrong password; a few
# minutes, not part of make test; part of make test-cluster).
.PHONY: test-power
test-power: check-go deps-test build image
	WW_TEST_POWER=1 WW_BIN=$(BIN) WW_IMAGE=$(IMAGE) $(GO) test -race -count=1 -timeout 15m -v -run 'TestIPMIPowerConsole' ./integration/

# arm64 node (QEMU virt, cortex-a57, EDK2, TCG) PXE-boots through DHCP,
# TFTP, shim, GRUB to a two-stage boot (~1.5 min; not part of make test).
test-arm64: check-go deps-test deps-arm64 build image image-arm64 bootloaders
	WW_ARM64=1 WW_BIN=$(BIN) WW_IMAGE=$(IMAGE) WW_ARM64_IMAGE=$(CURDIR)/build/image-arm64 WW_SECUREBOOT=$(CURDIR)/build/secureboot $(GO) test -race -count=1 -timeout 30m -v -run 'ARM64|SecureBootGRUBInitrd' ./integration/
# QEMU nodes with NetworkManager and with systemd-networkd (Debian 12 images
# net-nm, net-networkd: initramfs/debian-image.sh), four NICs each: second NIC
# with address and MTU, VLAN, bond; root logs in over ssh with the rendered
# host keys, before and after a restart. One QEMU at a time; not part of make test. Runs test-power first.
test-cluster: test-power check-go deps-cluster deps-debian-image build image
	./initramfs/debian-image.sh net-nm $(CURDIR)/build/debian-net-nm
	./initramfs/debian-image.sh net-networkd $(CURDIR)/build/debian-net-networkd
	WW_BIN=$(BIN) WW_IMAGE=$(IMAGE) WW_NET_NM_IMAGE=$(CURDIR)/build/debian-net-nm WW_NET_NETWORKD_IMAGE=$(CURDIR)/build/debian-net-networkd \
	  $(GO) test -count=1 -timeout 50m -v -run 'TestCluster' ./integration/

# Opt-in measurements and the firmware-against-servers boots that make test
# leaves out (minutes each): DHCP exchanges per second, TFTP throughput
# (dnsmasq beside), QEMU firmware DHCP/TFTP against the servers.
test-measure: check-go deps-test deps-bench build
	WWT_DHCP_PERF=1 $(GO) test -count=1 -v -run TestNetnsPerf ./server/dhcp/
	WWT_TFTP_MEASURE=1 $(GO) test -count=1 -v -run TestNetnsMeasure ./server/tftp/
	WWT_QEMU=1 $(GO) test -count=1 -v -timeout 20m -run TestQEMUFirmware ./server/dhcp/

# Load benchmarks against the figures in BENCHMARKS.md (loopback only; ~10 min; not part of make test).
bench: check-go deps-bench build $(NGINX)
	BENCH_NGINX=$${BENCH_NGINX:-$(NGINX)} GO=$(GO) ./tools/bench/run.sh

# DHCP leases shared by two wwservers through a 3-member etcd cluster (fsync
# on), perfdhcp offering RATE DORA/s (default 2000), the lease writer
# unbatched (lease_batch = 1) and batched side by side; every lease checked
# for an address bound twice (root; ~2 min; not part of make test).
bench-etcd: check-go deps-bench
	GO=$(GO) ./tools/bench/etcd-dhcp.sh $(RATE)

# What editing 10,000 and 100,000 nodes costs (node import/add/set, check;
# wall, CPU and peak RSS; a few minutes; not part of make test).
# EDIT_BASELINE=/path/to/old/wwserver adds a before/after table.
bench-edit: check-go build
	GO=$(GO) ./tools/bench/edit.sh

# Simulated nodes reboot at once from a realistic image, two-stage as nodes boot by
# default, against wwserver and nginx in one run (tools/bootstorm; root; ~10-15 min;
# not part of make test): 200 nodes x the whole hpc image by default;
# STORM_NODES=1000 STORM_IMAGE_BYTES=33554432 for 1,000 nodes x a slice (storm.sh lists the knobs).
storm: check-go deps-storm deps-debian-image build $(NGINX)
	GO=$(GO) PATH=$(TOOL_PATH) ./tools/bootstorm/storm.sh

# The Vagrant lab (Vagrantfile, tools/lab/vagrant): the server VM gets static
# binaries and the node image (a tar: symlinks kept) built here, staged in
# build/vagrant; its box is built from Debian packages (cached in
# /var/cache/ww/vagrant). WW_LIBVIRT_DRIVER=qemu without KVM.
VAGRANT_FILES := $(CURDIR)/build/vagrant
vagrant-files: check-go image
	mkdir -p $(VAGRANT_FILES)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(VAGRANT_FILES)/wwclient ./wwclient
	CGO_ENABLED=0 $(GO) build -trimpath -o $(VAGRANT_FILES)/wwserver ./server/cmd/wwserver
	tar -C $(IMAGE)/rootfs --numeric-owner -cf $(VAGRANT_FILES)/image.tar.tmp . && mv $(VAGRANT_FILES)/image.tar.tmp $(VAGRANT_FILES)/image.tar

vagrant-box: deps-vagrant
	./tools/lab/vagrant/box.sh

vagrant-lab: deps-vagrant vagrant-files vagrant-box
	VAGRANT_DEFAULT_PROVIDER=libvirt vagrant up --no-parallel

# The Vagrant lab end to end: box, libvirt (started if nothing runs it),
# vagrant up of the server and two nodes (BIOS, UEFI), both at RUNTIME_OVERLAY,
# vagrant destroy, nothing left behind (root; 10-40 min; not part of make test).
test-vagrant: deps-vagrant vagrant-files
	./tools/lab/vagrant/test.sh

clean:
	rm -rf $(BIN) build/image

# An image whose compressed archive is over 4 GiB through the second stage: a
# real wwserver on loopback builds it, stage2 fetches and unpacks it into a
# tmpfs (~10 GB of disk under TMPDIR, 5 GiB of RAM, minutes; not part of make test).
.PHONY: test-big
test-big: check-go deps-test build image
	WW_BIG=1 WW_BIN=$(BIN) WW_IMAGE=$(IMAGE) $(GO) test -count=1 -timeout 60m -v -run 'TestSecondStageBigImage$$' ./integration/

# Node boot time under QEMU TCG, single-stage vs two-stage, BIOS and UEFI, side
# by side against one wwserver (BENCH_ROUNDS boots of each; ~1-2 min a boot;
# not part of make test). The table goes to build/bench-boot.md. Environment:
# WW_BENCH_IMAGE=build/debian-systemd (timed to the exec of /sbin/init),
# WW_BENCH_FW=bios (default bios,uefi). Both nodes boot the kernel_args of
# wwserver init. WW_BENCH_AB=1: the second node boots two-stage with the
# earlier defaults instead (no quiet; WW_BENCH_OLD_WWCLIENT=PATH: an earlier
# wwclient build in its wwinit overlay), side by side with the shipped ones.
# WW_BENCH_UEFI_PATHS=1 (needs make bootloaders): the UEFI ways side by side
# (PXE → snponly.efi, PXE → shim → GRUB, HTTP boot → ipxe.efi, NIC iPXE ROM).
BENCH_ROUNDS ?= 3
.PHONY: bench-boot
bench-boot: check-go deps-lab build image
	WW_BENCH_BOOT=$(BENCH_ROUNDS) WW_BENCH_OUT=$(CURDIR)/build/bench-boot.md WW_BIN=$(BIN) WW_IMAGE=$(IMAGE) $(GO) test -count=1 -timeout 0 -v -run 'TestBootTimeBench$$' ./integration/

# Where a lab node's boot time goes (tools/lab/cmd/bootgaps; not part of make
# test): timed serial consoles under build/boot-gaps (each line with the time
# its first byte and its end arrived), one QEMU at a time, kernel_args
# variants alternated (--args, repeated). Default: one UEFI boot with the
# kernel's initcall timings. E.g. A/B:
#   make boot-gaps GAPS_ARGS="--firmware uefi --rounds 4 --args quiet --args 'quiet cryptomgr.notests'"
GAPS_ARGS ?= --firmware uefi --args 'printk.time=1 initcall_debug ignore_loglevel'
.PHONY: boot-gaps
boot-gaps: check-go deps-lab build image
	$(GO) build -o $(BIN)/bootgaps ./tools/lab/cmd/bootgaps
	$(BIN)/bootgaps --bin $(BIN) --image $(IMAGE) --out $(CURDIR)/build/boot-gaps $(GAPS_ARGS)

# Cold image build by wwserver build, gzip cpio (single-stage) vs zstd chunks
# (two-stage), side by side (BENCH_IMAGE, default the hpc image; not part of make test).
BENCH_IMAGE ?= $(CURDIR)/build/debian-hpc
BENCH_IMAGE_PACKAGES := time
.PHONY: bench-image deps-bench-image
deps-bench-image: PKGS = $(BENCH_IMAGE_PACKAGES)
deps-bench-image:
	@dpkg-query -W -f='$${Status}' $(PKGS) 2>/dev/null | grep -q "install ok installed" || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(PKGS); }
bench-image: check-go deps-bench-image build
	WW_BIN=$(BIN) ./tools/bench/imagebuild.sh $(BENCH_IMAGE) $${BENCH_RUNS:-2}
