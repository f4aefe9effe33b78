package acl_test

import (
	"reflect"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/outrigger/outrigger/mtls/acl"
)

// daprFixture is the access-control spec of Dapr's pkg/acl tests, as YAML.
const daprFixture = `
defaultAction: deny
trustDomain: abcd
policies:
- appId: app1
  defaultAction: allow
  trustDomain: public
  namespace: ns1
  operations:
  - name: /op1
    httpVerb: [POST, GET]
    action: allow
  - name: /op2
    httpVerb: ["*"]
    action: deny
- appId: app2
  defaultAction: deny
  trustDomain: domain1
  namespace: ns2
  operations:
  - name: /op3/a/*
    httpVerb: [PUT, GET]
    action: allow
  - name: /op4
    httpVerb: [POST]
    action: allow
- appId: app3
  trustDomain: domain1
  namespace: ns1
  operations:
  - name: /op5
    httpVerb: [POST]
    action: allow
- appId: app4
  defaultAction: deny
  trustDomain: domain1
  namespace: ns2
  operations:
  - name: /op6
    action: allow
  - name: /op7/a/b/*
    action: allow
  - name: /op7/a/b/c/f
    action: allow
  - name: /op7/a/b*
    action: allow
  - name: /op7/c/**
    action: allow
- appId: app1          # same app id, other namespace
  defaultAction: allow
  trustDomain: public
  namespace: ns4
  operations:
  - name: /op6
    httpVerb: ["*"]
    action: allow
`

func decodeSpec(t testing.TB, doc string) *acl.Spec {
	t.Helper()
	var s acl.Spec
	if err := yaml.Unmarshal([]byte(doc), &s); err != nil {
		t.Fatalf("yaml.Unmarshal: %v", err)
	}
	return &s
}

func mustCompile(t testing.TB, doc string) *acl.Policy {
	t.Helper()
	p, err := acl.Compile(decodeSpec(t, doc))
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	if p == nil {
		t.Fatal("Compile: got nil policy, want one")
	}
	return p
}

func caller(td, ns, app string) *acl.Caller {
	return &acl.Caller{TrustDomain: td, Namespace: ns, AppID: app}
}

type call struct {
	name      string
	caller    *acl.Caller
	operation string
	verb      string
	isHTTP    bool
	want      bool
	wantScope string
}

