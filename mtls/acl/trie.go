package acl

import "strings"

// Operation patterns live in a trie of path segments, built and searched the
// way Dapr's config.Trie does it, so that its matching quirks carry over:
//
//   - Each segment is stored with its leading slash: "/orders", "/*", "/**",
//     "/ord*".
//   - Children are tried in insertion order and the first that fits wins, even
//     if it leads nowhere and a later sibling would have matched.
//   - A rule on a segment matches every path below it: "/orders" also
//     matches "/orders/new". The exception is "/*" reached before the last
//     segment (only possible for a literal "*" segment), where the search
//     goes on.
//   - "/*" matches the last segment only; "/**" matches any one segment and,
//     holding a rule, everything below it.
//   - When the last segment lands on a node without a rule, a "/*" (or any
//     child fitting the literal "/*", such as "/**") below it decides, so
//     "/a/*" and "/a/**" also match "/a".
//   - For the same pattern twice, the first rule wins.

// node is one segment of the trie; the root has no segment.
type node struct {
	seg      string
	rule     *rule
	children []*node
}

const (
	oneSegment  = "/*"
	anySegments = "/**"
)

// insert adds r under pattern, which starts with "/".
func (n *node) insert(pattern string, r *rule) {
	segs := strings.Split(pattern, "/")[1:]
	cur := n
	for i, s := range segs {
		seg := "/" + s
		var next *node
		for _, c := range cur.children {
			if c.seg == seg {
				next = c
				break
			}
		}
		if next == nil {
			next = &node{seg: seg}
			cur.children = append(cur.children, next)
		}
		if i == len(segs)-1 {
			if next.rule == nil {
				next.rule = r
			}
			return
		}
		cur = next
	}
}

// lookup returns the rule that op, which starts with "/", matches, or nil.
func (n *node) lookup(op string) *rule {
	segs := strings.Split(op, "/")[1:]
	cur := n
	for i, s := range segs {
		last := i == len(segs)-1
		cur = cur.child("/"+s, last)
		if cur == nil {
			return nil
		}
		if cur.rule != nil {
			// Dapr tests for a "/*" suffix that is not "/**"; a segment
			// holds no slash, so that is the segment "/*" itself.
			if !last && cur.seg == oneSegment {
				continue
			}
			return cur.rule
		}
		if last {
			if w := cur.child(oneSegment, true); w != nil && w.rule != nil {
				return w.rule
			}
		}
	}
	return nil
}

// child returns the first child that fits seg: equal to it, "/*" (last
// segment only), "/**", or a pattern whose "*"s cover seg.
func (n *node) child(seg string, last bool) *node {
	for _, c := range n.children {
		switch {
		case c.seg == seg:
			return c
		case c.seg == oneSegment:
			if last {
				return c
			}
		case c.seg == anySegments:
			return c
		case glob(c.seg, seg):
			return c
		}
	}
	return nil
}

// glob reports whether s matches pattern, in which '*' stands for any run of
// bytes, empty included, and every other byte for itself.
func glob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
