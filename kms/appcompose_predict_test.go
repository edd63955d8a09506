package kms

import (
	"errors"
	"strings"
	"testing"
)

const testCompose = "services:\n  web:\n    image: nginx@sha256:abc\n"

// testExpectation is a typical on-chain-KMS deploy: two env keys, logs and
// sysinfo public, gateway on, no pre-launch script of the user's.
func testExpectation() ComposeExpectation {
	return ComposeExpectation{
		DockerCompose:  testCompose,
		AllowedEnvs:    []string{"API_KEY", "DB_URL"},
		PublicLogs:     true,
		PublicSysinfo:  true,
		PublicTcbinfo:  true,
		GatewayEnabled: true,
		KMSEnabled:     true,
	}
}

// honest2026 is what the 2026 server writes for testExpectation (reference
// A3's inferred template, keys sorted, compact), written out by hand.
const honest2026 = `{"allowed_envs":["API_KEY","DB_URL"],"docker_compose_file":"services:\n  web:\n    image: nginx@sha256:abc\n","features":["kms","tproxy-net"],"gateway_enabled":true,"kms_enabled":true,"local_key_provider_enabled":false,"manifest_version":2,"name":"","no_instance_id":false,"public_logs":true,"public_sysinfo":true,"public_tcbinfo":true,"runner":"docker-compose","secure_time":false,"storage_fs":"zfs","tproxy_enabled":true}`

func TestPredictCompact2026(t *testing.T) {
	cands, err := DefaultPins().Predict(testExpectation())
	if err != nil {
		t.Fatal(err)
	}
	if len(cands) != 2 {
		t.Fatalf("%d candidates, want 2 (phala-2026 as compact and indent4)", len(cands))
	}
	c := cands[0]
	if c.Serialization != SerializationCompact || c.Template != "phala-2026" {
		t.Errorf("first candidate %s/%s", c.Template, c.Serialization)
	}
	if string(c.Doc) != honest2026 {
		t.Errorf("compact candidate\n%s\nwant\n%s", c.Doc, honest2026)
	}
	if c.Hash != sha256Hex(honest2026) {
		t.Errorf("hash %s, want sha256 of the document %s", c.Hash, sha256Hex(honest2026))
	}
	if strings.Contains(string(c.Doc), "pre_launch_script") {
		t.Error("a pre_launch_script key without a script of the user's")
	}
	indent := cands[1]
	if indent.Serialization != SerializationIndent4 || !strings.HasPrefix(string(indent.Doc), "{\n    \"allowed_envs\":[\n        \"API_KEY\",") {
		t.Errorf("second candidate %s:\n%s", indent.Serialization, indent.Doc)
	}
}

func TestPredictWithUsersScript(t *testing.T) {
	exp := testExpectation()
	script := "#!/bin/bash\necho mine\n"
	exp.PreLaunchScript = &script
	cands, err := DefaultPins().Predict(exp)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(honest2026, `"no_instance_id":false,`, `"no_instance_id":false,"pre_launch_script":"#!/bin/bash\necho mine\n",`, 1)
	if string(cands[0].Doc) != want {
		t.Errorf("got\n%s\nwant\n%s", cands[0].Doc, want)
	}
}

func TestPredictNamesAndDrops(t *testing.T) {
	p := DefaultPins()

	exp := testExpectation()
	exp.Names = []string{"", "my-cvm"}
	if cands, err := p.Predict(exp); err != nil || len(cands) != 4 {
		t.Errorf("two names: %d candidates, %v; want 4", len(cands), err)
	}

	// The indent4 replace would turn `"hi": now` into `"hi":now` inside the
	// compose file, so only the compact candidate keeps the user's compose.
	exp = testExpectation()
	exp.DockerCompose = "services:\n  web:\n    command: echo '\"hi\": now'\n"
	cands, err := p.Predict(exp)
	if err != nil || len(cands) != 1 || cands[0].Serialization != SerializationCompact {
		t.Errorf("compose with `\": `: %d candidates, %v; want compact only", len(cands), err)
	}

	// Every pinned template turns the gateway on.
	exp = testExpectation()
	exp.GatewayEnabled = false
	_, err = p.Predict(exp)
	if !errors.Is(err, ErrNoPrediction) || !strings.Contains(err.Error(), "the gateway is on (tproxy_enabled is true, features include \"tproxy-net\"), but you turned it off") {
		t.Errorf("gateway off: %v", err)
	}

	if _, err := (&Pins{}).Predict(testExpectation()); !errors.Is(err, ErrNoPrediction) {
		t.Errorf("empty pins: %v", err)
	}
}

func TestMatchPrediction(t *testing.T) {
	cands, err := DefaultPins().Predict(testExpectation())
	if err != nil {
		t.Fatal(err)
	}
	h := sha256Hex(honest2026)
	for _, want := range []string{h, "0x" + strings.ToUpper(h), "sha256:" + h} {
		if c := MatchPrediction(cands, want); c == nil || c.Serialization != SerializationCompact {
			t.Errorf("MatchPrediction(%s) = %v", want, c)
		}
	}
	for _, want := range []string{sha256Hex("other"), "nothex", ""} {
		if c := MatchPrediction(cands, want); c != nil {
			t.Errorf("MatchPrediction(%q) matched %s", want, c.Hash)
		}
	}
}
