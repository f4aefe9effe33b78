package devmode

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseRunFile(t *testing.T) {
	tests := []struct {
		name string
		in   string
		// wantErr is a substring of the error; "" means success.
		wantErr  string
		wantLine int
		check    func(t *testing.T, rf *RunFile)
	}{
		{
			name: "minimal",
			in:   "version: 1\napps:\n  - appDirPath: ./callee\n",
			check: func(t *testing.T, rf *RunFile) {
				if len(rf.Apps) != 1 || rf.Apps[0].AppID != "callee" {
					t.Errorf("apps = %+v; want one with the id taken from its folder", rf.Apps)
				}
			},
		},
		{
			name: "dapr template",
			in: `version: 1
name: hello
common:
  resourcesPath: ./components
  appLogDestination: console
  env:
    DEBUG: true
    PORT: 8080
apps:
  - appID: callee
    appDirPath: ./callee/
    appPort: 6001
    appProtocol: HTTP
    daprHTTPPort: 3501
    command: ["go", "run", "."]
    env:
      DEBUG: "false"
  - appID: caller
    appDirPath: ./caller/
    command: ["go", "run", "."]
    enableApiLogging: true
    placementHostAddress: ""
    containerImage: ghcr.io/x/caller
`,
			check: func(t *testing.T, rf *RunFile) {
				a := rf.Apps[0]
				if a.AppID != "callee" || a.AppPort != 6001 || a.DaprHTTPPort != 3501 || !reflect.DeepEqual(a.Command, []string{"go", "run", "."}) {
					t.Errorf("apps[0] = %+v", a)
				}
				if rf.Common.Env["DEBUG"] != "true" || rf.Common.Env["PORT"] != "8080" {
					t.Errorf("common env = %v; want scalars as strings", rf.Common.Env)
				}
				if p := rf.Apps[1].PlacementHostAddress; p == nil || *p != "" {
					t.Errorf("placementHostAddress = %v; want set to empty", p)
				}
			},
		},
		{name: "empty", in: "", wantErr: "the file is empty"},
		{name: "only a comment", in: "# nothing\n", wantErr: "the file is empty"},
		{name: "not yaml", in: "version: [1\n", wantErr: "did not find expected"},
		{name: "a list at the top", in: "- a\n- b\n", wantErr: "want a mapping with version and apps", wantLine: 1},
		{name: "two documents", in: "version: 1\napps: [{appDirPath: a}]\n---\nversion: 1\n", wantErr: "more than one YAML document", wantLine: 3},
		{name: "no version", in: "apps:\n  - appDirPath: a\n", wantErr: "version is missing"},
		{name: "version 2", in: "version: 2\napps:\n  - appDirPath: a\n", wantErr: "version: 2: want 1", wantLine: 1},
		{name: "version not a number", in: "version: one\napps:\n  - appDirPath: a\n", wantErr: "cannot unmarshal !!str `one` into int", wantLine: 1},
		{name: "no apps", in: "version: 1\n", wantErr: "no apps"},
		{name: "empty apps", in: "version: 1\napps: []\n", wantErr: "no apps", wantLine: 2},
		{name: "apps not a list", in: "version: 1\napps: x\n", wantErr: "cannot unmarshal"},
		{name: "app not a mapping", in: "version: 1\napps:\n  - just-a-name\n", wantErr: "apps[0]: want a mapping of fields", wantLine: 3},
		{name: "unknown top field", in: "version: 1\nappz: []\n", wantErr: `top level: unknown field "appz"; did you mean "apps"?`, wantLine: 2},
		{
			name:     "unknown app field",
			in:       "version: 1\napps:\n  - appDirPath: a\n    comand: [x]\n",
			wantErr:  `apps[0]: unknown field "comand"; did you mean "command"?`,
			wantLine: 4,
		},
		{
			name:     "wrong case",
			in:       "version: 1\napps:\n  - appDirPath: a\n    appId: x\n",
			wantErr:  `unknown field "appId"; did you mean "appID"?`,
			wantLine: 4,
		},
		{
			name:     "unknown common field",
			in:       "version: 1\ncommon:\n  appPort: 1\napps:\n  - appDirPath: a\n",
			wantErr:  `common: unknown field "appPort"`,
			wantLine: 3,
		},
		{name: "far-off field", in: "version: 1\napps:\n  - appDirPath: a\n    zzzzzz: 1\n", wantErr: `unknown field "zzzzzz"`},
		{name: "no appDirPath", in: "version: 1\napps:\n  - appID: x\n", wantErr: "apps[0]: appDirPath is required", wantLine: 3},
		{name: "null app", in: "version: 1\napps:\n  -\n", wantErr: "apps[0]: want a mapping of fields"},
		{name: "null common", in: "version: 1\ncommon:\napps:\n  - appDirPath: a\n"},
		{name: "appDirPath gives no id", in: "version: 1\napps:\n  - appDirPath: .\n", wantErr: "gives no app id: set appID"},
		{name: "duplicate ids", in: "version: 1\napps:\n  - appDirPath: a/x\n  - appDirPath: b/x\n", wantErr: `apps[1].appID: "x" is also the id of apps[0]`},
		{name: "bad app id", in: "version: 1\napps:\n  - appDirPath: a\n    appID: has space\n", wantErr: `apps[0].appID: "has space"`},
		{name: "negative port", in: "version: 1\napps:\n  - appDirPath: a\n    appPort: -1\n", wantErr: "apps[0].appPort: -1: want a port", wantLine: 4},
		{name: "port too big", in: "version: 1\napps:\n  - appDirPath: a\n    daprHTTPPort: 70000\n", wantErr: "apps[0].daprHTTPPort: 70000"},
		{name: "port as text", in: "version: 1\napps:\n  - appDirPath: a\n    appPort: http\n", wantErr: "cannot unmarshal !!str `http` into int", wantLine: 4},
		{name: "command not a list", in: "version: 1\napps:\n  - appDirPath: a\n    command: go run .\n", wantErr: "cannot unmarshal !!str `go run .` into []string"},
		{name: "empty program", in: "version: 1\napps:\n  - appDirPath: a\n    command: [\"\", x]\n", wantErr: "apps[0].command: the program (first element) is empty"},
		{name: "bad protocol", in: "version: 1\napps:\n  - appDirPath: a\n    appProtocol: ftp\n", wantErr: `apps[0].appProtocol: "ftp": want http, h2c or grpc`},
		{name: "https protocol", in: "version: 1\napps:\n  - appDirPath: a\n    appProtocol: https\n", wantErr: "TLS towards the app is not supported yet"},
		{name: "bad common protocol", in: "version: 1\ncommon:\n  appProtocol: ftp\napps:\n  - appDirPath: a\n", wantErr: "common.appProtocol"},
		{name: "bad log level", in: "version: 1\napps:\n  - appDirPath: a\n    logLevel: loud\n", wantErr: `apps[0].logLevel: "loud"`},
		{name: "bad log destination", in: "version: 1\napps:\n  - appDirPath: a\n    appLogDestination: printer\n", wantErr: `apps[0].appLogDestination: "printer"`},
		{name: "bad pull policy", in: "version: 1\napps:\n  - appDirPath: a\n    containerImagePullPolicy: Sometimes\n", wantErr: `"Sometimes": want one of Always, Never, IfNotPresent`},
		{name: "bad concurrency", in: "version: 1\napps:\n  - appDirPath: a\n    appMaxConcurrency: -5\n", wantErr: "apps[0].appMaxConcurrency: -5"},
		{name: "bad env name", in: "version: 1\napps:\n  - appDirPath: a\n    env:\n      \"A=B\": x\n", wantErr: `apps[0].env: "A=B"`},
		{name: "env not a mapping", in: "version: 1\napps:\n  - appDirPath: a\n    env: [A]\n", wantErr: "cannot unmarshal !!seq into map[string]string"},
		{name: "empty resources path", in: "version: 1\napps:\n  - appDirPath: a\n    resourcesPaths: [\"\"]\n", wantErr: "apps[0].resourcesPaths: element 0 is empty"},
		{name: "duplicate key", in: "version: 1\nversion: 1\napps:\n  - appDirPath: a\n", wantErr: `mapping key "version" already defined`},
		{
			name: "merge key",
			in:   "version: 1\ncommon: &c\n  logLevel: debug\napps:\n  - appDirPath: a\n    <<: *c\n",
			check: func(t *testing.T, rf *RunFile) {
				if rf.Apps[0].LogLevel != "debug" {
					t.Errorf("merged logLevel = %q; want debug", rf.Apps[0].LogLevel)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rf, err := ParseRunFile([]byte(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseRunFile: %v", err)
				}
				if tt.check != nil {
					tt.check(t, rf)
				}
				return
			}
			var rfe *RunFileError
			if !errors.As(err, &rfe) {
				t.Fatalf("ParseRunFile = %v; want a *RunFileError containing %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q; want it to contain %q", err, tt.wantErr)
			}
			if tt.wantLine != 0 && rfe.Line != tt.wantLine {
				t.Errorf("error %q is at line %d; want line %d", err, rfe.Line, tt.wantLine)
			}
		})
	}
}

// writeTree writes files (path → content; a path ending in / is a folder)
// under a new temporary folder and returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestLoadRunFile(t *testing.T) {
	root := writeTree(t, map[string]string{
		"run.yaml": `version: 1
common:
  resourcesPaths: [./shared-components]
  configFilePath: ./config.yaml
  logLevel: debug
  maxBodySize: 16Mi
  env:
    SHARED: common
    OVERRIDE: common
apps:
  - appID: callee
    appDirPath: ./callee
    appPort: 6001
    command: ["go", "run", "."]
    env:
      OVERRIDE: app
  - appDirPath: ./caller
    command: ["./caller", "--loop"]
    resourcesPaths: [./mine]
    daprHTTPPort: 3510
    enableApiLogging: true
    appMaxConcurrency: 4
    runtimePath: /opt/dapr
  - appDirPath: ./withlocal
`,
		"config.yaml":                         "kind: Configuration\n",
		"shared-components/":                  "",
		"callee/main.go":                      "package main\n",
		"caller/mine/":                        "",
		"withlocal/.dapr/resources/":          "",
		"withlocal/.dapr/config.yaml":         "kind: Configuration\n",
		"withlocal/.dapr/resources/state.yml": "kind: Component\n",
	})
	apps, err := LoadRunFile(filepath.Join(root, "run.yaml"))
	if err != nil {
		t.Fatalf("LoadRunFile: %v", err)
	}
	if len(apps) != 3 {
		t.Fatalf("%d apps; want 3", len(apps))
	}
	callee, caller, local := apps[0], apps[1], apps[2]

	if callee.AppID != "callee" || callee.Dir != filepath.Join(root, "callee") {
		t.Errorf("callee = %+v", callee)
	}
	if want := []string{"OVERRIDE=app", "SHARED=common"}; !reflect.DeepEqual(callee.Env, want) {
		t.Errorf("callee env = %v; want %v", callee.Env, want)
	}
	wantArgs := []string{
		"--app-id=callee", "--app-port=6001",
		"--resources-path=" + filepath.Join(root, "shared-components"),
		"--config=" + filepath.Join(root, "config.yaml"),
		"--log-level=debug", "--max-body-size=16Mi",
	}
	if !reflect.DeepEqual(callee.SidecarArgs, wantArgs) {
		t.Errorf("callee sidecar args =\n%q\nwant\n%q", callee.SidecarArgs, wantArgs)
	}

	if caller.AppID != "caller" || !reflect.DeepEqual(caller.Command, []string{"./caller", "--loop"}) {
		t.Errorf("caller = %+v", caller)
	}
	wantArgs = []string{
		"--app-id=caller", "--dapr-http-port=3510",
		"--resources-path=" + filepath.Join(root, "caller", "mine"), // relative to the app's folder
		"--config=" + filepath.Join(root, "config.yaml"),
		"--log-level=debug", "--app-max-concurrency=4", "--max-body-size=16Mi", "--enable-api-logging=true",
	}
	if !reflect.DeepEqual(caller.SidecarArgs, wantArgs) {
		t.Errorf("caller sidecar args =\n%q\nwant\n%q", caller.SidecarArgs, wantArgs)
	}
	if len(caller.Warnings) != 1 || !strings.Contains(caller.Warnings[0], "runtimePath") {
		t.Errorf("caller warnings = %q; want one about runtimePath", caller.Warnings)
	}

	// An app's own .dapr folder wins over the common section.
	for _, want := range []string{
		"--resources-path=" + filepath.Join(root, "withlocal", ".dapr", "resources"),
		"--config=" + filepath.Join(root, "withlocal", ".dapr", "config.yaml"),
	} {
		if !contains(local.SidecarArgs, want) {
			t.Errorf("withlocal sidecar args %q lack %q", local.SidecarArgs, want)
		}
	}
	if contains(local.SidecarArgs, "--resources-path="+filepath.Join(root, "shared-components")) {
		t.Errorf("withlocal took the common resources path too: %q", local.SidecarArgs)
	}
	if len(local.Command) != 0 {
		t.Errorf("withlocal command = %q; want none (sidecar alone)", local.Command)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestLoadRunFileErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"missing app folder", map[string]string{"run.yaml": "version: 1\napps:\n  - appDirPath: ./nope\n"}, "apps[0].appDirPath: " + "%ROOT%/nope does not exist"},
		{"app folder is a file", map[string]string{"run.yaml": "version: 1\napps:\n  - appDirPath: ./f\n", "f": "x"}, "%ROOT%/f is not a folder"},
		{"missing resources", map[string]string{"run.yaml": "version: 1\napps:\n  - appDirPath: ./a\n    resourcesPath: ./gone\n", "a/": ""}, "apps[0].resourcesPaths: %ROOT%/a/gone does not exist"},
		{"missing common resources", map[string]string{"run.yaml": "version: 1\ncommon:\n  resourcesPaths: [./gone]\napps:\n  - appDirPath: ./a\n", "a/": ""}, "common.resourcesPaths: %ROOT%/gone does not exist"},
		{"config is a folder", map[string]string{"run.yaml": "version: 1\napps:\n  - appDirPath: ./a\n    configFilePath: .\n", "a/": ""}, "apps[0].configFilePath: %ROOT%/a is a folder"},
		{"parse error names the file", map[string]string{"run.yaml": "version: 1\napps:\n  - appDirPath: ./a\n    bogus: 1\n"}, "run file %ROOT%/run.yaml: line 4: apps[0]: unknown field \"bogus\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := writeTree(t, tt.files)
			_, err := LoadRunFile(filepath.Join(root, "run.yaml"))
			want := strings.ReplaceAll(tt.want, "%ROOT%", root)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("LoadRunFile = %v; want an error containing %q", err, want)
			}
		})
	}
	if _, err := LoadRunFile(filepath.Join(t.TempDir(), "absent.yaml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("LoadRunFile of a missing file = %v", err)
	}
}

