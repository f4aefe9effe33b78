package harness

import (
	"context"
	"errors"
	"io"
	"net"
	"time"
)

// Relay copies bytes both ways between in and a new connection to target
// until either side closes, parsing nothing: the floor under any proxy a
// benchmark puts on a path.
func Relay(in net.Conn, target string) {
	defer in.Close()
	out, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer out.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(out, in)
		_ = out.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(in, out)
	_ = in.(*net.TCPConn).CloseWrite()
	<-done
}

// ServeRelay relays every connection l accepts to target until l is
// closed.
func ServeRelay(l net.Listener, target string) error {
	for {
		in, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go Relay(in, target)
	}
}

// WaitListening polls addr with TCP connects every interval until one
// succeeds, ctx ends or timeout passes, and returns how long that took.
func WaitListening(ctx context.Context, addr string, interval, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return time.Since(start), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if time.Now().After(deadline) {
			return 0, errors.New(addr + " not listening after " + timeout.String() + ": " + err.Error())
		}
		time.Sleep(interval)
	}
}