func runCalls(t *testing.T, p *acl.Policy, calls []call) {
	t.Helper()
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			d := p.Decide(c.caller, c.operation, c.verb, c.isHTTP)
			if d.Allowed != c.want {
				t.Errorf("Decide(%+v, %q, %q, %v).Allowed = %v, want %v (reason: %s)",
					c.caller, c.operation, c.verb, c.isHTTP, d.Allowed, c.want, d.Reason)
			}
			if c.wantScope != "" && d.Scope != c.wantScope {
				t.Errorf("Decide(%+v, %q, %q, %v).Scope = %q, want %q (reason: %s)",
					c.caller, c.operation, c.verb, c.isHTTP, d.Scope, c.wantScope, d.Reason)
			}
			if d.Reason == "" {
				t.Error("Decide: empty Reason")
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error; nil for success
	}{
		{
			name: "valid Dapr fixture",
			doc:  daprFixture,
		},
		{
			name: "missing trustDomain, namespace and appId",
			doc: `
defaultAction: deny
trustDomain: public
policies:
- appId: app1
  defaultAction: allow
  namespace: ns1
  operations: [{name: /op1, httpVerb: [POST, GET], action: allow}]
- appId: app2
  defaultAction: deny
  trustDomain: domain1
  operations: [{name: /op4, httpVerb: [POST], action: allow}]
- defaultAction: deny
  trustDomain: domain1
  namespace: ns1
`,
			want: []string{
				`accessControl.policies[0].trustDomain: required for appId "app1"`,
				`accessControl.policies[1].namespace: required for appId "app2"`,
				`accessControl.policies[2].appId: required`,
			},
		},
		{
			name: "action neither allow nor deny",
			doc: `
policies:
- {appId: a, namespace: ns, trustDomain: public, operations: [{name: /x, action: allow}]}
- appId: b
  namespace: ns
  trustDomain: public
  operations:
  - {name: /y, action: maybe}
`,
			want: []string{`accessControl.policies[1].operations[0].action: "maybe": want allow or deny`},
		},
		{
			name: "missing action",
			doc:  `policies: [{appId: a, namespace: ns, trustDomain: public, operations: [{name: /x}]}]`,
			want: []string{`accessControl.policies[0].operations[0].action: "": want allow or deny`},
		},
		{
			name: "actions are case-insensitive",
			doc: `
defaultAction: DENY
policies: [{appId: a, namespace: ns, trustDomain: public, defaultAction: Allow,
  operations: [{name: /x, action: ALLOW}, {name: /y, action: Deny}]}]`,
		},
		{
			name: "bad global defaultAction",
			doc:  `defaultAction: permit`,
			want: []string{`accessControl.defaultAction: "permit": want allow or deny`},
		},
		{
			name: "bad app defaultAction",
			doc:  `policies: [{appId: a, namespace: ns, trustDomain: public, defaultAction: yes}]`,
			want: []string{`accessControl.policies[0].defaultAction: "yes": want allow or deny`},
		},
		{
			name: "unknown verb",
			doc:  `policies: [{appId: a, namespace: ns, trustDomain: public, operations: [{name: /x, httpVerb: [GET, FETCH], action: allow}]}]`,
			want: []string{`accessControl.policies[0].operations[0].httpVerb[1]: "FETCH": want one of GET, HEAD`},
		},
		{
			name: "lower-case verb, which Dapr would never match",
			doc:  `policies: [{appId: a, namespace: ns, trustDomain: public, operations: [{name: /x, httpVerb: [get], action: allow}]}]`,
			want: []string{`httpVerb[0]: "get"`},
		},
		{
			name: "NONE is not a verb",
			doc:  `policies: [{appId: a, namespace: ns, trustDomain: public, operations: [{name: /x, httpVerb: [NONE], action: allow}]}]`,
			want: []string{`httpVerb[0]: "NONE"`},
		},
		{
			name: "every known verb and the wildcard",
			doc: `policies: [{appId: a, namespace: ns, trustDomain: public, operations: [{name: /x, action: allow,
  httpVerb: [GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH, "*"]}]}]`,
		},
		{
			name: "all problems are reported together",
			doc: `
defaultAction: nope
policies:
- {appId: a, operations: [{name: /x, action: x, httpVerb: [Y]}]}`,
			want: []string{
				`accessControl.defaultAction: "nope"`,
				`accessControl.policies[0].trustDomain: required`,
				`accessControl.policies[0].namespace: required`,
				`accessControl.policies[0].operations[0].action: "x"`,
				`accessControl.policies[0].operations[0].httpVerb[0]: "Y"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := acl.Compile(decodeSpec(t, tt.doc))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Compile: got error %v, want none", err)
				}
				if p == nil {
					t.Fatal("Compile: got nil policy, want one")
				}
				return
			}
			if err == nil {
				t.Fatalf("Compile: got no error, want one containing %q", tt.want)
			}
			if p != nil {
				t.Errorf("Compile: got a policy alongside error %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Compile error:\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestCompileDefaults(t *testing.T) {
	anyone := caller("public", "default", "someone")
	tests := []struct {
		name      string
		spec      *acl.Spec // used when doc is empty
		doc       string
		wantNil   bool
		wantAllow bool
	}{
		{name: "nil spec", spec: nil, wantNil: true, wantAllow: true},
		{name: "empty spec", spec: &acl.Spec{}, wantNil: true, wantAllow: true},
		{name: "empty policies only", doc: "policies: []", wantNil: true, wantAllow: true},
		{name: "empty section", doc: "{}", wantNil: true, wantAllow: true},
		{name: "trust domain only: policies absent defaults to deny", doc: "trustDomain: public", wantAllow: false},
		{name: "trust domain and empty policies defaults to allow", doc: "trustDomain: public\npolicies: []", wantAllow: true},
		{name: "policies without default action defaults to deny",
			doc: "policies: [{appId: a, namespace: ns, trustDomain: public, defaultAction: allow}]", wantAllow: false},
		{name: "explicit allow", doc: "defaultAction: allow", wantAllow: true},
		{name: "explicit deny with empty policies", doc: "defaultAction: deny\npolicies: []", wantAllow: false},
		{name: "upper-case allow", doc: "defaultAction: ALLOW", wantAllow: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			if tt.doc != "" {
				spec = decodeSpec(t, tt.doc)
			}
			p, err := acl.Compile(spec)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if (p == nil) != tt.wantNil {
				t.Fatalf("Compile: got policy %v, want nil: %v", p, tt.wantNil)
			}
			for _, c := range []*acl.Caller{nil, anyone} {
				d := p.Decide(c, "/op", "GET", true)
				if d.Allowed != tt.wantAllow {
					t.Errorf("Decide(%+v).Allowed = %v, want %v (%s)", c, d.Allowed, tt.wantAllow, d.Reason)
				}
				wantScope := "global"
				if tt.wantNil {
					wantScope = ""
				}
				if d.Scope != wantScope {
					t.Errorf("Decide(%+v).Scope = %q, want %q", c, d.Scope, wantScope)
				}
			}
		})
	}
}

// TestDecideDapr ports the decisions of Dapr's pkg/acl tests.
func TestDecideDapr(t *testing.T) {
	p := mustCompile(t, daprFixture)
	var nilPolicy *acl.Policy
	if d := nilPolicy.Decide(caller("public", "ns1", "app1"), "op1", "POST", true); !d.Allowed || d.Scope != "" {
		t.Errorf("nil policy: got %+v, want allowed with no scope", d)
	}
	runCalls(t, p, []call{
		{name: "no policy for the app", caller: caller("public", "ns1", "appX"), operation: "op1", verb: "POST", isHTTP: true, want: false, wantScope: "global"},
		{name: "trust domain does not match", caller: caller("private", "ns1", "app1"), operation: "op1", verb: "POST", isHTTP: true, want: false, wantScope: "global"},
		{name: "namespace does not match", caller: caller("public", "abcd", "app1"), operation: "op1", verb: "POST", isHTTP: true, want: false, wantScope: "global"},
		{name: "no identity", caller: nil, operation: "op1", verb: "POST", isHTTP: true, want: false, wantScope: "global"},
		{name: "operation not in policy: app default", caller: caller("public", "ns1", "app1"), operation: "opX", verb: "POST", isHTTP: true, want: true, wantScope: "app"},
		{name: "http is case-insensitive", caller: caller("public", "ns1", "app1"), operation: "Op2", verb: "POST", isHTTP: true, want: false, wantScope: "app"},
		{name: "verb not listed: app default", caller: caller("domain1", "ns2", "app2"), operation: "op4", verb: "PUT", isHTTP: true, want: false, wantScope: "app"},
		{name: "verb not listed, no app default: global default", caller: caller("domain1", "ns1", "app3"), operation: "op5", verb: "PUT", isHTTP: true, want: false, wantScope: "global"},
		{name: "verb matches *", caller: caller("public", "ns1", "app1"), operation: "op2", verb: "PUT", isHTTP: true, want: false, wantScope: "app"},
		{name: "verb matches a listed verb", caller: caller("domain1", "ns2", "app2"), operation: "op4", verb: "POST", isHTTP: true, want: true, wantScope: "app"},
		{name: "leading slash", caller: caller("domain1", "ns2", "app2"), operation: "/op4", verb: "POST", isHTTP: true, want: true},
		{name: "http without verb: app default", caller: caller("domain1", "ns2", "app2"), operation: "op4", verb: "", isHTTP: true, want: false, wantScope: "app"},
		{name: "trailing * matches the parent", caller: caller("domain1", "ns2", "app2"), operation: "/op3/a", verb: "PUT", isHTTP: true, want: true},
		{name: "grpc is case-sensitive", caller: caller("domain1", "ns2", "app2"), operation: "/OP4", isHTTP: false, want: false},
		{name: "non-matching middle segment", caller: caller("domain1", "ns2", "app2"), operation: "/op3/b/b", verb: "PUT", isHTTP: true, want: false},
		{name: "trailing * matches one segment", caller: caller("domain1", "ns2", "app2"), operation: "/op3/a/b", verb: "PUT", isHTTP: true, want: true},
		{name: "grpc uses the operation action", caller: caller("domain1", "ns2", "app2"), operation: "op4", isHTTP: false, want: true, wantScope: "app"},
		{name: "grpc rule without verbs", caller: caller("domain1", "ns2", "app4"), operation: "op6", isHTTP: false, want: true},
		{name: "grpc * matches the last segment", caller: caller("domain1", "ns2", "app4"), operation: "op7/a/b/c", isHTTP: false, want: true},
		{name: "grpc * does not match two segments", caller: caller("domain1", "ns2", "app4"), operation: "op7/a/b/c/d", isHTTP: false, want: false},
		{name: "grpc exact path past a *", caller: caller("domain1", "ns2", "app4"), operation: "op7/a/b/c/f", isHTTP: false, want: true},
		{name: "grpc * inside a segment", caller: caller("domain1", "ns2", "app4"), operation: "op7/a/bc", isHTTP: false, want: true},
		{name: "grpc ** matches many segments", caller: caller("domain1", "ns2", "app4"), operation: "op7/c/d/e", isHTTP: false, want: true},
		{name: "same app id, other namespace", caller: caller("public", "ns4", "app1"), operation: "op6", verb: "DELETE", isHTTP: true, want: true, wantScope: "app"},
	})
}

func TestDecideWildcards(t *testing.T) {
	p := mustCompile(t, `
defaultAction: deny
policies:
- appId: w
  namespace: ns
  trustDomain: public
  operations:
  - {name: /ABC/A*, action: allow}
  - {name: /pre/*C, action: allow}
  - {name: /pre/*a, action: allow}
  - {name: /mid/a*d, action: allow}
  - {name: /mid/AB*.a, action: allow}
  - {name: /orders, action: allow}
  - {name: /deep/**, action: allow}
  - {name: /mid2/**/end, action: allow}
  - {name: /star/*/x, action: allow}
  - {name: /pkg.Svc/Get, action: allow}
  - {name: root/nolead, action: allow}
`)
	w := caller("public", "ns", "w")
	runCalls(t, p, []call{
		// Dapr's isMatch cases, inside one segment.
		{name: "suffix *", caller: w, operation: "/ABC/ABC", want: true},
		{name: "suffix * with dot", caller: w, operation: "/ABC/ABC.a", want: true},
		{name: "suffix * matches nothing", caller: w, operation: "/ABC/A", want: true},
		{name: "suffix * needs the prefix", caller: w, operation: "/ABC/BC", want: false},
		{name: "prefix *", caller: w, operation: "/pre/ABC", want: true},
		{name: "prefix * with dot", caller: w, operation: "/pre/ABC.a", want: true},
		{name: "middle *", caller: w, operation: "/mid/abcd", want: true},
		{name: "middle * with dot", caller: w, operation: "/mid/ABC.a", want: true},
		{name: "middle * needs the suffix", caller: w, operation: "/mid/abc", want: false},

		// Segment rules are prefixes.
		{name: "exact", caller: w, operation: "/orders", want: true},
		{name: "a rule matches paths below it", caller: w, operation: "/orders/new/1", want: true},
		{name: "trailing slash", caller: w, operation: "/orders/", want: true},
		{name: "no partial segment", caller: w, operation: "/ordersx", want: false},

		// ** at the end: zero or more segments.
		{name: "** zero segments", caller: w, operation: "/deep", want: true},
		{name: "** one segment", caller: w, operation: "/deep/a", want: true},
		{name: "** many segments", caller: w, operation: "/deep/a/b/c", want: true},
		// ** in the middle stands for exactly one segment.
		{name: "middle ** one segment", caller: w, operation: "/mid2/x/end", want: true},
		{name: "middle ** two segments", caller: w, operation: "/mid2/x/y/end", want: false},
		// * in the middle: one segment, not the last.
		{name: "middle * one segment", caller: w, operation: "/star/a/x", want: false},
		{name: "middle literal * segment", caller: w, operation: "/star/*/x", want: true},

		// gRPC full method names and leading slashes.
		{name: "grpc full method", caller: w, operation: "/pkg.Svc/Get", want: true},
		{name: "grpc full method, no slash", caller: w, operation: "pkg.Svc/Get", want: true},
		{name: "grpc other method", caller: w, operation: "/pkg.Svc/Put", want: false},
		{name: "rule without leading slash", caller: w, operation: "/root/nolead", want: true},
		{name: "empty operation", caller: w, operation: "", want: false},
	})
}

// TestDecideTrieQuirks pins matching quirks of Dapr's trie.
func TestDecideTrieQuirks(t *testing.T) {
	p := mustCompile(t, `
defaultAction: deny
policies:
- appId: q
  namespace: ns
  trustDomain: public
  operations:
  # An exact sibling inserted before a wildcard shadows it: /a/b finds the
  # node "b" (no rule, child "c") and never tries "*".
  - {name: /a/b/c, action: allow}
  - {name: /a/*, action: allow}
  # Inserted the other way round, "*" comes first and matches.
  - {name: /z/*, action: allow}
  - {name: /z/b/c, action: deny}
  # The same pattern twice: the first rule wins.
  - {name: /dup, action: allow}
  - {name: /dup, action: deny}
  # Case variants merge for HTTP (first wins) but not for gRPC.
  - {name: /Case, action: deny}
  - {name: /case, action: allow}
`)
	q := caller("public", "ns", "q")
	runCalls(t, p, []call{
		{name: "shadowed wildcard", caller: q, operation: "/a/b", want: false},
		{name: "other segment reaches the wildcard", caller: q, operation: "/a/x", want: true},
		{name: "exact deeper path", caller: q, operation: "/a/b/c", want: true},
		{name: "wildcard first", caller: q, operation: "/z/b", want: true},
		{name: "deeper rule under a wildcard sibling", caller: q, operation: "/z/b/c", want: false},
		{name: "duplicate: first wins", caller: q, operation: "/dup", want: true},
		{name: "grpc keeps case variants apart (upper)", caller: q, operation: "/Case", want: false},
		{name: "grpc keeps case variants apart (lower)", caller: q, operation: "/case", want: true},
		{name: "http merges case variants, first wins", caller: q, operation: "/case", verb: "GET", isHTTP: true, want: false},
		{name: "http merges case variants, any case", caller: q, operation: "/CASE", verb: "GET", isHTTP: true, want: false},
	})
}

func TestDecideVerbs(t *testing.T) {
	p := mustCompile(t, `
defaultAction: allow
policies:
- appId: v
  namespace: ns
  trustDomain: public
  operations:
  - {name: /post, httpVerb: [POST], action: allow}
  - {name: /get, httpVerb: [GET], action: deny}
  - {name: /both, httpVerb: [GET, "*"], action: deny}
  - {name: /noverbs, action: deny}
- appId: d
  namespace: ns
  trustDomain: public
  defaultAction: allow
  operations:
  - {name: /get, httpVerb: [GET], action: deny}
  - {name: /post, httpVerb: [POST], action: deny}
`)
	v := caller("public", "ns", "v")
	d := caller("public", "ns", "d")
	runCalls(t, p, []call{
		{name: "listed verb", caller: v, operation: "/get", verb: "GET", isHTTP: true, want: false, wantScope: "global"},
		{name: "verb is case-insensitive", caller: v, operation: "/get", verb: "get", isHTTP: true, want: false},
		{name: "unlisted verb: global default", caller: v, operation: "/get", verb: "PUT", isHTTP: true, want: true, wantScope: "global"},
		{name: "unknown method counts as POST", caller: d, operation: "/post", verb: "FETCH", isHTTP: true, want: false},
		{name: "unknown method is not GET", caller: d, operation: "/get", verb: "FETCH", isHTTP: true, want: true},
		{name: "NONE is no verb", caller: d, operation: "/get", verb: "NONE", isHTTP: true, want: true, wantScope: "app"},
		{name: "verb * fallback", caller: v, operation: "/both", verb: "PATCH", isHTTP: true, want: false},
		{name: "rule without verbs, http: default", caller: v, operation: "/noverbs", verb: "GET", isHTTP: true, want: true},
		{name: "rule without verbs, grpc: its action", caller: v, operation: "/noverbs", isHTTP: false, want: false},
		{name: "grpc ignores verbs", caller: v, operation: "/get", verb: "PUT", isHTTP: false, want: false},
		// Dapr quirk: an HTTP call with no verb that matches a rule takes the
		// app's default action, and an app without one denies even though
		// the global default allows.
		{name: "no verb, app without default: deny", caller: v, operation: "/post", verb: "", isHTTP: true, want: false, wantScope: "global"},
		{name: "no verb, app default allow", caller: d, operation: "/get", verb: "", isHTTP: true, want: true, wantScope: "app"},
		{name: "no verb, no matching rule: global default", caller: v, operation: "/other", verb: "", isHTTP: true, want: true, wantScope: "global"},
	})
}

func TestDecideIdentity(t *testing.T) {
	p := mustCompile(t, `
defaultAction: deny
trustDomain: cluster.local
policies:
- {appId: a, namespace: ns, trustDomain: td, defaultAction: allow}
- {appId: a, namespace: other, trustDomain: td, defaultAction: deny}
- {appId: dup, namespace: ns, trustDomain: td, defaultAction: deny}
- {appId: dup, namespace: ns, trustDomain: td, defaultAction: allow}
`)
	runCalls(t, p, []call{
		{name: "matching identity", caller: caller("td", "ns", "a"), operation: "/x", verb: "GET", isHTTP: true, want: true, wantScope: "app"},
		{name: "global trust domain is not the caller's", caller: caller("cluster.local", "ns", "a"), operation: "/x", want: false, wantScope: "global"},
		{name: "trust domain is case-sensitive", caller: caller("TD", "ns", "a"), operation: "/x", want: false, wantScope: "global"},
		{name: "app id is case-sensitive", caller: caller("td", "ns", "A"), operation: "/x", want: false, wantScope: "global"},
		{name: "policy per namespace", caller: caller("td", "other", "a"), operation: "/x", want: false, wantScope: "app"},
		{name: "empty identity", caller: &acl.Caller{}, operation: "/x", want: false, wantScope: "global"},
		{name: "later duplicate policy wins", caller: caller("td", "ns", "dup"), operation: "/x", want: true, wantScope: "app"},
	})
}

func TestDecideConcurrent(t *testing.T) {
	p := mustCompile(t, daprFixture)
	c := caller("domain1", "ns2", "app4")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				if !p.Decide(c, "op7/c/d/e", "", false).Allowed {
					t.Error("Decide: got deny, want allow")
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestYAMLConfiguration decodes the accessControl section of a full Dapr
// Configuration document and round-trips it.
func TestYAMLConfiguration(t *testing.T) {
	const doc = `
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: allowlistsappconfig
spec:
  tracing:
    samplingRate: "1"
  accessControl:
    defaultAction: deny
    trustDomain: "public"
    policies:
    - appId: "allowlists-caller"
      defaultAction: deny
      trustDomain: 'public'
      namespace: "dapr-tests"
      operations:
      - name: /opAllow
        httpVerb: ['POST', 'GET']
        action: allow
      - name: /opDeny
        httpVerb: ["*"]
        action: deny
`
	var cfg struct {
		Spec struct {
			AccessControl *acl.Spec `yaml:"accessControl"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatalf("yaml.Unmarshal: %v", err)
	}
	want := &acl.Spec{
		DefaultAction: "deny",
		TrustDomain:   "public",
		Policies: []acl.AppPolicy{{
			AppID:         "allowlists-caller",
			DefaultAction: "deny",
			TrustDomain:   "public",
			Namespace:     "dapr-tests",
			Operations: []acl.Operation{
				{Name: "/opAllow", HTTPVerb: []string{"POST", "GET"}, Action: "allow"},
				{Name: "/opDeny", HTTPVerb: []string{"*"}, Action: "deny"},
			},
		}},
	}
	if !reflect.DeepEqual(cfg.Spec.AccessControl, want) {
		t.Fatalf("decoded spec:\n%+v\nwant:\n%+v", cfg.Spec.AccessControl, want)
	}

	out, err := yaml.Marshal(want)
	if err != nil {
		t.Fatalf("yaml.Marshal: %v", err)
	}
	var back acl.Spec
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatalf("yaml.Unmarshal of marshalled spec: %v", err)
	}
	if !reflect.DeepEqual(&back, want) {
		t.Fatalf("round trip:\n%s\ndecoded to %+v, want %+v", out, back, want)
	}
	for _, key := range []string{"defaultAction:", "trustDomain:", "policies:", "appId:", "namespace:", "operations:", "name:", "httpVerb:", "action:"} {
		if !strings.Contains(string(out), key) {
			t.Errorf("marshalled spec lacks %q:\n%s", key, out)
		}
	}

	p := mustCompile(t, string(out))
	c := caller("public", "dapr-tests", "allowlists-caller")
	if d := p.Decide(c, "/opAllow", "GET", true); !d.Allowed {
		t.Errorf("GET /opAllow: got deny (%s), want allow", d.Reason)
	}
	if d := p.Decide(c, "/opDeny", "GET", true); d.Allowed {
		t.Errorf("GET /opDeny: got allow (%s), want deny", d.Reason)
	}
}

func FuzzCompileDecide(f *testing.F) {
	f.Add([]byte(daprFixture), "op7/a/b/c", "POST", "domain1", "ns2", "app4")
	f.Add([]byte("policies: [{appId: a, namespace: n, trustDomain: t, operations: [{name: '/**/*x*/*', action: allow, httpVerb: ['*']}]}]"), "/a//b/x", "get", "t", "n", "a")
	f.Add([]byte("trustDomain: x\npolicies: []"), "", "", "", "", "")
	f.Add([]byte("{}"), "/", "NONE", "public", "default", "app")
	f.Fuzz(func(t *testing.T, doc []byte, operation, verb, td, ns, app string) {
		var nilPolicy *acl.Policy
		for _, isHTTP := range []bool{false, true} {
			if d := nilPolicy.Decide(&acl.Caller{TrustDomain: td, Namespace: ns, AppID: app}, operation, verb, isHTTP); !d.Allowed {
				t.Fatalf("nil policy denied: %+v", d)
			}
		}
		var spec acl.Spec
		if err := yaml.Unmarshal(doc, &spec); err != nil {
			return
		}
		p, err := acl.Compile(&spec)
		if err != nil {
			if p != nil {
				t.Fatalf("Compile returned a policy and error %v", err)
			}
			return
		}
		c := &acl.Caller{TrustDomain: td, Namespace: ns, AppID: app}
		for _, isHTTP := range []bool{false, true} {
			d := p.Decide(c, operation, verb, isHTTP)
			if d.Reason == "" {
				t.Fatalf("empty reason: %+v", d)
			}
			if p == nil && !d.Allowed {
				t.Fatalf("nil policy denied: %+v", d)
			}
			// Without an identity only the global default applies; it does
			// not depend on the operation.
			if anon := p.Decide(nil, operation, verb, isHTTP); anon != p.Decide(nil, "/", "", isHTTP) {
				t.Fatalf("anonymous decision depends on the operation: %+v", anon)
			}
		}
	})
}
