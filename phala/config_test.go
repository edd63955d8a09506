package phala

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestConfigCheckBaseURL(t *testing.T) {
	tests := []struct {
		name, url string
		ok        bool
		errHas    string
	}{
		{"https default", "https://cloud-api.phala.com/api/v1", true, ""},
		{"http to 127.0.0.1", "http://127.0.0.1:8080/api/v1", true, ""},
		{"http to another 127/8 address", "http://127.5.6.7:8080/api/v1", true, ""},
		{"http to ::1", "http://[::1]:8080/api/v1", true, ""},
		{"http to localhost", "http://localhost:8080/api/v1", true, ""},
		{"http to a public host", "http://cloud-api.phala.com/api/v1", false, "refusing plain http://"},
		{"http to a private address", "http://10.0.0.1/api/v1", false, "refusing plain http://"},
		{"http to a localhost look-alike", "http://localhost.example.com/api/v1", false, "refusing plain http://"},
		{"http to 0.0.0.0", "http://0.0.0.0:8080/api/v1", false, "refusing plain http://"},
		{"other scheme", "ftp://cloud-api.phala.com/api/v1", false, "not https"},
		{"credentials in URL", "https://user:pw@cloud-api.phala.com/api/v1", false, "credentials"},
		{"no host", "cloud-api.phala.com/api/v1", false, "no host"},
		{"query", "https://cloud-api.phala.com/api/v1?x=1", false, "query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Config{BaseURL: tt.url, APIKey: testKey}.Check()
			if tt.ok {
				if err != nil {
					t.Fatalf("Check(%q) = %v", tt.url, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Check(%q) = %v, want ErrInvalidInput mentioning %q", tt.url, err, tt.errHas)
			}
			if _, nerr := New(Config{BaseURL: tt.url, APIKey: testKey}); nerr == nil {
				t.Fatalf("New(%q) accepted a config Check refuses", tt.url)
			}
		})
	}
}

func TestConfigCheckFields(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero value is valid", Config{}, true},
		{"latest version", Config{Version: "LATEST"}, true},
		{"date version", Config{Version: "2026-01-21"}, true},
		{"bad version", Config{Version: "v2"}, false},
		{"key with newline", Config{APIKey: "phak_x\nX-Evil: 1"}, false},
		{"key with space", Config{APIKey: "phak x"}, false},
		{"negative timeout", Config{Timeout: -time.Second}, false},
		{"min backoff above max", Config{MinBackoff: 2 * time.Second, MaxBackoff: time.Second}, false},
		{"user agent with newline", Config{UserAgent: "a\r\nb"}, false},
		{"watch interval too short", Config{Watch: WatchOptions{Interval: time.Second}}, false},
		{"watch stream timeout too long", Config{Watch: WatchOptions{StreamTimeout: time.Hour}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Check()
			if tt.ok != (err == nil) {
				t.Fatalf("Check() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && strings.Contains(err.Error(), "phak_x") {
				t.Fatalf("error shows the key: %v", err)
			}
		})
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		t.Setenv(EnvAPIKey, "")
		t.Setenv(EnvAPIPrefix, "")
		t.Setenv(EnvAPIVersion, "")
		cfg := ConfigFromEnv()
		if cfg.BaseURL != DefaultBaseURL || cfg.APIKey != "" || cfg.Version != "2026-06-23" {
			t.Fatalf("ConfigFromEnv() = %v", cfg)
		}
	})
	t.Run("from environment", func(t *testing.T) {
		t.Setenv(EnvAPIKey, " "+testKey+"\n")
		t.Setenv(EnvAPIPrefix, "http://127.0.0.1:4000/api/v1")
		t.Setenv(EnvAPIVersion, "2025-10-28")
		cfg := ConfigFromEnv()
		if cfg.BaseURL != "http://127.0.0.1:4000/api/v1" || cfg.APIKey != testKey || cfg.Version != "2025-10-28" {
			t.Fatalf("ConfigFromEnv() = %v (key set: %v)", cfg, cfg.APIKey == testKey)
		}
	})
}

func TestConfigPrintingRedactsKey(t *testing.T) {
	cfg := Config{APIKey: testKey, BaseURL: "https://cloud-api.phala.com/api/v1"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(verb, cfg)
		if strings.Contains(out, testKey) {
			t.Fatalf("%s shows the API key: %s", verb, out)
		}
		if !strings.Contains(out, "[redacted]") {
			t.Fatalf("%s does not say the key is set: %s", verb, out)
		}
	}
}
