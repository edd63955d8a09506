package phala

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func sseEv(name, data string) string { return "event: " + name + "\ndata: " + data + "\n\n" }

func stateJSON(status string) string {
	return `{"name":"trace-app-1","status":"` + status + `","instance_id":"i-1"}`
}

// sseServer answers the n-th stream request (0-based) with streams[n]
// (the last one repeats) as text/event-stream; a stream is written in
// chunks, flushing between them, then the connection ends.
func sseServer(t *testing.T, streams [][]string) (*recorder, *Client, *fakeSleep) {
	var n atomic.Int32
	srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		if r.Header.Get("Accept") != "text/event-stream" {
			writeJSON(w, 200, stateJSON("running"))
			return
		}
		i := int(n.Add(1)) - 1
		if i >= len(streams) {
			i = len(streams) - 1
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for _, chunk := range streams[i] {
			io.WriteString(w, chunk)
			w.(http.Flusher).Flush()
		}
	})
	c, fs := newClient(t, srv)
	return rec, c, fs
}

func collect() (*[]string, func(CVMState)) {
	var mu sync.Mutex
	var seen []string
	return &seen, func(s CVMState) {
		mu.Lock()
		seen = append(seen, s.Status)
		mu.Unlock()
	}
}

func TestWatchStateSSE(t *testing.T) {
	rec, c, _ := sseServer(t, [][]string{{
		": keep-alive\n\n",
		sseEv("state", stateJSON("creating")),
		sseEv("state", stateJSON("starting")),
		"event: state\r\ndata: " + stateJSON("running") + "\r\n\r\n",
		sseEv("complete", `{"status":"running","elapsed":12,"target":"running"}`),
	}})
	seen, on := collect()
	st, err := c.WatchState(context.Background(), "2f0a1c1e-7f43-4c86-9d8c-3b7f3f1f0e55", "running", on)
	if err != nil || st.Status != "running" || st.InstanceID != "i-1" {
		t.Fatalf("WatchState = %+v, %v", st, err)
	}
	if !reflect.DeepEqual(*seen, []string{"creating", "starting", "running"}) {
		t.Fatalf("states seen %v", *seen)
	}
	r := rec.all()[0]
	if r.Path != "/api/v1/cvms/2f0a1c1e7f434c869d8c3b7f3f1f0e55/state" || r.RawQuery != "interval=5&target=running&timeout=300" {
		t.Fatalf("request %s?%s", r.Path, r.RawQuery)
	}
	if r.Header.Get("Accept") != "text/event-stream" || r.Header.Get("X-API-Key") != testKey || r.Header.Get("X-Phala-Version") != DefaultVersion {
		t.Fatalf("headers %v", r.Header)
	}
}

func TestWatchStateStreamCutMidEvent(t *testing.T) {
	tests := []struct {
		name string
		cut  string // the end of the first stream
	}{
		{"cut inside the data line", "event: state\ndata: {\"name\":\"trace-app-1\",\"status\":\"runn"},
		{"cut after a complete data line but before the blank line", "event: state\ndata: " + stateJSON("running") + "\n"},
		{"cut after the event line", "event: state\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, c, fs := sseServer(t, [][]string{
				{sseEv("state", stateJSON("starting")), tt.cut},
				{sseEv("state", stateJSON("starting")), sseEv("state", stateJSON("running"))},
			})
			seen, on := collect()
			st, err := c.WatchState(context.Background(), "trace-app-1", "running", on)
			if err != nil || st.Status != "running" {
				t.Fatalf("WatchState = %+v, %v", st, err)
			}
			// The cut event never reached onState: the first stream gave one
			// state, the re-opened one two.
			if !reflect.DeepEqual(*seen, []string{"starting", "starting", "running"}) {
				t.Fatalf("states seen %v", *seen)
			}
			if rec.count() != 2 || !reflect.DeepEqual(fs.all(), []time.Duration{5 * time.Second}) {
				t.Fatalf("%d streams, pauses %v", rec.count(), fs.all())
			}
		})
	}
}

