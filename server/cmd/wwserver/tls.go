package main

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/tlscert"
)

func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "The HTTPS certificate of the runtime overlay and heartbeats ([tls] in wwserver.toml)",
		Long: `The served tree's tls/ holds a CA (ca.pem, ca.key) and the serving certificate it
signs (server.pem, server.key); keys are 0600. The CA is pinned in the overlays
wwinit (system) and generic (runtime) as etc/wwclient/tls-ca.pem, and wwclient
trusts nothing else. "wwserver init" makes them.`,
	}
	cmd.AddCommand(newTLSRotateCmd(), newTLSImportCmd())
	return cmd
}

// tlsHosts are the names the serving certificate must cover: wwserver.toml's
// address and the extra ones given.
func tlsHosts(root string, extra []string) ([]string, error) {
	srv, err := config.LoadServer(filepath.Join(root, config.ServerFile))
	if err != nil {
		return nil, err
	}
	return append([]string{srv.Address}, extra...), nil
}

func newTLSRotateCmd() *cobra.Command {
	var root string
	var hosts []string
	cmd := &cobra.Command{
		Use:   "rotate [DIR]",
		Short: "Make a new CA and serving certificate; running nodes keep working",
		Long: `rotate makes a new CA and a serving certificate signed by it, and writes the new
pin into the overlays. The new CA is also cross-signed by the old one and served
with the certificate, so a node still pinning the old CA keeps working; it gets
the new pin with its next runtime overlay (over HTTPS) or system overlay (next
boot). A node that missed two rotations needs a reboot. A running server uses
the new certificate from its next connection on.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := tlsHosts(root, hosts)
			if err != nil {
				return err
			}
			r, err := tlscert.Rotate(root, h)
			if err != nil {
				return err
			}
			printTLS(cmd.OutOrStdout(), r)
			return nil
		},
	}
	addTreeArg(cmd, &root)
	cmd.Flags().StringArrayVar(&hosts, "host", nil, "another address or DNS name nodes reach this server by (repeatable)")
	return cmd
}

func newTLSImportCmd() *cobra.Command {
	var root, cert, key, ca string
	var hosts []string
	cmd := &cobra.Command{
		Use:   "import --cert CHAIN.pem --key KEY.pem --ca CA.pem [DIR]",
		Short: "Serve a certificate made elsewhere; CA.pem becomes the nodes' pin",
		Long: `import checks that the key belongs to the certificate and that the chain verifies
against CA.pem for wwserver.toml's address (and every --host), then installs
them under tls/ and writes CA.pem as the pin. The tree then has no CA key:
"tls rotate" starts a new CA without cross-signing (nodes need the new pin
first: reboot them or wait for a runtime overlay while the old still serves).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := tlsHosts(root, hosts)
			if err != nil {
				return err
			}
			r, err := tlscert.Import(root, cert, key, ca, h)
			if err != nil {
				return err
			}
			printTLS(cmd.OutOrStdout(), r)
			return nil
		},
	}
	addTreeArg(cmd, &root)
	cmd.Flags().StringVar(&cert, "cert", "", "serving certificate chain (PEM, leaf first)")
	cmd.Flags().StringVar(&key, "key", "", "its private key (PEM)")
	cmd.Flags().StringVar(&ca, "ca", "", "CA certificate(s) the chain verifies against: what nodes pin (PEM)")
	cmd.Flags().StringArrayVar(&hosts, "host", nil, "another address or DNS name the certificate must cover (repeatable)")
	for _, f := range []string{"cert", "key", "ca"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func printTLS(w io.Writer, r *tlscert.Result) {
	fmt.Fprintf(w, "CA: %s (sha256 %s)\n", r.CA.Subject.CommonName, fingerprint(r.CA))
	fmt.Fprintf(w, "server certificate: %s, valid until %s\n", strings.Join(certHosts(r.Leaf), ", "), r.Leaf.NotAfter.Format("2006-01-02"))
	if r.CrossBy != "" {
		fmt.Fprintf(w, "cross-signed by the previous CA %s: nodes pinning it keep working\n", r.CrossBy)
	}
	for _, p := range r.Pins {
		fmt.Fprintf(w, "pin: %s\n", p)
	}
	if len(r.Pins) == 0 {
		fmt.Fprintf(w, "warning: no overlays/wwinit or overlays/generic: copy tls/ca.pem to %s of your system overlay\n", tlscert.PinInImage)
	}
}

func certHosts(c *x509.Certificate) []string {
	out := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return fmt.Sprintf("%x", sum[:8])
}
