package devmode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// RunFile is a run file: the template of Dapr's multi-app run
// (`dapr run -f`), which `outrigger run -f` reads unchanged. Unknown fields
// are errors; Dapr fields Outrigger has no use for are accepted and reported
// by Resolve as warnings.
type RunFile struct {
	// Version must be 1.
	Version int `yaml:"version"`
	// Name names the run (informational).
	Name string `yaml:"name"`
	// Common holds settings every app takes unless it sets its own.
	Common SharedConfig `yaml:"common"`
	// Apps are the apps to run, each with its sidecar.
	Apps []RunFileApp `yaml:"apps"`
}

// SharedConfig holds the settings an app and the common section share.
// Relative paths in the common section are relative to the run file's
// folder; in an app, to the app's folder.
type SharedConfig struct {
	ConfigFilePath         string            `yaml:"configFilePath"`
	AppProtocol            string            `yaml:"appProtocol"`
	APIListenAddresses     string            `yaml:"apiListenAddresses"`
	EnableProfiling        bool              `yaml:"enableProfiling"`
	LogLevel               string            `yaml:"logLevel"`
	AppMaxConcurrency      int               `yaml:"appMaxConcurrency"`
	PlacementHostAddress   *string           `yaml:"placementHostAddress"`
	SchedulerHostAddress   *string           `yaml:"schedulerHostAddress"`
	ResourcesPath          string            `yaml:"resourcesPath"`
	ResourcesPaths         []string          `yaml:"resourcesPaths"`
	AppSSL                 bool              `yaml:"appSSL"`
	MaxBodySize            string            `yaml:"maxBodySize"`
	ReadBufferSize         string            `yaml:"readBufferSize"`
	DaprHTTPMaxRequestSize int               `yaml:"daprHTTPMaxRequestSize"`
	DaprHTTPReadBufferSize int               `yaml:"daprHTTPReadBufferSize"`
	EnableAppHealthCheck   bool              `yaml:"enableAppHealthCheck"`
	AppHealthCheckPath     string            `yaml:"appHealthCheckPath"`
	AppHealthProbeInterval int               `yaml:"appHealthProbeInterval"`
	AppHealthProbeTimeout  int               `yaml:"appHealthProbeTimeout"`
	AppHealthThreshold     int               `yaml:"appHealthThreshold"`
	EnableAPILogging       bool              `yaml:"enableApiLogging"`
	RuntimePath            string            `yaml:"runtimePath"`
	Env                    map[string]string `yaml:"env"`
	DaprdLogDestination    string            `yaml:"daprdLogDestination"`
	AppLogDestination      string            `yaml:"appLogDestination"`
}

// RunFileApp is one app of a run file.
type RunFileApp struct {
	SharedConfig `yaml:",inline"`

	// AppID is the app's id (default: the base name of AppDirPath).
	AppID string `yaml:"appID"`
	// AppDirPath is the app's folder, relative to the run file (required);
	// its command runs there.
	AppDirPath           string `yaml:"appDirPath"`
	AppChannelAddress    string `yaml:"appChannelAddress"`
	AppPort              int    `yaml:"appPort"`
	DaprHTTPPort         int    `yaml:"daprHTTPPort"`
	DaprGRPCPort         int    `yaml:"daprGRPCPort"`
	DaprInternalGRPCPort int    `yaml:"daprInternalGRPCPort"`
	MetricsPort          int    `yaml:"metricsPort"`
	ProfilePort          int    `yaml:"profilePort"`
	UnixDomainSocket     string `yaml:"unixDomainSocket"`
	// Command is the app's command line; empty runs the sidecar alone.
	Command []string `yaml:"command"`

	// Kubernetes-only fields of Dapr's template (`dapr run -k`).
	ContainerImage           string `yaml:"containerImage"`
	ContainerImagePullPolicy string `yaml:"containerImagePullPolicy"`
	CreateService            bool   `yaml:"createService"`
}

