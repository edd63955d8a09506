package kms

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDefaultPinsParse guards the embedded file: DefaultPins panics if it
// does not parse.
func TestDefaultPinsParse(t *testing.T) {
	if _, err := ParsePins(pinsJSON); err != nil {
		t.Fatalf("embedded pins.json: %v", err)
	}
	p := DefaultPins()
	if len(p.AppCompose.Templates) == 0 || len(p.AppCompose.Serializations) != 2 {
		t.Errorf("templates %d, serializations %d", len(p.AppCompose.Templates), len(p.AppCompose.Serializations))
	}
}

// TestDefaultPinsMatchReference compares the embedded data with the values of
// the reference (shared/reference/app-compose-and-api.md A4's table, and the
// KMS address of appauth-contracts.md §10), written out here a second time so
// that a typo in either copy fails.
func TestDefaultPinsMatchReference(t *testing.T) {
	p := DefaultPins()
	wantScripts := map[string]string{ // sha256 -> version/form
		"1189e1d212cd248a306da5d4fae367a3d942f2ac2659dd2c4ff4eaad13922c44": "0.0.7/leading-newline",
		"33778715b33573186ae1a32bbbd6e2a12047aaa1eecdeee7180216c2b1e0a24a": "0.0.10/file",
		"58a5ec3ebab707c9ab322d93002df07041305494e082c51e714c90dddc674376": "0.0.10/continuations-joined",
		"d31c9df2af520aa5e23b99b428eba6854c84294b6f582dd46b150d624b0d4cbe": "0.0.11/file",
		"0c237875596bc2d14ddef22d48f93a1423d265e6a0c992b3be721f9325ea7b02": "0.0.11/continuations-joined",
		"7d3a3737bf3a59d6511cadb7b1867d21bae6d796136326c4be503323a5ad3741": "0.0.12/file",
		"94174db4c56299057996510e5c7d69f69d6a5063a9197d473e5bc58aacffcaa5": "0.0.12/continuations-joined",
		"c608c19a6756b532f9995ffafab1ae569d50acff5283162e9787ee85f642641a": "0.0.13/file",
		"ad632872dc4322c21b48c0d396d3026c5e3ce513a5e11a682cff681a5371538d": "0.0.13/continuations-joined",
		"22ee7123712744ae1814257bfd0a396d0a3c990c5e240c4e93253bdb5b649765": "0.0.14/file",
		"e65745e6a288551e7c78e3adc75b3247001ca2047dfb1b687316bc2563726328": "0.0.14/continuations-joined",
		"bf12939bc82c9bdd103b6b1226913e6da58ed7cfcfc7c7ae808ac0813715b9a8": "0.0.15/file",
		"cec8f68ce6185b912023d886bba20cd06386dd9751af904e6107e758b9d68983": "0.0.19/file",
	}
	got := map[string]string{}
	for _, s := range p.AppCompose.OfficialPreLaunchScripts {
		got[s.SHA256] = s.Version + "/" + s.Form
	}
	for h, want := range wantScripts {
		if got[h] != want {
			t.Errorf("official script %s: pinned as %q, reference says %s", h, got[h], want)
		}
	}
	for h, v := range got {
		if _, ok := wantScripts[h]; !ok {
			t.Errorf("official script %s (%s) is pinned but not in the reference", h, v)
		}
	}

	addr, src, ok := p.KMSContract(8453)
	if !ok || addr != "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C" || src == "" {
		t.Errorf("Base KMS = %q (source %q, ok %v)", addr, src, ok)
	}
	if addr, _, ok := p.KMSContract(1); ok {
		t.Errorf("Ethereum mainnet KMS %s is pinned, but no reference gives one", addr)
	}
	if len(p.KMSContracts) != 1 {
		t.Errorf("%d KMS contracts pinned, the references give 1", len(p.KMSContracts))
	}

	// The phala-2026 template is reference A3's inferred 2026 template.
	i := slices.IndexFunc(p.AppCompose.Templates, func(t ComposeTemplate) bool { return t.Name == "phala-2026" })
	if i < 0 {
		t.Fatal("no phala-2026 template")
	}
	tmpl := p.AppCompose.Templates[i]
	server, err := CanonicalJSON(tmpl.ServerFields)
	if err != nil {
		t.Fatal(err)
	}
	const wantServer = `{"features":["kms","tproxy-net"],"kms_enabled":true,"local_key_provider_enabled":false,"manifest_version":2,"no_instance_id":false,"runner":"docker-compose","secure_time":false,"storage_fs":"zfs","tproxy_enabled":true}`
	if string(server) != wantServer {
		t.Errorf("phala-2026 server fields\n%s\nwant\n%s", server, wantServer)
	}
	if !slices.Equal(tmpl.UserFields, userFields) {
		t.Errorf("phala-2026 user fields %v, want %v", tmpl.UserFields, userFields)
	}
}