func TestWatchStateReopens(t *testing.T) {
	tests := []struct {
		name  string
		first []string
	}{
		{"after a timeout event", []string{sseEv("state", stateJSON("starting")), sseEv("timeout", `{"error":"timeout","elapsed":300,"target":"running"}`)}},
		{"after an error event", []string{sseEv("error", `{"error":"backend hiccup"}`)}},
		{"after a clean end of stream", []string{sseEv("state", stateJSON("starting"))}},
		{"after complete without a matching state", []string{sseEv("complete", `{"status":"running"}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, c, _ := sseServer(t, [][]string{tt.first, {sseEv("state", stateJSON("running"))}})
			st, err := c.WatchState(context.Background(), "trace-app-1", "running", nil)
			if err != nil || st.Status != "running" {
				t.Fatalf("WatchState = %+v, %v", st, err)
			}
			// Two requests: the re-opened stream, or (after complete) one GET of the state.
			if rec.count() != 2 {
				t.Fatalf("%d requests, want 2", rec.count())
			}
		})
	}
}

func TestWatchStateGivesUpAfterMaxStreams(t *testing.T) {
	rec, c, _ := sseServer(t, [][]string{{sseEv("state", stateJSON("starting")), sseEv("error", `{"error":"kms unreachable"}`)}})
	c.cfg.Watch.MaxStreams = 3
	st, err := c.WatchState(context.Background(), "trace-app-1", "running", nil)
	var we *WatchError
	var se *StreamError
	if !errors.As(err, &we) || we.Streams != 3 || we.Last == nil || we.Last.Status != "starting" || !errors.As(err, &se) || se.Message != "kms unreachable" {
		t.Fatalf("err = %v", err)
	}
	if st.Status != "starting" || rec.count() != 3 {
		t.Fatalf("state %+v after %d streams", st, rec.count())
	}
}

func TestWatchStateBootError(t *testing.T) {
	tests := []struct {
		name  string
		state string
	}{
		{"boot_error set", `{"name":"a","status":"stopped","boot_error":"Compose hash not allowed"}`},
		{"status error", `{"name":"a","status":"error"}`},
		{"status failed", `{"name":"a","status":"failed"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c, _ := sseServer(t, [][]string{{sseEv("state", stateJSON("starting")), sseEv("state", tt.state)}})
			_, err := c.WatchState(context.Background(), "trace-app-1", "running", nil)
			var be *BootError
			if !errors.As(err, &be) || be.CVMID != "trace-app-1" || be.State.Status == "starting" {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestWatchStateFallsBackToPolling(t *testing.T) {
	tests := []struct {
		name   string
		stream func(w http.ResponseWriter)
	}{
		{"server answers JSON instead of a stream", func(w http.ResponseWriter) { writeJSON(w, 200, stateJSON("creating")) }},
		{"server has no stream endpoint (405)", func(w http.ResponseWriter) { writeJSON(w, 405, `{"detail":"Method Not Allowed"}`) }},
		{"server refuses the media type (406)", func(w http.ResponseWriter) { writeJSON(w, 406, `{"detail":"Not Acceptable"}`) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			polls := []string{"creating", "starting", "running"}
			var n atomic.Int32
			srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
				if r.Header.Get("Accept") == "text/event-stream" {
					tt.stream(w)
					return
				}
				i := int(n.Add(1)) - 1
				writeJSON(w, 200, stateJSON(polls[min(i, len(polls)-1)]))
			})
			c, fs := newClient(t, srv)
			seen, on := collect()
			st, err := c.WatchState(context.Background(), "trace-app-1", "running", on)
			if err != nil || st.Status != "running" {
				t.Fatalf("WatchState = %+v, %v", st, err)
			}
			if !reflect.DeepEqual(*seen, polls) {
				t.Fatalf("states %v", *seen)
			}
			all := rec.all()
			if len(all) != 4 || all[1].RawQuery != "" || all[1].Path != "/api/v1/cvms/trace-app-1/state" {
				t.Fatalf("requests %d, second %s?%s", len(all), all[1].Path, all[1].RawQuery)
			}
			if !reflect.DeepEqual(fs.all(), []time.Duration{2 * time.Second, 2 * time.Second}) {
				t.Fatalf("poll pauses %v", fs.all())
			}
		})
	}
}

func TestWatchStateErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request)
		check   func(t *testing.T, err error, hits int)
	}{
		{"401 on the stream is final", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 401, `{"detail":"Invalid API key"}`)
		}, func(t *testing.T, err error, hits int) {
			if ae, ok := AsAPIError(err); !ok || !ae.IsAuth() || hits != 1 {
				t.Fatalf("err = %v after %d requests", err, hits)
			}
		}},
		{"404 on stream and poll is a not-found error", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 404, `{"detail":"CVM not found"}`)
		}, func(t *testing.T, err error, hits int) {
			if ae, ok := AsAPIError(err); !ok || !ae.IsNotFound() || ae.Message != "CVM not found" || hits != 2 {
				t.Fatalf("err = %v after %d requests", err, hits)
			}
		}},
		{"malformed state event is a decode error", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, sseEv("state", `{"name":"a"}`))
		}, func(t *testing.T, err error, hits int) {
			var de *DecodeError
			if !errors.As(err, &de) || de.Field != "status" {
				t.Fatalf("err = %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) { tt.handler(w, r) })
			c, _ := newClient(t, srv, func(c *Config) { c.Retries = -1 })
			_, err := c.WatchState(context.Background(), "trace-app-1", "running", nil)
			tt.check(t, err, rec.count())
		})
	}
	t.Run("503 on the stream is retried", func(t *testing.T) {
		var n atomic.Int32
		srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
			if n.Add(1) == 1 {
				writeJSON(w, 503, `{"detail":"busy"}`)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, sseEv("state", stateJSON("running")))
		})
		c, _ := newClient(t, srv)
		if st, err := c.WatchState(context.Background(), "trace-app-1", "running", nil); err != nil || st.Status != "running" {
			t.Fatalf("WatchState = %+v, %v", st, err)
		}
	})
	t.Run("input checks", func(t *testing.T) {
		c, _ := newClient(t, httptestServerNeverCalled(t))
		for _, args := range [][2]string{{"", "running"}, {"trace-app-1", " "}} {
			if _, err := c.WatchState(context.Background(), args[0], args[1], nil); !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("WatchState(%q, %q) = %v", args[0], args[1], err)
			}
		}
	})
}