// RunFileError is a mistake in a run file, located by line and field.
type RunFileError struct {
	// File is the run file's path ("" when parsed from bytes).
	File string
	// Line is the 1-based line of the mistake (0 when unknown).
	Line int
	// Field is the field's path, e.g. apps[1].appPort ("" for the file).
	Field string
	// Msg says what is wrong.
	Msg string
}

func (e *RunFileError) Error() string {
	var b strings.Builder
	b.WriteString("run file")
	if e.File != "" {
		b.WriteString(" " + e.File)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ": line %d", e.Line)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// Known field names, from the yaml tags of the types above.
var (
	topKeys    = yamlKeys(reflect.TypeFor[RunFile]())
	sharedKeys = yamlKeys(reflect.TypeFor[SharedConfig]())
	appKeys    = yamlKeys(reflect.TypeFor[RunFileApp]())
)

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			keys = append(keys, yamlKeys(f.Type)...)
			continue
		}
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	sort.Strings(keys)
	return keys
}

// ParseRunFile parses and checks a run file's content. It reads nothing
// else: paths are checked and resolved by Resolve. Every error is a
// *RunFileError.
func ParseRunFile(data []byte) (*RunFile, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &RunFileError{Msg: "the file is empty; want version: 1 and a list of apps"}
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &RunFileError{Line: extra.Line, Msg: "more than one YAML document; want one"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, &RunFileError{Line: root.Line, Msg: "want a mapping with version and apps at the top"}
	}
	lines := map[string]int{}
	if err := checkKeys(root, "", topKeys, lines, false); err != nil {
		return nil, err
	}
	if c := mapValue(root, "common"); c != nil {
		if err := checkKeys(c, "common", sharedKeys, lines, true); err != nil {
			return nil, err
		}
	}
	if a := mapValue(root, "apps"); a != nil && a.Kind == yaml.SequenceNode {
		for i, app := range a.Content {
			if err := checkKeys(app, fmt.Sprintf("apps[%d]", i), appKeys, lines, false); err != nil {
				return nil, err
			}
		}
	}
	var rf RunFile
	if err := root.Decode(&rf); err != nil {
		return nil, yamlError(err)
	}
	if err := rf.validate(lines); err != nil {
		return nil, err
	}
	return &rf, nil
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// checkKeys reports the first key of mapping n that is not in known, and
// records the line of every key under path. A null n passes when nullOK.
func checkKeys(n *yaml.Node, path string, known []string, lines map[string]int, nullOK bool) error {
	if n.Kind == yaml.AliasNode {
		return nil // decoded (and bounded) by yaml; checked where it is defined
	}
	if n.Kind != yaml.MappingNode {
		if n.Tag == "!!null" && nullOK {
			return nil
		}
		return &RunFileError{Line: n.Line, Field: path, Msg: "want a mapping of fields"}
	}
	if path != "" {
		lines[path] = n.Line
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Value == "<<" { // YAML merge key
			continue
		}
		field := k.Value
		if path != "" {
			field = path + "." + k.Value
		}
		lines[field] = k.Line
		if idx := sort.SearchStrings(known, k.Value); idx < len(known) && known[idx] == k.Value {
			continue
		}
		msg := fmt.Sprintf("unknown field %q", k.Value)
		if s := suggest(k.Value, known); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		where := path
		if where == "" {
			where = "top level"
		}
		return &RunFileError{Line: k.Line, Field: where, Msg: msg}
	}
	return nil
}

// suggest returns the known field closest to s, if one is close.
func suggest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if strings.EqualFold(k, s) {
			return k
		}
		if d := editDistance(strings.ToLower(s), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// yamlError turns a yaml error into a RunFileError on one line.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		line := 0
		for i, m := range te.Errors {
			if rest, ok := strings.CutPrefix(m, "line "); ok {
				if n, after, ok := strings.Cut(rest, ": "); ok {
					if v, err := strconv.Atoi(n); err == nil {
						if line == 0 {
							line = v
						}
						if i == 0 {
							m = after
						}
					}
				}
			}
			msgs[i] = m
		}
		return &RunFileError{Line: line, Msg: strings.Join(msgs, "; ")}
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if v, err := strconv.Atoi(n); err == nil {
				line, msg = v, after
			}
		}
	}
	return &RunFileError{Line: line, Msg: msg}
}

