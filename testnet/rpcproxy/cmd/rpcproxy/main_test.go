package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cvmdeploy/cvmdeploy/testnet/rpcproxy"
)

func TestRunRejectsBadInput(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"missing upstream", nil, "upstream URL is required"},
		{"remote upstream", []string{"-upstream", "http://10.0.0.1:8545"}, "not loopback"},
		{"public listen", []string{"-upstream", "http://127.0.0.1:8545", "-listen", "0.0.0.0:0"}, "not loopback"},
		{"bad rules", []string{"-upstream", "http://127.0.0.1:8545", "-rules", "*:drop=2"}, "invalid rule"},
		{"unknown flag", []string{"-nope"}, "flag provided but not defined"},
		{"extra argument", []string{"-upstream", "http://127.0.0.1:8545", "extra"}, "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), tc.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("stderr %q does not mention %q", stderr.String(), tc.wantErr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout not empty on error: %q", stdout.String())
			}
		})
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":"0x7a69"}`)
	}))
	defer up.Close()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"-upstream", up.URL, "-seed", "3", "-rules", "eth_chainId:429=1", "-max-faults", "1"}, pw, &stderr)
		pw.Close()
	}()
	out := bufio.NewReader(pr)
	url, err := out.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	url = strings.TrimSpace(url)

	c := &http.Client{Transport: &http.Transport{}}
	var statuses []int
	for range 2 {
		resp, err := c.Post(url, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	c.CloseIdleConnections()
	if statuses[0] != 429 || statuses[1] != 200 {
		t.Errorf("statuses %v, want [429 200] (one fault, then the budget is spent)", statuses)
	}

	cancel()
	rest, err := io.ReadAll(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-code; got != 0 {
		t.Errorf("exit code %d, want 0; stderr %q", got, stderr.String())
	}
	var s rpcproxy.Stats
	if err := json.Unmarshal(rest, &s); err != nil {
		t.Fatalf("final stats line %q: %v", rest, err)
	}
	if s.HTTPRequests != 2 || s.Calls["eth_chainId"] != 2 || s.Faults[rpcproxy.FaultTooMany] != 1 {
		t.Errorf("final stats %+v", s)
	}
	if !strings.Contains(stderr.String(), "injecting 429 into eth_chainId") {
		t.Errorf("fault not logged on stderr: %q", stderr.String())
	}
}
