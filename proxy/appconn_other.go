//go:build !unix

package proxy

// alive cannot peek at a socket here; a dropped connection is found when a
// call fails on it, and an idempotent call is then replayed.
func (c *inlineConn) alive() bool { return c.br.Buffered() == 0 }
