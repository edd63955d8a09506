package cloud

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// handleState serves GET /cvms/{id}/state, as JSON or, with
// Accept: text/event-stream, as the SSE watch of reference §10:
// ?target=<status>&interval=5..30&timeout=10..600 (seconds); events
// "state" (on every change and every interval), then one of "complete"
// {status, elapsed, target}, "timeout" {error, elapsed, target} or "error"
// {error, status, elapsed, target} (the CVM failed to boot).
func (s *Server) handleState(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	version := versionOf(r)
	if !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		s.mu.Lock()
		defer s.mu.Unlock()
		c := s.findLocked(id)
		if c == nil {
			writeCVMNotFound(w, id)
			return
		}
		writeJSON(w, http.StatusOK, c.stateJSON(version))
		return
	}

	q := r.URL.Query()
	var errs []fieldError
	seconds := func(name string, def, lo, hi int) time.Duration {
		raw := q.Get(name)
		if raw == "" {
			return time.Duration(def) * time.Second
		}
		n, err := strconv.Atoi(raw)
		if err != nil || n < lo || n > hi {
			errs = append(errs, fieldError{Type: "value_error", Loc: []any{"query", name},
				Msg: fmt.Sprintf("Value error, %s must be an integer from %d to %d (seconds)", name, lo, hi), Input: raw})
		}
		return time.Duration(n) * time.Second
	}
	interval := seconds("interval", 5, 5, 30)
	timeout := seconds("timeout", 300, 10, 600)
	target := q.Get("target")
	if target == "" {
		target = StatusRunning
	}
	if len(errs) > 0 {
		writeValidation(w, errs)
		return
	}
	s.mu.Lock()
	c := s.findLocked(id)
	s.mu.Unlock()
	if c == nil {
		writeCVMNotFound(w, id)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeDetail(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)

	start := time.Now()
	elapsed := func() float64 { return math.Round(time.Since(start).Seconds()*1000) / 1000 }
	send := func(event string, data any) bool {
		b, err := json.Marshal(data)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	lastSent := ""
	force := true
	for {
		s.mu.Lock()
		st := c.stateJSON(version)
		status, bootErr := c.status, c.bootError
		changed := s.changed
		s.mu.Unlock()
		key := status + "|" + fmt.Sprint(st["boot_progress"]) + "|" + bootErr
		if force || key != lastSent {
			if !send("state", st) {
				return
			}
			lastSent, force = key, false
		}
		switch {
		case status == target:
			send("complete", map[string]any{"status": status, "elapsed": elapsed(), "target": target})
			return
		case status == StatusError:
			send("error", map[string]any{"error": bootErr, "status": status, "elapsed": elapsed(), "target": target})
			return
		}
		select {
		case <-changed:
		case <-tick.C:
			force = true
		case <-deadline.C:
			send("timeout", map[string]any{"error": fmt.Sprintf("timed out after %s waiting for status %q (now %q)", timeout, target, status),
				"elapsed": elapsed(), "target": target})
			return
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
			return
		}
	}
}
