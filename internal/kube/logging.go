package kube

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strconv"

	"k8s.io/klog/v2"
)

// Logging routes klog, which every upstream component logs through, into
// Strata's slog handler, so that one process writes one log format.
// Upstream components are chatty at info level, so by default only their
// errors pass; verbosity n > 0 shows their info logs up to klog level n-1.
type Logging struct {
	level   *slog.LevelVar
	verbose bool
}

// harmless are upstream error messages that every start or stop prints and
// that say nothing about this cluster (upstream logs them at error level).
var harmless = []string{
	// component-base metrics: logged whenever no label allow-list is set.
	"The manifest file is empty, ignoring.",
}

// ConfigureLogging sets up klog once, before any component starts (setting
// it later races with their loggers).
func ConfigureLogging(h slog.Handler, verbosity int) (*Logging, error) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	if err := fs.Set("v", strconv.Itoa(max(verbosity-1, 0))); err != nil {
		return nil, fmt.Errorf("configure klog: %w", err)
	}
	l := &Logging{level: new(slog.LevelVar), verbose: verbosity > 0}
	l.level.Set(slog.LevelError)
	if verbosity > 0 {
		l.level.Set(slog.LevelInfo - slog.Level(verbosity-1))
	}
	klog.SetSlogLogger(slog.New(&upstreamHandler{next: h.WithAttrs([]slog.Attr{slog.String("from", "kube")}), level: l.level}))
	return l, nil
}

// Quiet mutes upstream logs unless verbose: during an ordered shutdown the
// components report every cancelled request and stopped broadcaster as an
// error, which is expected and only buries what matters.
func (l *Logging) Quiet() {
	if !l.verbose {
		l.level.Set(slog.LevelError + 100)
	}
}

// upstreamHandler filters upstream records by a level that can change.
type upstreamHandler struct {
	next  slog.Handler
	level *slog.LevelVar
}

func (h *upstreamHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

func (h *upstreamHandler) Handle(ctx context.Context, r slog.Record) error {
	// logr passes errors on whatever the level, so filter here too.
	if r.Level < h.level.Level() || slices.Contains(harmless, r.Message) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *upstreamHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &upstreamHandler{next: h.next.WithAttrs(attrs), level: h.level}
}

func (h *upstreamHandler) WithGroup(name string) slog.Handler {
	return &upstreamHandler{next: h.next.WithGroup(name), level: h.level}
}