// FuzzRunFile checks that no input makes the parser panic, and that what it
// accepts holds its promises.
func FuzzRunFile(f *testing.F) {
	for _, seed := range []string{
		"version: 1\napps:\n  - appDirPath: ./callee\n    appPort: 6001\n    command: [go, run, .]\n",
		"version: 1\ncommon:\n  env: {A: b}\n  resourcesPaths: [x]\napps:\n  - appID: a\n    appDirPath: a\n  - appDirPath: b\n",
		"version: 1\ncommon: &c\n  logLevel: debug\napps:\n  - appDirPath: a\n    <<: *c\n",
		"a: &a [*a, *a]\n",
		"version: 1\napps:\n  - appDirPath: a\n    placementHostAddress: ''\n",
		"- x\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rf, err := ParseRunFile(data)
		if err != nil {
			var rfe *RunFileError
			if !errors.As(err, &rfe) {
				t.Fatalf("error %v (%T) is not a *RunFileError", err, err)
			}
			return
		}
		if rf.Version != 1 || len(rf.Apps) == 0 {
			t.Fatalf("accepted version %d with %d apps", rf.Version, len(rf.Apps))
		}
		ids := map[string]bool{}
		for i := range rf.Apps {
			a := &rf.Apps[i]
			if a.AppID == "" || ids[a.AppID] || a.AppDirPath == "" {
				t.Fatalf("accepted app %d with id %q, dir %q", i, a.AppID, a.AppDirPath)
			}
			ids[a.AppID] = true
			args := a.sidecarArgs()
			if len(args) == 0 || args[0] != "--app-id="+a.AppID {
				t.Fatalf("sidecar args %q do not start with the app id", args)
			}
			for _, arg := range args {
				if !strings.HasPrefix(arg, "--") || !strings.Contains(arg, "=") {
					t.Fatalf("malformed sidecar arg %q", arg)
				}
			}
			_ = a.warnings()
			_ = envList(merge(a.SharedConfig, rf.Common).Env)
		}
	})
}
