package jetstream

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

const (
	// reservedRoot is the first token of the broker's own subjects;
	// topics cannot start with it.
	reservedRoot = "_OUTRIGGER"
	// chunkPrefix starts the subject under which a stream keeps the parts
	// of messages too large for one NATS message: chunkPrefix + the
	// stream's name.
	chunkPrefix = reservedRoot + ".chunks."
	// managedMark starts the description of the streams the broker
	// creates; it adds subjects to those, and to no other stream.
	managedMark = "outrigger pubsub.jetstream"
	// maxName bounds the names the broker derives (NATS allows 255; names
	// become file names in the server's store).
	maxName = 100
)

// chunkSubject is the subject of the parts of large messages in stream.
func chunkSubject(stream string) string { return chunkPrefix + stream }

// subjectFor is the subject of topic: the topic itself, which must be a
// valid subject for publishing (no white space, no empty token, no
// wildcard token) outside the subjects NATS and the broker reserve.
func subjectFor(topic string) (string, error) {
	if topic == "" {
		return "", errors.New("pubsub/jetstream: an empty topic")
	}
	for _, r := range topic {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "", fmt.Errorf("pubsub/jetstream: topic %q: white space and control characters cannot be in a NATS subject", topic)
		}
	}
	tokens := strings.Split(topic, ".")
	for _, tok := range tokens {
		switch tok {
		case "":
			return "", fmt.Errorf("pubsub/jetstream: topic %q: a NATS subject has no empty token (leading, trailing or doubled dot)", topic)
		case "*", ">":
			return "", fmt.Errorf("pubsub/jetstream: topic %q: %q is a wildcard in NATS subjects", topic, tok)
		}
	}
	if first := tokens[0]; strings.HasPrefix(first, "$") || first == "_INBOX" || first == reservedRoot {
		return "", fmt.Errorf("pubsub/jetstream: topic %q: subjects under %q are reserved", topic, first)
	}
	return topic, nil
}

// safeName turns s into a stream or consumer name: characters other than
// ASCII letters, digits, '-' and '_' become '_', and a name that changed
// or was cut to maxName ends in a hash of s, so distinct inputs keep
// distinct names.
func safeName(s string) string {
	b := []byte(s)
	changed := false
	for i, c := range b {
		if !nameByte(c) {
			b[i] = '_'
			changed = true
		}
	}
	if !changed && len(b) <= maxName && len(b) > 0 {
		return s
	}
	h := shortHash(s)
	if len(b) > maxName-len(h)-1 {
		b = b[:maxName-len(h)-1]
	}
	return string(b) + "_" + h
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// streamNameFor is the name of the stream the broker creates for topic
// when streamName is not set.
func streamNameFor(topic string) string { return safeName(topic) }

// consumerName is the durable consumer of group on topic. In the topic's
// own stream it is the group's name; in a stream other topics may share,
// the topic and a hash of both are added, so that consumers of several
// topics cannot meet.
func consumerName(group, topic string, dedicated bool) string {
	if dedicated {
		return safeName(group)
	}
	h := shortHash(group + "\x00" + topic)
	name := safeName(group) + "_" + safeName(topic)
	if len(name) > maxName-len(h)-1 {
		name = name[:maxName-len(h)-1]
	}
	return name + "_" + h
}

// subjectMatches reports whether subject falls under pattern, a stream
// subject that may hold the wildcards '*' (one token) and '>' (the rest).
func subjectMatches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || tok != "*" && tok != s[i] {
			return false
		}
	}
	return len(p) == len(s)
}

// covers reports whether one of subjects takes subject.
func covers(subjects []string, subject string) bool {
	for _, p := range subjects {
		if subjectMatches(p, subject) {
			return true
		}
	}
	return false
}