var (
	appProtocols     = []string{"http", "h2c", "grpc"}
	logDestinations  = []string{"console", "file", "fileAndConsole"}
	pullPolicies     = []string{"Always", "Never", "IfNotPresent"}
	logLevels        = []string{"debug", "info", "warn", "warning", "error", "fatal"}
	unsupportedProto = map[string]string{"https": "TLS towards the app", "grpcs": "TLS towards the app"}
)

func oneOf(v string, allowed []string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

// validate checks what needs no file system, and fills in app ids.
func (rf *RunFile) validate(lines map[string]int) error {
	fail := func(field, format string, args ...any) error {
		return &RunFileError{Line: lines[field], Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case rf.Version == 0 && lines["version"] == 0:
		return fail("", "version is missing; want version: 1")
	case rf.Version != 1:
		return fail("version", "%d: want 1", rf.Version)
	}
	if len(rf.Apps) == 0 {
		return fail("apps", "no apps; want at least one, each with appDirPath")
	}
	if err := rf.Common.validate("common", lines); err != nil {
		return err
	}
	seen := map[string]int{}
	for i := range rf.Apps {
		a := &rf.Apps[i]
		p := fmt.Sprintf("apps[%d]", i)
		if strings.TrimSpace(a.AppDirPath) == "" {
			return &RunFileError{Line: lines[p], Field: p, Msg: "appDirPath is required"}
		}
		if a.AppID == "" {
			a.AppID = filepath.Base(filepath.Clean(a.AppDirPath))
			if a.AppID == "." || a.AppID == string(filepath.Separator) || a.AppID == ".." {
				return fail(p+".appDirPath", "%q gives no app id: set appID", a.AppDirPath)
			}
		}
		if strings.ContainsFunc(a.AppID, func(r rune) bool { return r <= ' ' || r == '/' || r == 0x7f }) {
			return fail(p+".appID", "%q: must not hold spaces, control characters or '/'", a.AppID)
		}
		if j, dup := seen[a.AppID]; dup {
			return fail(p+".appID", "%q is also the id of apps[%d]; app ids must differ", a.AppID, j)
		}
		seen[a.AppID] = i
		for _, port := range []struct {
			name string
			v    int
		}{
			{"appPort", a.AppPort}, {"daprHTTPPort", a.DaprHTTPPort}, {"daprGRPCPort", a.DaprGRPCPort},
			{"daprInternalGRPCPort", a.DaprInternalGRPCPort}, {"metricsPort", a.MetricsPort}, {"profilePort", a.ProfilePort},
		} {
			if port.v < 0 || port.v > 65535 {
				return fail(p+"."+port.name, "%d: want a port from 1 to 65535 (or leave it out)", port.v)
			}
		}
		for j, arg := range a.Command {
			if j == 0 && strings.TrimSpace(arg) == "" {
				return fail(p+".command", "the program (first element) is empty")
			}
			if strings.ContainsRune(arg, 0) {
				return fail(p+".command", "element %d holds a NUL character", j)
			}
		}
		if a.ContainerImagePullPolicy != "" && !oneOf(a.ContainerImagePullPolicy, pullPolicies) {
			return fail(p+".containerImagePullPolicy", "%q: want one of %s", a.ContainerImagePullPolicy, strings.Join(pullPolicies, ", "))
		}
		if err := a.SharedConfig.validate(p, lines); err != nil {
			return err
		}
	}
	return nil
}

func (s *SharedConfig) validate(p string, lines map[string]int) error {
	fail := func(field, format string, args ...any) error {
		return &RunFileError{Line: lines[p+"."+field], Field: p + "." + field, Msg: fmt.Sprintf(format, args...)}
	}
	if s.AppProtocol != "" && !oneOf(strings.ToLower(s.AppProtocol), appProtocols) {
		if what, ok := unsupportedProto[strings.ToLower(s.AppProtocol)]; ok {
			return fail("appProtocol", "%q: %s is not supported yet; want http, h2c or grpc", s.AppProtocol, what)
		}
		return fail("appProtocol", "%q: want http, h2c or grpc", s.AppProtocol)
	}
	if s.LogLevel != "" && !oneOf(strings.ToLower(s.LogLevel), logLevels) {
		return fail("logLevel", "%q: want debug, info, warn or error", s.LogLevel)
	}
	if s.AppMaxConcurrency < -1 {
		return fail("appMaxConcurrency", "%d: want -1 (unlimited) or a positive number", s.AppMaxConcurrency)
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"daprHTTPMaxRequestSize", s.DaprHTTPMaxRequestSize}, {"daprHTTPReadBufferSize", s.DaprHTTPReadBufferSize},
		{"appHealthProbeInterval", s.AppHealthProbeInterval}, {"appHealthProbeTimeout", s.AppHealthProbeTimeout},
		{"appHealthThreshold", s.AppHealthThreshold},
	} {
		if f.v < -1 {
			return fail(f.name, "%d: must not be negative", f.v)
		}
	}
	for _, d := range []struct{ name, v string }{{"daprdLogDestination", s.DaprdLogDestination}, {"appLogDestination", s.AppLogDestination}} {
		if d.v != "" && !oneOf(d.v, logDestinations) {
			return fail(d.name, "%q: want console, file or fileAndConsole", d.v)
		}
	}
	for i, rp := range s.ResourcesPaths {
		if strings.TrimSpace(rp) == "" {
			return fail("resourcesPaths", "element %d is empty", i)
		}
	}
	for k := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fail("env", "%q: not a valid environment variable name", k)
		}
	}
	for k, v := range s.Env {
		if strings.ContainsRune(v, 0) {
			return fail("env", "%s: the value holds a NUL character", k)
		}
	}
	return nil
}

