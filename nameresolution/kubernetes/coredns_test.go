package kubernetes_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// corednsPath finds the CoreDNS binary: $OUTRIGGER_COREDNS, else where
// scripts/tools.sh builds it. A missing binary fails the test.
func corednsPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("OUTRIGGER_COREDNS")
	if path == "" {
		root := moduleRoot(t)
		out, err := exec.Command("bash", filepath.Join(root, "scripts", "tools.sh"), "path", "coredns").Output()
		if err != nil {
			t.Fatalf("scripts/tools.sh path coredns: %v", err)
		}
		path = strings.TrimSpace(string(out))
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("no CoreDNS binary at %s (set OUTRIGGER_COREDNS, or run scripts/tools.sh coredns to build it)", path)
	}
	return path
}

// moduleRoot is the directory of the go.mod above the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// syncBuffer collects a process's output, or a logger's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// coreDNS is a CoreDNS process serving zones from files the test rewrites.
type coreDNS struct {
	addr   string // 127.0.0.1:port, UDP and TCP
	dir    string
	mu     sync.Mutex
	serial map[string]uint32 // by zone
}

// reloadEvery is how often CoreDNS's file plugin checks the zone files.
const reloadEvery = 100 * time.Millisecond

// startCoreDNS starts CoreDNS on a free loopback port, authoritative for each
// zone (origin without the final dot) from a file that starts with only its
// SOA and NS records. It returns once CoreDNS answers.
func startCoreDNS(t *testing.T, zones ...string) *coreDNS {
	t.Helper()
	bin := corednsPath(t)
	c := &coreDNS{dir: t.TempDir(), serial: map[string]uint32{}}
	var corefile strings.Builder
	for _, z := range zones {
		c.write(t, z, nil)
		fmt.Fprintf(&corefile, "%s {\n\tbind 127.0.0.1\n\tfile %s {\n\t\treload %s\n\t}\n}\n",
			z, filepath.Join(c.dir, "db."+z), reloadEvery)
	}
	conf := filepath.Join(c.dir, "Corefile")
	if err := os.WriteFile(conf, []byte(corefile.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	// Another process may take the port between the probe and CoreDNS's
	// bind; then CoreDNS exits and another port is tried.
	var lastErr error
	for range 5 {
		port := freePort(t)
		var out syncBuffer
		cmd := exec.Command(bin, "-conf", conf, "-dns.port", strconv.Itoa(port))
		cmd.Dir = c.dir
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start CoreDNS: %v", err)
		}
		exited := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(exited)
		}()
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		c.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = c.waitReady(zones[0], exited); lastErr == nil {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("CoreDNS output:\n%s", out.String())
				}
			})
			return c
		}
		stop()
		lastErr = fmt.Errorf("%w; output:\n%s", lastErr, out.String())
	}
	t.Fatalf("CoreDNS did not start: %v", lastErr)
	return nil
}

// waitReady polls the zone's SOA until CoreDNS answers, it exits, or 20 s pass.
func (c *coreDNS) waitReady(zone string, exited <-chan struct{}) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("CoreDNS exited")
		default:
		}
		if _, err := c.soaSerial(zone); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("CoreDNS did not answer within 20s")
}

// soaSerial asks CoreDNS for the serial of the zone it serves.
func (c *coreDNS) soaSerial(zone string) (uint32, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
	cl := &dns.Client{Timeout: 500 * time.Millisecond}
	r, _, err := cl.Exchange(q, c.addr)
	if err != nil {
		return 0, err
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("no SOA in the answer: %v", r)
}

// set replaces the records of a zone (lines of a zone file, names relative
// to the zone's origin unless they end in a dot) and returns once CoreDNS
// serves them.
func (c *coreDNS) set(t *testing.T, zone string, records ...string) {
	t.Helper()
	serial := c.write(t, zone, records)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := c.soaSerial(zone)
		if err == nil && got == serial {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CoreDNS did not load serial %d of %s within 20s: serving %d, %v", serial, zone, got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// write renders a zone file with a bumped SOA serial and renames it into
// place, and returns the serial. Negative answers may be cached 1 s.
func (c *coreDNS) write(t *testing.T, zone string, records []string) uint32 {
	t.Helper()
	c.mu.Lock()
	c.serial[zone]++
	serial := c.serial[zone]
	c.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s.\n$TTL 1\n", zone)
	fmt.Fprintf(&b, "@ IN SOA ns.%s. hostmaster.%s. %d 7200 3600 1209600 1\n", zone, zone, serial)
	fmt.Fprintf(&b, "@ IN NS ns.%s.\nns IN A 127.0.0.1\n", zone)
	for _, r := range records {
		b.WriteString(r + "\n")
	}
	path := filepath.Join(c.dir, "db."+zone)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return serial
}

// freePort returns a loopback port free for both UDP and TCP just now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return port
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return 0
}

// testContext is a context for one test, cancelled when it ends.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
