package acl

import "testing"

// globDP is the dynamic-programming matcher Dapr's trie uses, kept here as
// the reference for glob.
func globDP(pattern, s string) bool {
	m := make([][]bool, len(s)+1)
	for i := range m {
		m[i] = make([]bool, len(pattern)+1)
	}
	m[0][0] = true
	for j := 1; j <= len(pattern) && pattern[j-1] == '*'; j++ {
		m[0][j] = true
	}
	for i := 1; i <= len(s); i++ {
		for j := 1; j <= len(pattern); j++ {
			switch {
			case pattern[j-1] == '*':
				m[i][j] = m[i][j-1] || m[i-1][j]
			case s[i-1] == pattern[j-1]:
				m[i][j] = m[i-1][j-1]
			}
		}
	}
	return m[len(s)][len(pattern)]
}

// TestGlob compares glob with the reference on every pattern and string of
// up to five bytes over a small alphabet.
func TestGlob(t *testing.T) {
	const alphabet = "ab*"
	var all []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		all = append(all, prefix)
		if n == 0 {
			return
		}
		for i := 0; i < len(alphabet); i++ {
			gen(prefix+alphabet[i:i+1], n-1)
		}
	}
	gen("", 5)
	for _, p := range all {
		for _, s := range all {
			if got, want := glob(p, s), globDP(p, s); got != want {
				t.Fatalf("glob(%q, %q) = %v, want %v", p, s, got, want)
			}
		}
	}
}
