package cloud_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/cvmdeploy/cvmdeploy/testnet/cloud"
)

// TestAppComposeTemplate pins the bytes of the stored app-compose: the 2026
// server template of reference A3 (compact, sorted keys, exactly these
// keys), whose sha256 is the compose hash the provision answers. There is
// no pre_launch_script unless the request sends one.
func TestAppComposeTemplate(t *testing.T) {
	a := newAPI(t)
	tests := []struct {
		name string
		cf   map[string]any
		want string
	}{
		{"what the official CLI sends",
			map[string]any{"allowed_envs": []string{"GREETING", "DB_PASSWORD"}, "docker_compose_file": "services:\n  web:\n    image: nginx:1.27\n",
				"name": "", "public_logs": true, "public_sysinfo": true},
			`{"allowed_envs":["GREETING","DB_PASSWORD"],"docker_compose_file":"services:\n  web:\n    image: nginx:1.27\n","features":["kms","tproxy-net"],"gateway_enabled":true,"kms_enabled":true,"local_key_provider_enabled":false,"manifest_version":2,"name":"","no_instance_id":false,"public_logs":true,"public_sysinfo":true,"public_tcbinfo":true,"runner":"docker-compose","secure_time":false,"storage_fs":"zfs","tproxy_enabled":true}`},
		{"defaults: no name, no allowed_envs, no flags",
			map[string]any{"docker_compose_file": "services: {}\n"},
			`{"allowed_envs":[],"docker_compose_file":"services: {}\n","features":["kms","tproxy-net"],"gateway_enabled":true,"kms_enabled":true,"local_key_provider_enabled":false,"manifest_version":2,"name":"","no_instance_id":false,"public_logs":true,"public_sysinfo":true,"public_tcbinfo":true,"runner":"docker-compose","secure_time":false,"storage_fs":"zfs","tproxy_enabled":true}`},
		{"every field set, deprecated tproxy_enabled, no HTML escaping",
			map[string]any{"allowed_envs": []string{"A"}, "docker_compose_file": "services:\n  a:\n    command: sh -c 'x && y > z <w'\n",
				"name": "my-app", "pre_launch_script": "#!/bin/sh\necho hi\n", "public_logs": false, "public_sysinfo": false,
				"public_tcbinfo": false, "tproxy_enabled": false, "secure_time": true, "storage_fs": "ext4", "kms_enabled": true},
			`{"allowed_envs":["A"],"docker_compose_file":"services:\n  a:\n    command: sh -c 'x && y > z <w'\n","features":["kms","tproxy-net"],"gateway_enabled":false,"kms_enabled":true,"local_key_provider_enabled":false,"manifest_version":2,"name":"my-app","no_instance_id":false,"pre_launch_script":"#!/bin/sh\necho hi\n","public_logs":false,"public_sysinfo":false,"public_tcbinfo":false,"runner":"docker-compose","secure_time":true,"storage_fs":"ext4","tproxy_enabled":false}`},
		{"gateway_enabled wins over tproxy_enabled; empty pre_launch_script kept",
			map[string]any{"docker_compose_file": "x: 1\n", "gateway_enabled": true, "tproxy_enabled": false, "pre_launch_script": ""},
			`{"allowed_envs":[],"docker_compose_file":"x: 1\n","features":["kms","tproxy-net"],"gateway_enabled":true,"kms_enabled":true,"local_key_provider_enabled":false,"manifest_version":2,"name":"","no_instance_id":false,"pre_launch_script":"","public_logs":true,"public_sysinfo":true,"public_tcbinfo":true,"runner":"docker-compose","secure_time":false,"storage_fs":"zfs","tproxy_enabled":true}`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := a.forTest(t)
			_, hash, stored := a.cloudKMSCVM(map[string]any{"name": fmt.Sprintf("template-app-%d", i), "compose_file": tt.cf})
			if string(stored) != tt.want {
				t.Errorf("stored app-compose:\n%s\nwant:\n%s", stored, tt.want)
			}
			if sum := sha256.Sum256(stored); hex.EncodeToString(sum[:]) != hash {
				t.Errorf("compose_hash %s is not sha256 of the stored bytes (%x)", hash, sum)
			}
		})
	}
}

