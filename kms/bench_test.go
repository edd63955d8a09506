package kms

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// env1MiB is 1024 variables whose keys and values fill exactly 1 MiB, the
// largest env the limits allow, with a few characters that need escaping.
func env1MiB(b *testing.B) []EnvVar {
	const n = MaxEnvVars
	envs := make([]EnvVar, n)
	for i := range envs {
		key := fmt.Sprintf("VAR_%04d", i)
		chunk := "abcdefghijklmnopqrstuvwxyz0123456789-_.:/+= \"\\\n\té😀"
		value := strings.Repeat(chunk, MaxEnvTotalBytes/n/len(chunk)+1)[:MaxEnvTotalBytes/n-len(key)]
		for !utf8.ValidString(value) { // do not cut a character in two
			value = value[:len(value)-1]
		}
		envs[i] = EnvVar{Key: key, Value: value}
	}
	if err := CheckEnv(envs); err != nil {
		b.Fatal(err)
	}
	return envs
}

func envBytes(envs []EnvVar) int {
	n := 0
	for _, e := range envs {
		n += len(e.Key) + len(e.Value)
	}
	return n
}

func BenchmarkEncryptEnv1MiB(b *testing.B) {
	envs := env1MiB(b)
	pub := hex.EncodeToString(fuzzRecipient.PublicKey().Bytes())
	b.SetBytes(int64(envBytes(envs)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncryptEnv(envs, pub); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecryptEnv1MiB(b *testing.B) {
	envs := env1MiB(b)
	ct, err := EncryptEnv(envs, hex.EncodeToString(fuzzRecipient.PublicKey().Bytes()))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(envBytes(envs)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecryptEnv(ct, fuzzRecipient.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
}

// compose200KiB builds an app compose of about 200 KiB: a large compose
// file, a pre-launch script, and many nested labels and numbers.
func compose200KiB(b *testing.B) []byte {
	var yaml strings.Builder
	yaml.WriteString("services:\n")
	for i := 0; yaml.Len() < 90<<10; i++ {
		fmt.Fprintf(&yaml, "  svc%d:\n    image: ghcr.io/example/app%d@sha256:%064x\n    command: sh -c \"echo start && ./run < in > out 2>&1\"\n    environment:\n      - GREETING=héllo 😀\n", i, i, i)
	}
	labels := map[string]any{}
	for i := 0; i < 950; i++ {
		labels[fmt.Sprintf("label.%d.ключ", i)] = map[string]any{"n": i, "f": float64(i) / 7, "on": i%2 == 0, "tags": []any{"a", "b", fmt.Sprint(i)}}
	}
	doc := map[string]any{
		"manifest_version":    2,
		"name":                "bench",
		"runner":              "docker-compose",
		"docker_compose_file": yaml.String(),
		"pre_launch_script":   strings.Repeat("#!/bin/bash\necho \"$X\" | docker login --password-stdin\n", 300),
		"allowed_envs":        []string{"A", "B", "C"},
		"labels":              labels,
	}
	data, err := json.Marshal(doc)
	if err != nil {
		b.Fatal(err)
	}
	if len(data) < 190<<10 || len(data) > 220<<10 {
		b.Fatalf("compose is %d bytes, want about 200 KiB", len(data))
	}
	return data
}

func BenchmarkComposeHash200KiB(b *testing.B) {
	data := compose200KiB(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ComposeHash(data, true); err != nil {
			b.Fatal(err)
		}
	}
}
