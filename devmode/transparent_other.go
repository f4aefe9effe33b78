//go:build !linux

package devmode

import (
	"context"
	"errors"
)

type appNetns struct{}

func (*appNetns) Path() string                   { return "" }
func (*appNetns) HostsPath() string              { return "" }
func (*appNetns) Command(argv []string) []string { return argv }
func (*appNetns) Remove()                        {}

func makeAppNetns(context.Context, string, string, int, []int) (*appNetns, error) {
	return nil, errors.New("--transparent needs Linux (network namespaces, iptables); without it, apps reach one another through their sidecars' explicit proxy (HTTP_PROXY)")
}

func removeLeftoverNetns() []string { return nil }
