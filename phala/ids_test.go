package phala

import (
	"errors"
	"testing"
)

func TestNormalizeCVMID(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"uuid v4 with dashes", "550e8400-e29b-41d4-a716-446655440000", "550e8400e29b41d4a716446655440000"},
		{"uuid v4 without dashes", "550e8400e29b41d4a716446655440000", "550e8400e29b41d4a716446655440000"},
		{"uuid v4 upper case keeps case", "550E8400-E29B-41D4-A716-446655440000", "550E8400E29B41D4A716446655440000"},
		{"uuid with some dashes", "550e8400e29b-41d4-a716446655440000", "550e8400e29b41d4a716446655440000"},
		{"uuid v1 is not rewritten", "550e8400-e29b-11d4-a716-446655440000", "550e8400-e29b-11d4-a716-446655440000"},
		{"uuid bad variant is not rewritten", "550e8400-e29b-41d4-c716-446655440000", "550e8400-e29b-41d4-c716-446655440000"},
		{"40 hex app id", "50b0e827cc6c53f4010b57e588a18c5ef9388cc1", "app_50b0e827cc6c53f4010b57e588a18c5ef9388cc1"},
		{"40 hex keeps case", "50B0E827CC6C53F4010B57E588A18C5EF9388CC1", "app_50B0E827CC6C53F4010B57E588A18C5EF9388CC1"},
		{"0x app id unchanged like the SDK", "0x50b0e827cc6c53f4010b57e588a18c5ef9388cc1", "0x50b0e827cc6c53f4010b57e588a18c5ef9388cc1"},
		{"app_ prefixed unchanged", "app_50b0e827cc6c53f4010b57e588a18c5ef9388cc1", "app_50b0e827cc6c53f4010b57e588a18c5ef9388cc1"},
		{"39 hex unchanged", "50b0e827cc6c53f4010b57e588a18c5ef9388cc", "50b0e827cc6c53f4010b57e588a18c5ef9388cc"},
		{"name unchanged", "my-app-1", "my-app-1"},
		{"integer id unchanged", "1234", "1234"},
		{"hashed id unchanged", "cvm_k3j4h5", "cvm_k3j4h5"},
		{"uuid with trailing junk unchanged", "550e8400-e29b-41d4-a716-446655440000x", "550e8400-e29b-41d4-a716-446655440000x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NormalizeCVMID(tt.in); got != tt.want {
				t.Fatalf("NormalizeCVMID(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNormalizeAppID(t *testing.T) {
	const want = "21db43cdd6fbd4998ff67af132f953747bfacb97"
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"checksummed 0x", "0x21dB43cDD6FbD4998FF67Af132F953747BFaCb97", true},
		{"upper 0X", "0X21DB43CDD6FBD4998FF67AF132F953747BFACB97", true},
		{"app_ prefix", "app_21db43cdd6fbd4998ff67af132f953747bfacb97", true},
		{"bare", "21db43cdd6fbd4998ff67af132f953747bfacb97", true},
		{"surrounding space", " 0x21db43cdd6fbd4998ff67af132f953747bfacb97\n", true},
		{"too short", "0x21db43cdd6fbd4998ff67af132f953747bfacb9", false},
		{"too long", "0x21db43cdd6fbd4998ff67af132f953747bfacb970", false},
		{"not hex", "0x21db43cdd6fbd4998ff67af132f953747bfacbzz", false},
		{"empty", "", false},
		{"only prefix", "0x", false},
		{"uuid", "550e8400-e29b-41d4-a716-446655440000", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeAppID(tt.in)
			if tt.ok {
				if err != nil || got != want {
					t.Fatalf("NormalizeAppID(%q) = %q, %v; want %q", tt.in, got, err, want)
				}
				return
			}
			if !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("NormalizeAppID(%q) = %q, %v; want ErrInvalidInput", tt.in, got, err)
			}
		})
	}
}

func TestNormalizeComposeHash(t *testing.T) {
	const h = "6c7e0e1dbd3c3ff2b1e4b9e1b0a48b5d6b2b8a1f0c9e8d7c6b5a4f3e2d1c0b0a"
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"bare", h, true},
		{"0x", "0x" + h, true},
		{"sha256 prefix from old docs", "sha256:" + h, true},
		{"upper case", "0x6C7E0E1DBD3C3FF2B1E4B9E1B0A48B5D6B2B8A1F0C9E8D7C6B5A4F3E2D1C0B0A", true},
		{"short", h[:62], false},
		{"not hex", h[:63] + "g", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeComposeHash(tt.in)
			if tt.ok != (err == nil) || tt.ok && got != h {
				t.Fatalf("NormalizeComposeHash(%q) = %q, %v", tt.in, got, err)
			}
		})
	}
}

func TestDashboardURL(t *testing.T) {
	tests := []struct {
		name, env, want string
	}{
		{"default portal", "", "https://cloud.phala.com/dashboard/cvms/2f0a1c1e-7f43-4c86-9d8c-3b7f3f1f0e55"},
		{"CLOUD_URL override with trailing slash", "http://127.0.0.1:9000/", "http://127.0.0.1:9000/dashboard/cvms/2f0a1c1e-7f43-4c86-9d8c-3b7f3f1f0e55"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CLOUD_URL", tt.env)
			if got := DashboardURL("2f0a1c1e-7f43-4c86-9d8c-3b7f3f1f0e55"); got != tt.want {
				t.Fatalf("DashboardURL = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"trace-app-1", true},
		{"abcde", true},
		{"A1234", true},
		{"abcd", false},    // too short
		{"1abcde", false},  // leading digit
		{"-abcde", false},  // leading hyphen
		{"abcde-", false},  // trailing hyphen
		{"ab--cde", false}, // double hyphen
		{"ab_cde", false},  // underscore
		{"abc de", false},  // space
		{"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl", false}, // 64 chars
		{"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk", true},   // 63 chars
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckName(tt.name)
			if tt.ok != (err == nil) {
				t.Fatalf("CheckName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("error %v does not wrap ErrInvalidInput", err)
			}
		})
	}
}
