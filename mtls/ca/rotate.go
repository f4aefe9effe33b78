package ca

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"time"
)

// Rotation of a generated root runs in three steps so that no workload ever
// meets a certificate it cannot verify, although workloads learn the bundle
// only when they renew (at about 70% of a certificate's life):
//
//  1. RotateRoot makes a new generation that is trusted at once (it enters
//     the bundle handed out with every certificate) but signs only after one
//     workload lifetime plus the clock skew, when every workload has renewed
//     and trusts it.
//  2. From then on the new generation signs.
//  3. The old generation stays trusted for another workload lifetime plus
//     the skew, until every certificate it signed has expired, and then
//     leaves the bundle.

// RotateRoot starts a root rotation. It fails for a user-brought issuer:
// the user rotates those files.
func (a *Authority) RotateRoot() error {
	a.mu.RLock()
	brought := len(a.gens) > 0 && !a.gens[0].generation
	a.mu.RUnlock()
	if brought {
		return errors.New("ca: the issuer was brought by the user; replace the issuer and trust anchor files to rotate it")
	}
	now := a.opts.Now()
	overlap := a.opts.WorkloadCertTTL + a.opts.AllowedClockSkew
	g, err := a.newGeneration(now.Add(overlap))
	if err != nil {
		return err
	}
	a.mu.Lock()
	for _, old := range a.gens {
		if old.N < g.N && (old.TrustUntil.IsZero() || old.TrustUntil.After(g.SignFrom.Add(overlap))) {
			old.TrustUntil = g.SignFrom.Add(overlap)
			_ = writeMeta(filepath.Join(a.opts.DataDir, generationsDir, strconv.Itoa(old.N)), old)
		}
	}
	a.mu.Unlock()
	return a.writeTrustAnchors()
}

// Maintain keeps the authority current until ctx is done: it picks up
// generations made by a replica sharing the data directory, starts a
// rotation when less than three workload lifetimes of the signing root
// remain, and rewrites the trust anchors file as anchors come and go.
func (a *Authority) Maintain(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.maintainOnce()
	}
}

func (a *Authority) maintainOnce() {
	a.mu.RLock()
	brought := len(a.gens) > 0 && !a.gens[0].generation
	a.mu.RUnlock()
	if brought {
		return
	}
	if err := a.loadGenerations(); err != nil {
		a.log.Warn("certificate authority: reading generations", "err", err)
		return
	}
	now := a.opts.Now()
	a.mu.RLock()
	newest := a.gens[len(a.gens)-1]
	a.mu.RUnlock()
	if newest.issuer[0].NotAfter.Sub(now) < 3*(a.opts.WorkloadCertTTL+a.opts.AllowedClockSkew) {
		a.log.Info("certificate authority: root nears its end; rotating", "expires", newest.issuer[0].NotAfter.UTC())
		if err := a.RotateRoot(); err != nil {
			a.log.Error("certificate authority: rotating the root failed", "err", err)
		}
	}
	if err := a.writeTrustAnchors(); err != nil {
		a.log.Warn("certificate authority", "err", err)
	}
}