// TestDefaultPinsWellFormed: every hash is 64 lowercase hex, every address
// EIP-55, every entry sourced, and the template's own values are pinned for
// verification too (a template the verifier would refuse is a broken file).
func TestDefaultPinsWellFormed(t *testing.T) {
	p := DefaultPins()
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for _, s := range p.AppCompose.OfficialPreLaunchScripts {
		if !hex64.MatchString(s.SHA256) || s.Source == "" {
			t.Errorf("script entry %+v", s)
		}
	}
	for _, k := range p.KMSContracts {
		sum, err := checksumAddress(k.Address)
		if err != nil || sum != k.Address {
			t.Errorf("KMS %d address %s is not checksummed (%s, %v)", k.ChainID, k.Address, sum, err)
		}
	}
	for _, f := range p.AppCompose.ServerFields {
		if f.Source == "" {
			t.Errorf("server field %s has no source", f.Field)
		}
	}
	for _, tmpl := range p.AppCompose.Templates {
		for k, v := range tmpl.ServerFields {
			if !anyAllows(p.serverFieldPins(k), v) {
				t.Errorf("template %s: %s=%v is not a pinned server value", tmpl.Name, k, v)
			}
		}
	}
}

func TestChecksumAddress(t *testing.T) {
	tests := []struct{ in, want string }{
		// EIP-55's own test vectors.
		{"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"},
		{"0xFB6916095CA1DF60BB79CE92CE3EA74C37C5D359", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"},
		{"0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"},
		{"0x2f83172a49584c017f2b256f0fb2dca14126ba9c", "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C"},
	}
	for _, tt := range tests {
		if got, err := checksumAddress(tt.in); err != nil || got != tt.want {
			t.Errorf("checksumAddress(%s) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"2f83172a49584c017f2b256f0fb2dca14126ba9c", "0x2f83", "0xzz83172a49584c017f2b256f0fb2dca14126ba9c"} {
		if _, err := checksumAddress(bad); err == nil {
			t.Errorf("checksumAddress(%s) accepted", bad)
		}
	}
}

const minimalPins = `{
  "kms_contracts": [{"chain_id": 31337, "chain": "anvil", "address": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "source": "anvil's first deployment"}],
  "app_compose": {
    "serializations": [{"name": "compact", "source": "test"}],
    "templates": [],
    "server_fields": [{"field": "salt", "pattern": "[0-9]+", "source": "test"}],
    "official_pre_launch_scripts": [{"version": "9.9.9", "form": "file", "sha256": "` + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" + `", "source": "test: sha256 of the empty script"}]
  }
}`

func TestParsePinsRefuses(t *testing.T) {
	if _, err := ParsePins([]byte(minimalPins)); err != nil {
		t.Fatalf("the base of these cases does not parse: %v", err)
	}
	tests := []struct {
		name, old, new, wantErr string
	}{
		{"unknown top-level key", `"kms_contracts"`, `"extra": 1, "kms_contracts"`, `unknown field "extra"`},
		{"unknown nested key", `"chain": "anvil"`, `"chain": "anvil", "note": "x"`, `unknown field "note"`},
		{"missing KMS source", `, "source": "anvil's first deployment"`, ``, "kms_contracts[0] has no source"},
		{"empty script source", `"source": "test: sha256 of the empty script"`, `"source": ""`, "official_pre_launch_scripts[0] has no source"},
		{"missing serialization source", `"name": "compact", "source": "test"`, `"name": "compact"`, "serializations[0] has no source"},
		{"unchecksummed address", `0x5FbDB2315678afecb367f032d93F642f64180aa3`, `0x5fbdb2315678afecb367f032d93f642f64180aa3`, "not EIP-55 checksummed"},
		{"short sha256", `e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855`, `e3b0c442`, "not 64 lowercase hex"},
		{"uppercase sha256", `e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855`, `E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855`, "not 64 lowercase hex"},
		{"unknown serialization", `"name": "compact"`, `"name": "yaml"`, `unknown serialization "yaml"`},
		{"unknown script form", `"form": "file"`, `"form": "gzip"`, `unknown form "gzip"`},
		{"bad pattern", `"pattern": "[0-9]+"`, `"pattern": "[0-9"`, "pattern"},
		{"values and pattern", `"pattern": "[0-9]+"`, `"pattern": "[0-9]+", "values": [1]`, "exactly one of"},
		{"pinning a user field", `"field": "salt"`, `"field": "public_logs"`, "is a user field"},
		{"repeated key", `"chain": "anvil"`, `"chain": "anvil", "chain": "x"`, `key "chain" appears twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(minimalPins, tt.old) {
				t.Fatalf("case does not apply: %q not in the base", tt.old)
			}
			_, err := ParsePins([]byte(strings.Replace(minimalPins, tt.old, tt.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidInput) {
				t.Errorf("%v does not wrap ErrInvalidInput", err)
			}
		})
	}
}

