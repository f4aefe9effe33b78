package workloadapi_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/outrigger/outrigger/mtls/workloadapi"
)

// fixedSource serves one SVID that never changes.
type fixedSource struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func (s fixedSource) X509SVID() (*x509svid.SVID, *x509bundle.Bundle, error) {
	return s.svid, s.bundle, nil
}

func (fixedSource) Changed() <-chan struct{} { return nil } // never changes

// The sidecar serves its workload's identity next to the app; the app reads
// it with go-spiffe: workloadapi.NewX509Source(ctx,
// workloadapi.WithClientOptions(workloadapi.WithAddr("unix:///run/outrigger/agent.sock"))).
func Example() {
	svid, err := x509svid.Load("svid.pem", "svid.key")
	if err != nil {
		slog.Error("load SVID", "error", err)
		return
	}
	bundle, err := x509bundle.Load(svid.ID.TrustDomain(), "bundle.pem")
	if err != nil {
		slog.Error("load bundle", "error", err)
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	srv := workloadapi.New(fixedSource{svid: svid, bundle: bundle}, slog.Default())
	if err := srv.Serve(ctx, "/run/outrigger/agent.sock"); err != nil {
		slog.Error("workload API", "error", err)
	}
}
