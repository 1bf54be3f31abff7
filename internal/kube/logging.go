package kube

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

// LevelFatal is the level of an upstream klog.Fatal record: the component
// is about to exit the process.
const LevelFatal = slog.LevelError + 4

// Logging routes klog, which every upstream component logs through, into
// Strata's slog handler, so that one process writes one log format.
// Upstream components are chatty at info level, so by default only their
// errors pass; verbosity n > 0 shows their warnings and info logs up to klog
// level n-1.
type Logging struct {
	level   *slog.LevelVar
	verbose bool
	handler *upstreamHandler
}

// harmless are upstream error messages that every start or stop prints and
// that say nothing about this cluster (upstream logs them at error level).
var harmless = []string{
	// component-base metrics: logged whenever no label allow-list is set.
	"The manifest file is empty, ignoring.",
	// A first start, before the apiserver has created kube-system.
	"Failed to ensure lease exists, will retry",
	"Error while syncing ConfigMap",
	// kubelet, while it registers its node and its first stats arrive.
	"Error getting the current node from lister",
	"Unable to register mirror pod because node is not registered yet",
	"Failed to get node when trying to set owner ref to the node lease",
	"Eviction manager: failed to get summary stats",
	"Image garbage collection failed once. Stats initialization may not have completed yet",
	"Skipping pod synchronization",
	"Failed to read data from checkpoint",
	"eviction manager: failed to check if we have separate container filesystem. Ignoring.",
	// kubelet without CAP_SYS_RESOURCE (containers, Firecracker VMs): it
	// carries on without raising limits.
	"Failed to set rlimit on max file handles",
	"Failed to ensure process in container with oom score",
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
	l.handler = &upstreamHandler{next: h.WithAttrs([]slog.Attr{slog.String("from", "kube")}), level: l.level}
	// Contextual loggers log through the handler with their levels; the
	// older klog calls arrive as formatted lines whose header carries the
	// severity, which writeKlog parses.
	klog.SetLoggerWithOptions(logr.FromSlogHandler(l.handler), klog.ContextualLogger(true), klog.WriteKlogBuffer(l.writeKlog))
	return l, nil
}

// Quiet mutes upstream logs unless verbose: during an ordered shutdown the
// components report every cancelled request and stopped broadcaster as an
// error, which is expected and only buries what matters. It also stops an
// upstream goroutine that calls klog.Fatal after its API server is gone
// from exiting the process before etcd is closed: that goroutine ends
// instead, and the shutdown carries on.
func (l *Logging) Quiet() {
	klog.OsExit = func(int) { runtime.Goexit() }
	if !l.verbose {
		l.level.Set(LevelFatal + 1)
	}
}

// writeKlog turns one formatted klog line ("E1125 20:43:34.889457 29070
// file.go:97] message") into a record.
func (l *Logging) writeKlog(data []byte) {
	line := string(bytes.TrimRight(data, "\n"))
	level := slog.LevelInfo
	if len(line) > 0 {
		switch line[0] {
		case 'W':
			level = slog.LevelWarn
		case 'E':
			level = slog.LevelError
		case 'F':
			level = LevelFatal
		}
	}
	if !l.handler.Enabled(context.Background(), level) {
		return
	}
	msg, source := line, ""
	if header, rest, ok := strings.Cut(line, "] "); ok && len(header) < 64 {
		msg = rest
		if i := strings.LastIndexByte(header, ' '); i >= 0 {
			source = header[i+1:]
		}
	}
	var kv string
	if strings.HasPrefix(msg, `"`) {
		// A structured call: the quoted message, then key=value pairs.
		if q, err := strconv.QuotedPrefix(msg); err == nil {
			kv = strings.TrimSpace(msg[len(q):])
			msg, _ = strconv.Unquote(q)
		}
	}
	r := slog.NewRecord(time.Now(), level, msg, 0)
	if kv != "" {
		r.AddAttrs(slog.String("details", kv))
	}
	if source != "" {
		r.AddAttrs(slog.String("source", source))
	}
	_ = l.handler.Handle(context.Background(), r)
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