// TestAppComposeTemplateOnUpdate: PATCH rebuilds the app-compose from the
// same template, with the changed fields.
func TestAppComposeTemplateOnUpdate(t *testing.T) {
	a := newAPI(t)
	id, _, _ := a.cloudKMSCVM(map[string]any{"name": "template-update-app", "compose_file": map[string]any{
		"docker_compose_file": "services: {}\n", "allowed_envs": []string{"A"}, "name": "", "public_logs": true, "public_sysinfo": true}})
	a.do("PATCH", "/cvms/"+id, map[string]any{"docker_compose_file": "services:\n  b: {}\n", "public_sysinfo": false,
		"pre_launch_script": "#!/bin/sh\n"}).must(t, 202)
	cf := a.do("GET", "/cvms/"+id+"/compose_file", nil)
	want := `{"allowed_envs":["A"],"docker_compose_file":"services:\n  b: {}\n","features":["kms","tproxy-net"],"gateway_enabled":true,"kms_enabled":true,"local_key_provider_enabled":false,"manifest_version":2,"name":"","no_instance_id":false,"pre_launch_script":"#!/bin/sh\n","public_logs":true,"public_sysinfo":false,"public_tcbinfo":true,"runner":"docker-compose","secure_time":false,"storage_fs":"zfs","tproxy_enabled":true}`
	if string(cf.raw) != want {
		t.Errorf("app-compose after PATCH:\n%s\nwant:\n%s", cf.raw, want)
	}
	cvm := a.do("GET", "/cvms/"+id, nil).must(t, 200)
	if sum := sha256.Sum256(cf.raw); hex.EncodeToString(sum[:]) != cvm["compose_hash"] {
		t.Errorf("compose_hash %v is not sha256 of the stored bytes", cvm["compose_hash"])
	}
}

// defaultPreLaunchSHA256 pins cloud.DefaultPreLaunchScript: a test that
// injects it relies on these bytes.
const defaultPreLaunchSHA256 = "36044a0615d5280eeae4afcffc6b22953ac1406c120f28311c3d5da966d7c562"

// TestInjectPreLaunchScript: with Config.InjectPreLaunchScript the cloud
// puts that script into an app-compose whose request has none, and keeps a
// request's own script.
func TestInjectPreLaunchScript(t *testing.T) {
	if sum := sha256.Sum256([]byte(cloud.DefaultPreLaunchScript)); hex.EncodeToString(sum[:]) != defaultPreLaunchSHA256 {
		t.Fatalf("DefaultPreLaunchScript changed: sha256 %x", sum)
	}
	script := cloud.DefaultPreLaunchScript
	a, _ := newCloud(t, func(c *cloud.Config) { c.InjectPreLaunchScript = &script })
	tests := []struct {
		name string
		sent any // nil: the request has no pre_launch_script
		want string
	}{
		{"request without a script gets the injected one", nil, script},
		{"request with a script keeps it", "#!/bin/sh\necho mine\n", "#!/bin/sh\necho mine\n"},
		{"an empty script is a script", "", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := a.forTest(t)
			cf := map[string]any{"docker_compose_file": composeYAML, "allowed_envs": []string{}}
			if tt.sent != nil {
				cf["pre_launch_script"] = tt.sent
			}
			_, hash, stored := a.cloudKMSCVM(map[string]any{"name": fmt.Sprintf("inject-app-%d", i), "compose_file": cf})
			doc := decode(t, stored)
			if got, ok := doc["pre_launch_script"]; !ok || got != tt.want {
				t.Errorf("pre_launch_script = %#v (present %v), want %q", got, ok, tt.want)
			}
			if sum := sha256.Sum256(stored); hex.EncodeToString(sum[:]) != hash {
				t.Errorf("compose_hash is not sha256 of the stored bytes")
			}
		})
	}
	// The default cloud injects nothing.
	d := newAPI(t)
	_, _, stored := d.cloudKMSCVM(map[string]any{"name": "no-inject-app", "compose_file": map[string]any{"docker_compose_file": composeYAML}})
	if _, ok := decode(t, stored)["pre_launch_script"]; ok {
		t.Errorf("the default cloud injected a pre_launch_script: %s", stored)
	}
}