func TestWatchStateDisableSSEAndCancel(t *testing.T) {
	srv, rec := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		writeJSON(w, 200, stateJSON("starting"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	polls := 0
	c, _ := newClient(t, srv, func(c *Config) {
		c.Watch.DisableSSE = true
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			polls++
			if polls == 3 {
				cancel()
			}
			return ctx.Err()
		}
	})
	st, err := c.WatchState(ctx, "trace-app-1", "running", nil)
	if !errors.Is(err, context.Canceled) || st.Status != "starting" {
		t.Fatalf("WatchState = %+v, %v", st, err)
	}
	for _, r := range rec.all() {
		if r.Header.Get("Accept") == "text/event-stream" {
			t.Fatal("an SSE stream was opened with DisableSSE")
		}
	}
	if rec.count() != 3 {
		t.Fatalf("%d polls", rec.count())
	}
}

func httptestServerNeverCalled(t *testing.T) *httptest.Server {
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request, _ recorded) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
	})
	return srv
}

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []sseEvent
		wantEnd error
	}{
		{"basic", "event: state\ndata: {}\n\n", []sseEvent{{"state", "{}"}}, io.EOF},
		{"CRLF and comments", ": hi\r\nevent: complete\r\ndata: x\r\n\r\n", []sseEvent{{"complete", "x"}}, io.EOF},
		{"multi-line data is joined", "event: e\ndata: a\ndata: b\n\n", []sseEvent{{"e", "a\nb"}}, io.EOF},
		{"no space after colon", "event:e\ndata:x\n\n", []sseEvent{{"e", "x"}}, io.EOF},
		{"unnamed event is message", "data: x\n\n", []sseEvent{{"message", "x"}}, io.EOF},
		{"event without data is not dispatched", "event: e\n\nevent: f\ndata: y\n\n", []sseEvent{{"f", "y"}}, io.EOF},
		{"id and retry ignored", "id: 3\nretry: 100\nevent: e\ndata: z\n\n", []sseEvent{{"e", "z"}}, io.EOF},
		{"cut mid-event", "event: e\ndata: a\n\nevent: e\ndata: {\"sta", []sseEvent{{"e", "a"}}, io.ErrUnexpectedEOF},
		{"cut before the blank line", "event: e\ndata: b\n", nil, io.ErrUnexpectedEOF},
		{"too long line", "data: " + strings.Repeat("x", maxSSELine+1) + "\n\n", nil, errSSELineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSSEReader(strings.NewReader(tt.in))
			var got []sseEvent
			var end error
			for {
				ev, err := r.next()
				if err != nil {
					end = err
					break
				}
				got = append(got, ev)
			}
			if !reflect.DeepEqual(got, tt.want) || !errors.Is(end, tt.wantEnd) {
				t.Fatalf("events %v end %v, want %v end %v", got, end, tt.want, tt.wantEnd)
			}
		})
	}
}
