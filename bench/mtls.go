package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// controlPlanePort is where the control plane listens inside the namespace:
// fixed and below the ephemeral range, like the sidecars' ports.
const controlPlanePort = 20600

// controlPlane is the `outrigger control-plane` (the certificate authority)
// that the outrigger-mtls target's sidecars get their certificates from. One
// serves the whole run; the join tokens are minted once, when it starts, so
// minting is not part of any sidecar's start-up.
type controlPlane struct {
	proc    *process
	addr    string
	dataDir string
	home    string
	tokens  map[string]string // app ID -> join token
}

// startControlPlane starts the control plane with its state under dir, waits
// until it has written its trust anchors and accepts connections, and mints
// a join token for each of appIDs.
func startControlPlane(ctx context.Context, bin, dir string, appIDs []string, timeout time.Duration) (*controlPlane, error) {
	cp := &controlPlane{
		addr:    "127.0.0.1:" + strconv.Itoa(controlPlanePort),
		dataDir: filepath.Join(dir, "data"),
		home:    filepath.Join(dir, "home"),
		tokens:  map[string]string{},
	}
	if err := os.MkdirAll(cp.home, 0o755); err != nil {
		return nil, err
	}
	var err error
	cp.proc, err = startProcess("control plane", filepath.Join(dir, "control-plane.log"),
		[]string{"OUTRIGGER_HOME=" + cp.home},
		bin, "control-plane", "--listen", cp.addr, "--data-dir", cp.dataDir)
	if err != nil {
		return nil, err
	}
	err = cp.proc.waitUntil(ctx, "the control plane to write its trust anchors and listen", 10*time.Millisecond, timeout, func() error {
		if _, err := os.Stat(cp.trustAnchors()); err != nil {
			return err
		}
		c, err := net.DialTimeout("tcp", cp.addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		cp.stop()
		return nil, err
	}
	for _, id := range appIDs {
		if cp.tokens[id], err = cp.mintToken(ctx, bin, id, timeout); err != nil {
			cp.stop()
			return nil, err
		}
	}
	return cp, nil
}

// trustAnchors is the PEM file the control plane writes its roots to.
func (cp *controlPlane) trustAnchors() string {
	return filepath.Join(cp.dataDir, "trust-anchors.pem")
}

// mintToken runs `outrigger control-plane token` for appID.
func (cp *controlPlane) mintToken(ctx context.Context, bin, appID string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "control-plane", "token", "--data-dir", cp.dataDir, "--app-id", appID)
	cmd.Env = append(os.Environ(), "OUTRIGGER_HOME="+cp.home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	token := strings.TrimSpace(string(out))
	if err == nil && (token == "" || strings.ContainsAny(token, " \n")) {
		err = fmt.Errorf("want one token on stdout, got %q", out)
	}
	if err != nil {
		return "", fmt.Errorf("minting a join token for %s (%s): %v\n%s", appID, strings.Join(cmd.Args, " "), err, stderr.String())
	}
	return token, nil
}

// sidecarArgs are the flags and environment that join a sidecar of appID to
// the control plane's mesh.
func (cp *controlPlane) sidecarArgs(appID string) (args, env []string) {
	args = []string{"--enable-mtls", "--sentry-address", cp.addr, "--trust-anchors-file", cp.trustAnchors()}
	return args, []string{"OUTRIGGER_JOIN_TOKEN=" + cp.tokens[appID]}
}

func (cp *controlPlane) stop() {
	cp.proc.stop(stopGrace)
}

// refusesPlainText checks that the mesh port at addr does not answer a
// plain-text (h2c) request, as a sidecar running mutual TLS must not: the
// guard against measuring a mesh that is not the one asked for.
func refusesPlainText(ctx context.Context, addr string) error {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	url := "http://" + addr + appPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return nil // refused: the port wants TLS
	}
	resp.Body.Close()
	return errors.New("the mesh port " + addr + " answered a plain-text h2c request (status " + strconv.Itoa(resp.StatusCode) + "): the sidecar is not running mutual TLS")
}