func TestPinsMerge(t *testing.T) {
	base := DefaultPins()
	extra, err := ParsePins([]byte(minimalPins))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := base.OfficialPreLaunch(""); ok {
		t.Fatal("the empty script is official before the merge")
	}
	m := base.Merge(extra)
	label, ok := m.OfficialPreLaunch("")
	if !ok || label != "Phala pre-launch v9.9.9 (sha256 e3b0c4…)" {
		t.Errorf("merged label %q, %v", label, ok)
	}
	if _, ok := base.OfficialPreLaunch(""); ok {
		t.Error("Merge changed its receiver")
	}
	if _, _, ok := m.KMSContract(31337); !ok {
		t.Error("merged KMS pin for 31337 missing")
	}
	if addr, _, _ := m.KMSContract(8453); addr != "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C" {
		t.Errorf("built-in Base pin lost: %q", addr)
	}
	if !anyAllows(m.serverFieldPins("salt"), "123") || anyAllows(base.serverFieldPins("salt"), "123") {
		t.Error("merged server-field pattern not added (or added to the receiver)")
	}
	if n := len(m.AppCompose.Serializations); n != 2 {
		t.Errorf("serializations after merge: %d, want 2 (compact is not repeated)", n)
	}
}

func TestOfficialPreLaunchLabels(t *testing.T) {
	p := DefaultPins()
	// A script of ours is not official.
	if _, ok := p.OfficialPreLaunch("#!/bin/bash\necho mine\n"); ok {
		t.Error("an arbitrary script is official")
	}
	// A label is computed from the entry: version, form, hash prefix.
	extra := &Pins{AppCompose: AppComposePins{OfficialPreLaunchScripts: []PreLaunchScriptPin{
		{Version: "1.2.3", Form: "continuations-joined", SHA256: sha256Hex("x"), Source: "test"},
	}}}
	label, ok := p.Merge(extra).OfficialPreLaunch("x")
	if want := "Phala pre-launch v1.2.3, line continuations joined (sha256 2d7116…)"; !ok || label != want {
		t.Errorf("label %q, want %q", label, want)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
