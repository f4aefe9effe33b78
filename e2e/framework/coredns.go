package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// StartCoreDNS starts CoreDNS (built by scripts/tools.sh coredns) on a
// free loopback port, authoritative for zone with records (zone-file lines
// relative to the zone), and returns its address once it answers.
func StartCoreDNS(t testing.TB, zone string, records ...string) string {
	t.Helper()
	bin := Tool(t, "coredns")
	dir := ShortTempDir(t)
	var db strings.Builder
	fmt.Fprintf(&db, "$ORIGIN %s.\n$TTL 5\n@ IN SOA ns.%s. hostmaster.%s. 1 7200 3600 1209600 5\n@ IN NS ns.%s.\nns IN A 127.0.0.1\n", zone, zone, zone, zone)
	for _, r := range records {
		db.WriteString(r + "\n")
	}
	zoneFile := filepath.Join(dir, "db."+zone)
	corefile := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(zoneFile, []byte(db.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(corefile, []byte(fmt.Sprintf("%s {\n\tbind 127.0.0.1\n\tfile %s\n}\n", zone, zoneFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	proc := startToolProcess(t, "CoreDNS", exec.Command(bin, "-conf", corefile, "-dns.port", strconv.Itoa(port)))
	WaitFor(t, "CoreDNS to answer for "+zone, func() error {
		if err := proc.exited(); err != nil {
			return err
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
		c := &dns.Client{Timeout: time.Second}
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			return err
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			return fmt.Errorf("SOA answer: %s", dns.RcodeToString[r.Rcode])
		}
		return nil
	})
	return addr
}
