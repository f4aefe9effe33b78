package config

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDebounce is how long a watch waits after a change before reading:
// editors write a file in several steps.
const watchDebounce = 100 * time.Millisecond

// ResourceWatcher keeps the resources of some folders current: it reads
// every file at start and again after each change, and keeps a file's last
// good resources while its new text is invalid.
type ResourceWatcher struct {
	dirs  []string
	files map[string]*Resources // last good, by file
	fw    *fsnotify.Watcher
}

// NewResourceWatcher starts watching dirs and reads them once: a change
// made after it returns is seen by Run. The error joins the problems of the
// files that could not be read (their resources are absent); a watch that
// cannot start is an error with a nil watcher.
func NewResourceWatcher(dirs []string) (*ResourceWatcher, *Resources, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, nil, err
	}
	for _, d := range dirs {
		if err := fw.Add(d); err != nil {
			_ = fw.Close()
			return nil, nil, fmt.Errorf("resources path %s: %w", d, err)
		}
	}
	w := &ResourceWatcher{dirs: dirs, files: map[string]*Resources{}, fw: fw}
	res, err := w.reload()
	return w, res, err
}

// reload reads every file of the folders again; a file that fails keeps
// its last good resources.
func (w *ResourceWatcher) reload() (*Resources, error) {
	var errs []error
	seen := map[string]bool{}
	for _, dir := range w.dirs {
		files, err := ResourceFiles(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			seen[f] = true
			res, err := ReadResourceFile(f)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			w.files[f] = res
		}
	}
	for f := range w.files {
		if !seen[f] {
			delete(w.files, f) // a removed file takes its resources with it
		}
	}
	all := &Resources{}
	for _, dir := range w.dirs {
		files, _ := ResourceFiles(dir)
		for _, f := range files {
			if r, ok := w.files[f]; ok {
				all.Append(r)
			}
		}
	}
	return all, errors.Join(errs...)
}

// Run watches the folders until ctx is done and calls changed with the
// whole set of resources after every change (and the problems of the files
// that keep their last good version).
func (w *ResourceWatcher) Run(ctx context.Context, changed func(*Resources, error)) error {
	fw := w.fw
	defer fw.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if ev.Op != fsnotify.Chmod {
				timer.Reset(watchDebounce)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			changed(nil, err)
		case <-timer.C:
			res, err := w.reload()
			changed(res, err)
		}
	}
}
