// Package qmp is a small client for the QEMU Machine Protocol: it connects
// to a QEMU's QMP unix socket, negotiates capabilities, executes commands
// with JSON arguments and delivers QEMU's asynchronous events on a channel.
// The VM launcher controls QEMU through it; nothing shells out to tools.
//
// The protocol: QEMU greets with {"QMP": {...}}, the client answers
// {"execute": "qmp_capabilities"}, then each {"execute": ..., "id": ...}
// gets one {"return": ...} or {"error": {"class", "desc"}} carrying the same
// id, while {"event": ...} messages arrive at any time.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// Error is a command's failure as QEMU reports it.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return fmt.Sprintf("qmp: %s: %s", e.Class, e.Desc) }

// ErrClosed is returned for commands on a connection that has ended
// (closed by Close, or by QEMU exiting).
var ErrClosed = errors.New("qmp: connection closed")

// Event is one asynchronous QMP event, such as SHUTDOWN, STOP or RESUME.
type Event struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data,omitempty"`
	// Time is when QEMU emitted it.
	Time time.Time `json:"-"`
}

// Version is QEMU's version from the greeting.
type Version struct {
	Major, Minor, Micro int
	Package             string
}

// message is any message QEMU sends.
type message struct {
	QMP *struct {
		Version struct {
			QEMU struct {
				Major int `json:"major"`
				Minor int `json:"minor"`
				Micro int `json:"micro"`
			} `json:"qemu"`
			Package string `json:"package"`
		} `json:"version"`
	} `json:"QMP"`
	Return    json.RawMessage `json:"return"`
	Error     *Error          `json:"error"`
	ID        json.RawMessage `json:"id"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

type command struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        string `json:"id"`
}

type reply struct {
	ret json.RawMessage
	err error
}

// Client is one QMP connection. Its methods are safe for concurrent use.
type Client struct {
	conn    net.Conn
	version Version
	events  chan Event

	writeMu sync.Mutex
	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan reply
	closed  bool
	done    chan struct{}
	// dropped counts events discarded because nobody read Events.
	dropped uint64
}

// eventBuffer is how many events wait for a reader before new ones are
// dropped: a stalled reader must not stall command replies.
const eventBuffer = 128

// Dial connects to the QMP socket at path and negotiates capabilities. ctx
// bounds the connection and the handshake; the connection outlives it.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp: dial %s: %w", path, err)
	}
	c, err := newClient(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// newClient runs the handshake on conn and starts reading it.
func newClient(ctx context.Context, conn net.Conn) (*Client, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// The handshake ends early when ctx is cancelled without a deadline.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	r := bufio.NewReader(conn)
	var greeting message
	if err := readMessage(r, &greeting); err != nil {
		return nil, fmt.Errorf("qmp: greeting: %w", ctxErr(ctx, err))
	}
	if greeting.QMP == nil {
		return nil, fmt.Errorf("qmp: greeting: not a QMP greeting")
	}
	c := &Client{
		conn:    conn,
		events:  make(chan Event, eventBuffer),
		pending: map[string]chan reply{},
		done:    make(chan struct{}),
	}
	v := greeting.QMP.Version
	c.version = Version{Major: v.QEMU.Major, Minor: v.QEMU.Minor, Micro: v.QEMU.Micro, Package: v.Package}

	if err := writeJSON(conn, command{Execute: "qmp_capabilities", ID: "caps"}); err != nil {
		return nil, fmt.Errorf("qmp: capabilities: %w", ctxErr(ctx, err))
	}
	for {
		var m message
		if err := readMessage(r, &m); err != nil {
			return nil, fmt.Errorf("qmp: capabilities: %w", ctxErr(ctx, err))
		}
		if m.Event != "" {
			c.deliver(m)
			continue
		}
		if m.Error != nil {
			return nil, fmt.Errorf("qmp: capabilities: %w", m.Error)
		}
		break
	}
	if !stop() {
		return nil, fmt.Errorf("qmp: handshake: %w", ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	go c.readLoop(r)
	return c, nil
}

// ctxErr names ctx's end as the cause of err when the connection's
// deadline (which is ctx's) cut the exchange short.
func ctxErr(ctx context.Context, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The socket's deadline and ctx's timer fire at the same instant.
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

func readMessage(r *bufio.Reader, m *message) error {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return err
	}
	if err := json.Unmarshal(line, m); err != nil {
		return fmt.Errorf("bad message %q: %w", line, err)
	}
	return nil
}

func writeJSON(conn net.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = conn.Write(append(b, '\n'))
	return err
}

// readLoop owns the reading side until the connection ends; then it fails
// every pending command and closes Events and Done.
func (c *Client) readLoop(r *bufio.Reader) {
	var err error
	for {
		var m message
		if err = readMessage(r, &m); err != nil {
			break
		}
		if m.Event != "" {
			c.deliver(m)
			continue
		}
		var id string
		if err := json.Unmarshal(m.ID, &id); err != nil {
			continue // a reply to nobody we know
		}
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch == nil {
			continue
		}
		if m.Error != nil {
			ch <- reply{err: m.Error}
		} else {
			ch <- reply{ret: m.Return}
		}
	}
	c.mu.Lock()
	c.closed = true
	for id, ch := range c.pending {
		ch <- reply{err: fmt.Errorf("%w: %v", ErrClosed, err)}
		delete(c.pending, id)
	}
	c.mu.Unlock()
	close(c.events)
	close(c.done)
}

func (c *Client) deliver(m message) {
	ev := Event{Name: m.Event, Data: m.Data}
	if m.Timestamp != nil {
		ev.Time = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
	}
	select {
	case c.events <- ev:
	default:
		c.mu.Lock()
		c.dropped++
		c.mu.Unlock()
	}
}

// Version is the QEMU version the greeting announced.
func (c *Client) Version() Version { return c.version }

// Events delivers QEMU's asynchronous events in order. It is closed when
// the connection ends. Events that arrive while its buffer is full are
// dropped (see Dropped).
func (c *Client) Events() <-chan Event { return c.events }

// Dropped is how many events were discarded for want of a reader.
func (c *Client) Dropped() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close ends the connection.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}

// Execute runs a QMP command with args (any JSON-marshalable value, or
// nil) and decodes its return value into result (nil to ignore it). A
// command QEMU rejects gives an *Error. When ctx ends first, Execute
// returns ctx's error; the command may still run.
func (c *Client) Execute(ctx context.Context, cmd string, args, result any) error {
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.nextID++
	id := strconv.FormatUint(c.nextID, 10)
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	c.writeMu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
	}
	err := writeJSON(c.conn, command{Execute: cmd, Arguments: args, ID: id})
	c.conn.SetWriteDeadline(time.Time{})
	c.writeMu.Unlock()
	if err != nil {
		forget()
		return fmt.Errorf("qmp: %s: %w", cmd, err)
	}

	select {
	case r := <-ch:
		if r.err != nil {
			var qe *Error
			if errors.As(r.err, &qe) {
				return r.err
			}
			return fmt.Errorf("qmp: %s: %w", cmd, r.err)
		}
		if result != nil && len(r.ret) > 0 {
			if err := json.Unmarshal(r.ret, result); err != nil {
				return fmt.Errorf("qmp: %s: decode reply: %w", cmd, err)
			}
		}
		return nil
	case <-ctx.Done():
		forget()
		return fmt.Errorf("qmp: %s: %w", cmd, ctx.Err())
	}
}

// Status is the VM's run state (query-status).
type Status struct {
	// Running is true while the guest's CPUs run.
	Running bool `json:"running"`
	// Status is QEMU's RunState: "running", "paused", "shutdown",
	// "prelaunch", "inmigrate", "postmigrate", "guest-panicked", ...
	Status string `json:"status"`
}

// QueryStatus returns the VM's run state.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// QueryName returns the VM's name (-name), or "" when it has none.
func (c *Client) QueryName(ctx context.Context) (string, error) {
	var r struct {
		Name string `json:"name"`
	}
	err := c.Execute(ctx, "query-name", nil, &r)
	return r.Name, err
}

// SystemPowerdown presses the guest's ACPI power button: a request that
// the guest may honour by shutting down.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	return c.Execute(ctx, "system_powerdown", nil, nil)
}

// Stop pauses the guest's CPUs.
func (c *Client) Stop(ctx context.Context) error { return c.Execute(ctx, "stop", nil, nil) }

// Cont resumes the guest's CPUs.
func (c *Client) Cont(ctx context.Context) error { return c.Execute(ctx, "cont", nil, nil) }

// Quit makes QEMU exit at once, without the guest's cooperation. QEMU may
// close the connection before replying; that counts as success.
func (c *Client) Quit(ctx context.Context) error {
	err := c.Execute(ctx, "quit", nil, nil)
	if err == nil || errors.Is(err, ErrClosed) {
		return nil
	}
	select {
	case <-c.done: // QEMU went away while we wrote: it quit
		return nil
	default:
		return err
	}
}

// ShutdownEvent is the data of a SHUTDOWN event.
type ShutdownEvent struct {
	// Guest is true when the guest asked for it (ACPI power off, halt).
	Guest bool `json:"guest"`
	// Reason is QEMU's ShutdownCause: "guest-shutdown", "host-qmp-quit",
	// "host-signal", "guest-panic", "guest-reset", ...
	Reason string `json:"reason"`
}

// BlockdevAdd adds a block node (QMP blockdev-add); opts is the command's
// arguments (driver, node-name, file...).
func (c *Client) BlockdevAdd(ctx context.Context, opts map[string]any) error {
	return c.Execute(ctx, "blockdev-add", opts, nil)
}

// BlockdevDel removes the block node nodeName, which no device may use.
func (c *Client) BlockdevDel(ctx context.Context, nodeName string) error {
	return c.Execute(ctx, "blockdev-del", map[string]any{"node-name": nodeName}, nil)
}

// DeviceAdd hot-plugs a device; opts holds driver, id and its properties.
func (c *Client) DeviceAdd(ctx context.Context, opts map[string]any) error {
	return c.Execute(ctx, "device_add", opts, nil)
}

// DeviceDel asks for device id to be unplugged. For a PCI device the guest
// has to let go first: the device is gone only at the DEVICE_DELETED event
// (seconds later), not when this returns.
func (c *Client) DeviceDel(ctx context.Context, id string) error {
	return c.Execute(ctx, "device_del", map[string]any{"id": id}, nil)
}

// ObjectProperty is one entry of qom-list.
type ObjectProperty struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// QOMList lists the properties (children included) of the QOM object at path.
func (c *Client) QOMList(ctx context.Context, path string) ([]ObjectProperty, error) {
	var out []ObjectProperty
	err := c.Execute(ctx, "qom-list", map[string]any{"path": path}, &out)
	return out, err
}

// BlockNode is one entry of query-named-block-nodes.
type BlockNode struct {
	NodeName string `json:"node-name"`
	File     string `json:"file"`
	Driver   string `json:"drv"`
	ReadOnly bool   `json:"ro"`
}

// QueryNamedBlockNodes lists the block graph's nodes (flat: no backing
// chains).
func (c *Client) QueryNamedBlockNodes(ctx context.Context) ([]BlockNode, error) {
	var out []BlockNode
	err := c.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &out)
	return out, err
}
