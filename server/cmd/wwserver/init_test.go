package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

func fakeWWClient(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "wwclient")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho fake wwclient\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInitPlaceholder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tree")
	var out bytes.Buffer
	code := run([]string{"init", dir, "--wwclient", fakeWWClient(t), "--address", "10.9.8.1"}, &out, &out)
	if code != 0 {
		t.Fatalf("init failed: %s", out.String())
	}
	if !strings.Contains(out.String(), "placeholder") {
		t.Errorf("no placeholder note:\n%s", out.String())
	}
	srv, err := config.LoadServer(filepath.Join(dir, config.ServerFile))
	if err != nil {
		t.Fatal(err)
	}
	if srv.Address != "10.9.8.1" || !srv.IsSecure() || srv.DHCP.Enabled || srv.TFTP.Enabled {
		t.Errorf("server config %+v", srv)
	}
	nodes, err := config.LoadNodes(filepath.Join(dir, config.NodesFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.List) != 2 || nodes.ByName["n001"].Primary().IPAddr != "10.9.8.11" || nodes.ByName["n002"].Image != initImage {
		t.Errorf("nodes %+v", nodes.List)
	}
	for _, p := range []string{
		"overlays/wwinit", "overlays/generic", "overlays/wwinit/usr/sbin/wwclient",
		"images/default/rootfs/boot/vmlinuz-0-placeholder", "images/default/rootfs/README", "ipxe/README",
	} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("missing %s: %v", p, err)
		}
	}
	fi, _ := os.Stat(filepath.Join(dir, "overlays/wwinit/usr/sbin/wwclient"))
	if fi == nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("wwclient mode %v", fi)
	}
	k, _ := os.ReadFile(filepath.Join(dir, "images/default/rootfs/boot/vmlinuz-0-placeholder"))
	if !strings.Contains(string(k), "REPLACE ME") {
		t.Errorf("placeholder kernel %q", k)
	}
	// Every key of wwserver.toml is written and commented.
	text, _ := os.ReadFile(filepath.Join(dir, config.ServerFile))
	for _, key := range []string{"address", "listen", "update_interval", "secure", "source_check", "[dhcp]", "mode", "interface",
		"range_start", "range_end", "netmask", "router", "dns", "domain", "lease_time", "bios_file", "efi_file",
		"arm64_file", "http_boot_file", "workers", "[tftp]", "dir", "anticipate", "bootloader", "[grub]", "shim", "grub"} {
		if !strings.Contains(string(text), "\n"+key) {
			t.Errorf("wwserver.toml lacks %s", key)
		}
	}
	// The placeholder image does not boot, and check says so (one line for
	// both nodes); nothing else is wrong.
	problems := checkTree(dir)
	if len(problems) != 1 {
		t.Errorf("check of a fresh tree: %d problems, want the placeholder only: %q", len(problems), problems)
	}
	for _, want := range []string{"nodes.toml: nodes.n001.kernel:", `image "default" is the placeholder wwserver init wrote and will not boot`,
		"boot/vmlinuz-0-placeholder is not a Linux kernel", "images/default/rootfs", "(2 nodes: n[001-002])"} {
		if len(problems) == 0 || !strings.Contains(problems[0], want) {
			t.Errorf("check of a fresh tree lacks %q: %q", want, problems)
		}
	}
	var checkOut bytes.Buffer
	if code := run([]string{"check", dir}, &checkOut, &checkOut); code != 1 || strings.Contains(checkOut.String(), "ok\n") {
		t.Errorf("wwserver check of a fresh tree: exit %d:\n%s", code, checkOut.String())
	}
	replacePlaceholderKernel(t, dir)
	if problems := checkTree(dir); len(problems) != 0 {
		t.Errorf("check with a kernel in place of the placeholder: %q", problems)
	}

	// Not empty now: refused without --force, allowed with it.
	out.Reset()
	if code := run([]string{"init", dir, "--wwclient", fakeWWClient(t), "--address", "10.9.8.1"}, &out, &out); code == 0 {
		t.Error("init into a non-empty dir succeeded")
	} else if !strings.Contains(out.String(), "--force") {
		t.Errorf("refusal does not mention --force: %s", out.String())
	}
	if code := run([]string{"init", dir, "--force", "--wwclient", fakeWWClient(t), "--address", "10.9.8.1"}, &out, &out); code != 0 {
		t.Errorf("init --force failed: %s", out.String())
	}
}

func TestInitErrors(t *testing.T) {
	var out bytes.Buffer
	dir := filepath.Join(t.TempDir(), "tree")
	if code := run([]string{"init", dir, "--wwclient", "/nonexistent/wwclient", "--address", "10.0.0.1"}, &out, &out); code == 0 {
		t.Error("init with a missing wwclient succeeded")
	}
	if !strings.Contains(out.String(), "--wwclient") {
		t.Errorf("error does not say what to do: %s", out.String())
	}
	out.Reset()
	if code := run([]string{"init", dir, "--wwclient", fakeWWClient(t), "--address", "nope"}, &out, &out); code == 0 {
		t.Error("bad --address accepted")
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("a failed init wrote files")
	}
	out.Reset()
	if code := run([]string{"init", dir, "--wwclient", fakeWWClient(t), "--address", "10.0.0.1", "--image-from", "/nonexistent"}, &out, &out); code == 0 {
		t.Error("bad --image-from accepted")
	}
}
