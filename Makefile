# wwserver / wwclient — see README.md. Two entry points for a new user:
#   make lab    a QEMU node PXE-boots from wwserver in a private network namespace
#   make test   unit tests (-race) and the QEMU PXE integration cases
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
IMAGE := $(CURDIR)/build/image
# Debian packages the build, the tests and the lab need.
APT_PACKAGES := qemu-system-x86 ipxe ovmf busybox-static tftp-hpa curl kmod cpio iproute2 file nginx-light mmdebstrap

.PHONY: all deps build image image-systemd image-selinux image-hpc bootloaders lab test test-selinux unit integration vet staticcheck fmt-check fuzz bench storm clean

all: build

# Installs missing Debian packages (apt-get update first, once).
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

build:
	mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/wwclient ./wwclient
	$(GO) build -trimpath -o $(BIN)/wwserver ./server/cmd/wwserver

# The lab node image (Debian kernel + busybox), cached under build/.
image: deps
	./initramfs/build.sh $(IMAGE)

# Debian 12 node images (mmdebstrap, the lab kernel), cached under build/:
# systemd (~200 MB, booted by make test), selinux (enforcing), hpc (1-3 GB).
image-systemd image-selinux image-hpc: image-%: deps
	./initramfs/debian-image.sh $* $(CURDIR)/build/debian-$*

# Debian's signed shim and GRUB (Secure Boot nodes, bootloader = "grub"),
# downloaded and unpacked under build/secureboot, never installed.
bootloaders:
	./initramfs/bootloaders.sh $(CURDIR)/build/secureboot

# LAB_ARGS, e.g. --firmware uefi-secureboot (needs make bootloaders) --nodes 2
lab: deps build image
	$(GO) build -o $(BIN)/lab ./tools/lab/cmd/lab
	$(BIN)/lab --bin $(BIN) --image $(IMAGE) $(LAB_ARGS)

vet:
	$(GO) vet ./...

# staticcheck from the Go module proxy, pinned (v0.8.2 knows Go 1.26); no install step.
STATICCHECK_VERSION := v0.8.2
staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit: deps build
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

integration: deps build image image-systemd bootloaders
	WW_BIN=$(BIN) WW_IMAGE=$(IMAGE) WW_SYSTEMD_IMAGE=$(CURDIR)/build/debian-systemd WW_SECUREBOOT=$(CURDIR)/build/secureboot $(GO) test -race -count=1 -timeout 30m -v ./integration/

test: fmt-check vet staticcheck unit integration

# Every fuzz target for FUZZTIME each (default 30s; FUZZ=regexp picks targets). Not part of make test.
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) FUZZ='$(FUZZ)' GO=$(GO) ./tools/fuzz.sh

# SELinux enforcing boot (~5-10 min under TCG; not part of make test).
test-selinux: deps build image image-selinux
	WW_BIN=$(BIN) WW_IMAGE=$(IMAGE) WW_SELINUX_IMAGE=$(CURDIR)/build/debian-selinux $(GO) test -race -count=1 -timeout 25m -v -run TestSELinuxEnforcingBoot ./integration/

# Load benchmarks against the figures in BENCHMARKS.md (loopback only; ~10 min; not part of make test).
bench: deps build
	./tools/bench/run.sh

# 1,000 simulated nodes reboot at once from a realistic image, against wwserver
# and nginx in one run (tools/bootstorm; root; ~15-30 min; not part of make test).
storm: deps build
	./tools/bootstorm/storm.sh

clean:
	rm -rf $(BIN) build/image