// RunApp is one app of a resolved run file: what to start and the flags of
// its sidecar.
type RunApp struct {
	// AppID is the app's id.
	AppID string
	// Dir is the app's folder (absolute); its command runs there.
	Dir string
	// Command is the app's command line; empty runs the sidecar alone.
	Command []string
	// Env is the app's own environment (KEY=VALUE, sorted): the common
	// section's, overridden by the app's.
	Env []string
	// SidecarArgs are `outrigger sidecar` (daprd) flags for its sidecar.
	SidecarArgs []string
	// Warnings name fields that were accepted but have no effect.
	Warnings []string
}

// LoadRunFile reads, parses and resolves the run file at path.
func LoadRunFile(path string) ([]RunApp, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("run file: %w", err)
	}
	rf, err := ParseRunFile(data)
	if err != nil {
		var rfe *RunFileError
		if errors.As(err, &rfe) {
			rfe.File = path
		}
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("run file %s: %w", path, err)
	}
	apps, err := rf.Resolve(filepath.Dir(abs))
	if err != nil {
		var rfe *RunFileError
		if errors.As(err, &rfe) {
			rfe.File = path
		}
		return nil, err
	}
	return apps, nil
}

// Resolve merges the common section into every app, resolves and checks
// paths (the common section's relative to baseDir, an app's relative to its
// folder), and returns the apps to run. As in Dapr, an app without resources
// paths takes <appDirPath>/.dapr/resources when it exists, else the common
// ones; an app without a config file takes <appDirPath>/.dapr/config.yaml
// when it exists, else the common one.
func (rf *RunFile) Resolve(baseDir string) ([]RunApp, error) {
	common := rf.Common
	fail := func(field, format string, args ...any) error {
		return &RunFileError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	var err error
	if common.ResourcesPath != "" {
		common.ResourcesPaths = append(append([]string(nil), common.ResourcesPaths...), common.ResourcesPath)
	}
	for i, p := range common.ResourcesPaths {
		if common.ResourcesPaths[i], err = resolvePath(baseDir, p, true); err != nil {
			return nil, fail("common.resourcesPaths", "%v", err)
		}
	}
	if common.ConfigFilePath != "" {
		if common.ConfigFilePath, err = resolvePath(baseDir, common.ConfigFilePath, false); err != nil {
			return nil, fail("common.configFilePath", "%v", err)
		}
	}

	apps := make([]RunApp, 0, len(rf.Apps))
	for i, a := range rf.Apps {
		p := fmt.Sprintf("apps[%d]", i)
		dir, err := resolvePath(baseDir, a.AppDirPath, true)
		if err != nil {
			return nil, fail(p+".appDirPath", "%v", err)
		}
		s := a.SharedConfig
		if s.ResourcesPath != "" {
			s.ResourcesPaths = append(append([]string(nil), s.ResourcesPaths...), s.ResourcesPath)
		}
		for j, rp := range s.ResourcesPaths {
			if s.ResourcesPaths[j], err = resolvePath(dir, rp, true); err != nil {
				return nil, fail(p+".resourcesPaths", "%v", err)
			}
		}
		if len(s.ResourcesPaths) == 0 {
			if local := filepath.Join(dir, ".dapr", "resources"); dirExists(local) {
				s.ResourcesPaths = []string{local}
			} else {
				s.ResourcesPaths = common.ResourcesPaths
			}
		}
		if s.ConfigFilePath != "" {
			if s.ConfigFilePath, err = resolvePath(dir, s.ConfigFilePath, false); err != nil {
				return nil, fail(p+".configFilePath", "%v", err)
			}
		} else if local := filepath.Join(dir, ".dapr", "config.yaml"); fileExists(local) {
			s.ConfigFilePath = local
		}
		merged := merge(s, common)
		a.SharedConfig = merged
		apps = append(apps, RunApp{
			AppID:       a.AppID,
			Dir:         dir,
			Command:     a.Command,
			Env:         envList(merged.Env),
			SidecarArgs: a.sidecarArgs(),
			Warnings:    a.warnings(),
		})
	}
	return apps, nil
}

// resolvePath makes p absolute against base (expanding a leading ~/) and
// checks that it exists, as a folder when dir is set.
func resolvePath(base, p string, dir bool) (string, error) {
	if rest, ok := strings.CutPrefix(p, "~/"); ok || p == "~" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		p = filepath.Join(home, rest)
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%s does not exist", p)
	case err != nil:
		return "", err
	case dir && !fi.IsDir():
		return "", fmt.Errorf("%s is not a folder", p)
	case !dir && fi.IsDir():
		return "", fmt.Errorf("%s is a folder; want a file", p)
	}
	return p, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// merge fills the fields s leaves unset from common, as Dapr does; env
// variables merge key by key, the app's winning.
func merge(s, common SharedConfig) SharedConfig {
	str := func(v *string, c string) {
		if *v == "" {
			*v = c
		}
	}
	num := func(v *int, c int) {
		if *v == 0 {
			*v = c
		}
	}
	flag := func(v *bool, c bool) { *v = *v || c }
	str(&s.ConfigFilePath, common.ConfigFilePath)
	str(&s.AppProtocol, common.AppProtocol)
	str(&s.APIListenAddresses, common.APIListenAddresses)
	flag(&s.EnableProfiling, common.EnableProfiling)
	str(&s.LogLevel, common.LogLevel)
	num(&s.AppMaxConcurrency, common.AppMaxConcurrency)
	if s.PlacementHostAddress == nil {
		s.PlacementHostAddress = common.PlacementHostAddress
	}
	if s.SchedulerHostAddress == nil {
		s.SchedulerHostAddress = common.SchedulerHostAddress
	}
	flag(&s.AppSSL, common.AppSSL)
	str(&s.MaxBodySize, common.MaxBodySize)
	str(&s.ReadBufferSize, common.ReadBufferSize)
	num(&s.DaprHTTPMaxRequestSize, common.DaprHTTPMaxRequestSize)
	num(&s.DaprHTTPReadBufferSize, common.DaprHTTPReadBufferSize)
	flag(&s.EnableAppHealthCheck, common.EnableAppHealthCheck)
	str(&s.AppHealthCheckPath, common.AppHealthCheckPath)
	num(&s.AppHealthProbeInterval, common.AppHealthProbeInterval)
	num(&s.AppHealthProbeTimeout, common.AppHealthProbeTimeout)
	num(&s.AppHealthThreshold, common.AppHealthThreshold)
	flag(&s.EnableAPILogging, common.EnableAPILogging)
	str(&s.RuntimePath, common.RuntimePath)
	str(&s.DaprdLogDestination, common.DaprdLogDestination)
	str(&s.AppLogDestination, common.AppLogDestination)
	env := map[string]string{}
	for k, v := range common.Env {
		env[k] = v
	}
	for k, v := range s.Env {
		env[k] = v
	}
	s.Env = env
	return s
}

func envList(m map[string]string) []string {
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// sidecarArgs turns a merged app into daprd flags, as the Dapr CLI does.
func (a *RunFileApp) sidecarArgs() []string {
	args := []string{"--app-id=" + a.AppID}
	str := func(name, v string) {
		if v != "" {
			args = append(args, "--"+name+"="+v)
		}
	}
	num := func(name string, v int) {
		if v > 0 {
			args = append(args, "--"+name+"="+strconv.Itoa(v))
		}
	}
	flag := func(name string, v bool) {
		if v {
			args = append(args, "--"+name+"=true")
		}
	}
	num("app-port", a.AppPort)
	str("app-protocol", strings.ToLower(a.AppProtocol))
	str("app-channel-address", a.AppChannelAddress)
	num("dapr-http-port", a.DaprHTTPPort)
	num("dapr-grpc-port", a.DaprGRPCPort)
	num("dapr-internal-grpc-port", a.DaprInternalGRPCPort)
	num("metrics-port", a.MetricsPort)
	for _, rp := range a.ResourcesPaths {
		str("resources-path", rp)
	}
	str("config", a.ConfigFilePath)
	str("log-level", strings.ToLower(a.LogLevel))
	if a.AppMaxConcurrency > 0 {
		num("app-max-concurrency", a.AppMaxConcurrency)
	}
	str("max-body-size", a.MaxBodySize)
	str("read-buffer-size", a.ReadBufferSize)
	num("dapr-http-max-request-size", a.DaprHTTPMaxRequestSize)
	num("dapr-http-read-buffer-size", a.DaprHTTPReadBufferSize)
	flag("enable-app-health-check", a.EnableAppHealthCheck)
	str("app-health-check-path", a.AppHealthCheckPath)
	num("app-health-probe-interval", a.AppHealthProbeInterval)
	num("app-health-probe-timeout", a.AppHealthProbeTimeout)
	num("app-health-threshold", a.AppHealthThreshold)
	flag("enable-api-logging", a.EnableAPILogging)
	// daprd flags the sidecar accepts and warns about.
	flag("enable-profiling", a.EnableProfiling)
	num("profile-port", a.ProfilePort)
	if a.PlacementHostAddress != nil {
		str("placement-host-address", *a.PlacementHostAddress)
	}
	if a.SchedulerHostAddress != nil {
		str("scheduler-host-address", *a.SchedulerHostAddress)
	}
	flag("app-ssl", a.AppSSL)
	str("unix-domain-socket", a.UnixDomainSocket)
	str("dapr-listen-addresses", a.APIListenAddresses)
	return args
}

// warnings names the fields of a merged app that have no effect here.
func (a *RunFileApp) warnings() []string {
	var w []string
	if a.RuntimePath != "" {
		w = append(w, "runtimePath is ignored: the sidecar runs inside outrigger")
	}
	if a.DaprdLogDestination != "" && a.DaprdLogDestination != "console" {
		w = append(w, fmt.Sprintf("daprdLogDestination %q is ignored: sidecar logs go to the console", a.DaprdLogDestination))
	}
	if a.AppLogDestination != "" && a.AppLogDestination != "console" {
		w = append(w, fmt.Sprintf("appLogDestination %q is ignored: app logs go to the console", a.AppLogDestination))
	}
	if a.ContainerImage != "" || a.ContainerImagePullPolicy != "" || a.CreateService {
		w = append(w, "containerImage, containerImagePullPolicy and createService are for Kubernetes and ignored")
	}
	return w
}
