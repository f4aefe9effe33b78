package mtls_test

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/mtls/ca"
)

// BenchmarkMeshRoundTrip is one call's bytes across one mesh hop on a
// connection already made, one call at a time: the caller writes a 1 KiB
// body with its headers (1,200 bytes), the callee answers 1,100. Over plain
// TCP and over the mesh's mutual TLS (the configurations ServerConfig and
// ClientConfig give), so the difference of their ns/op is what TLS adds to
// a call's round trip: the records' encryption, decryption and framing.
func BenchmarkMeshRoundTrip(b *testing.B) {
	const reqSize, respSize = 1200, 1100
	a := authority(b, ca.Options{})
	server, client := issue(b, a, "callee"), issue(b, a, "caller")
	calleeID, _ := mtls.NewIdentity("", "", "callee")
	srvCfg := mtls.ServerConfig(server, mtls.AuthorizeMemberOf(a.TrustDomain()))
	cliCfg := mtls.ClientConfig(client, mtls.AuthorizeIdentity(calleeID), tls.NewLRUClientSessionCache(4))
	cliCfg.ServerName = "mesh.test"

	for _, useTLS := range []bool{false, true} {
		name := "tcp"
		if useTLS {
			name = "mtls"
		}
		b.Run(name, func(b *testing.B) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			go func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				if useTLS {
					c = tls.Server(c, srvCfg)
				}
				defer c.Close()
				req, resp := make([]byte, reqSize), make([]byte, respSize)
				for {
					if _, err := io.ReadFull(c, req); err != nil {
						return
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			if useTLS {
				tc := tls.Client(c, cliCfg)
				if err := tc.Handshake(); err != nil {
					b.Fatal(err)
				}
				c = tc
			}
			defer c.Close()
			req, resp := make([]byte, reqSize), make([]byte, respSize)
			b.SetBytes(reqSize + respSize)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
