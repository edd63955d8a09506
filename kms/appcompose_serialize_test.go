package kms

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
)

func mustParseObject(t *testing.T, s string) map[string]any {
	t.Helper()
	v, err := ParseJSON([]byte(s))
	if err != nil {
		t.Fatalf("ParseJSON(%s): %v", s, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s is not an object", s)
	}
	return m
}

// The expected strings were produced by node 22 with
// JSON.stringify(sortObject(doc), null, 4).replace(/": /g, '":'), the
// @phala/cloud dumpAppCompose recipe.
func TestSerializeAppComposeIndent4(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{
			name: "nested and empty arrays and objects",
			doc:  `{"b":[1,[2,[]],{}],"a":{},"c":[],"z":{"y":[{"x":null}]}}`,
			want: "{\n    \"a\":{},\n    \"b\":[\n        1,\n        [\n            2,\n            []\n        ],\n        {}\n    ],\n    \"c\":[],\n    \"z\":{\n        \"y\":[\n            {\n                \"x\":null\n            }\n        ]\n    }\n}",
		},
		{
			// The global replace also rewrites `": ` inside string values.
			name: "quote-colon-space inside strings, unicode, <>& raw, JS numbers",
			doc:  `{"s":"say \"hi\": now","t":"x\": y","u":"é😀` + "\u2028" + `<>&","n":-0.5e-7,"m":1e21,"k":true}`,
			want: "{\n    \"k\":true,\n    \"m\":1e+21,\n    \"n\":-5e-8,\n    \"s\":\"say \\\"hi\\\":now\",\n    \"t\":\"x\\\":y\",\n    \"u\":\"é😀\u2028<>&\"\n}",
		},
		{
			name: "array-index keys first, in numeric order",
			doc:  `{"a":3,"10":1,"2":2}`,
			want: "{\n    \"2\":2,\n    \"10\":1,\n    \"a\":3\n}",
		},
		{name: "empty document", doc: `{}`, want: `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SerializeAppCompose(mustParseObject(t, tt.doc), SerializationIndent4)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// sample2025 has the key set and layout of the 2025 server document in
// reference A3 sample 1 (a tcb_info.app_compose whose SHA-256 was the
// compose-hash event), with contents of our own. Its bytes are written out
// literally: the indent4 writer must reproduce them from the decoded value.
const sample2025 = "{\n" +
	"    \"allowed_envs\":[],\n" +
	"    \"default_gateway_domain\":\"dstack-prod8.phala.network\",\n" +
	"    \"docker_compose_file\":\"services:\\n  app:\\n    image: nginx\\n    ports:\\n      - \\\"80:80\\\"\\n\",\n" +
	"    \"features\":[\n" +
	"        \"kms\",\n" +
	"        \"tproxy-net\"\n" +
	"    ],\n" +
	"    \"gateway_enabled\":true,\n" +
	"    \"kms_enabled\":true,\n" +
	"    \"local_key_provider_enabled\":false,\n" +
	"    \"manifest_version\":2,\n" +
	"    \"name\":\"intents-solver-1\",\n" +
	"    \"no_instance_id\":false,\n" +
	"    \"pre_launch_script\":\"\\n#!/bin/bash\\necho \\\"hello\\\"\\n\",\n" +
	"    \"public_logs\":true,\n" +
	"    \"public_sysinfo\":true,\n" +
	"    \"runner\":\"docker-compose\",\n" +
	"    \"tproxy_enabled\":true\n" +
	"}"

func TestSerializeAppComposeRoundTrips2025Layout(t *testing.T) {
	doc := mustParseObject(t, sample2025)
	got, err := SerializeAppCompose(doc, SerializationIndent4)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != sample2025 {
		t.Errorf("indent4 did not reproduce the 2025 layout:\n%s", got)
	}
	compact, err := SerializeAppCompose(doc, SerializationCompact)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(compact, []byte("\n")) || bytes.Equal(compact, got) {
		t.Errorf("compact output is not the one-line form: %s", compact)
	}
}

func TestSerializeAppComposeCompactIsCanonicalJSON(t *testing.T) {
	for _, s := range []string{
		sample2025,
		`{"b":[1,[2,[]],{}],"a":{},"c":[],"z":{"y":[{"x":null}]}}`,
		`{"s":"say \"hi\": now","u":"é😀<>&","n":1.50}`,
	} {
		doc := mustParseObject(t, s)
		got, err := SerializeAppCompose(doc, SerializationCompact)
		if err != nil {
			t.Fatal(err)
		}
		want, err := CanonicalJSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("compact %s != CanonicalJSON %s", got, want)
		}
		sum := sha256.Sum256(got)
		if h, _ := ComposeHashValue(doc, false); h != hex.EncodeToString(sum[:]) {
			t.Errorf("sha256(compact) %x != ComposeHashValue %s", sum, h)
		}
	}
}

func TestSerializeAppComposeRefusals(t *testing.T) {
	doc := map[string]any{"x": map[string]any{"constructor": "y"}}
	for _, s := range []Serialization{SerializationCompact, SerializationIndent4} {
		if _, err := SerializeAppCompose(doc, s); !errors.Is(err, ErrInvalidJSON) {
			t.Errorf("%s: a nested \"constructor\" key gave %v, want ErrInvalidJSON", s, err)
		}
	}
	if _, err := SerializeAppCompose(map[string]any{}, "yaml"); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("unknown serialization gave %v, want ErrInvalidInput", err)
	}
}
