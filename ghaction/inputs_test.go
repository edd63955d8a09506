package ghaction

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		token string
		want  string
	}{
		{"deploy", map[string]string{
			"INPUT_COMPOSE": "docker-compose.yml", "INPUT_NAME": "my-app", "INPUT_KMS": "base", "INPUT_CHAIN": "base",
			"INPUT_ENV_FILE": "a.env\n\n  b.env  \n", "INPUT_ENV": "DB_PASSWORD, STRIPE_KEY\nOTHER", "INPUT_WAIT": "true", "INPUT_YES": "true",
			"INPUT_KMS_CONTRACT": "0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C",
		}, "", "deploy --compose docker-compose.yml --name my-app --kms base --kms-contract 0x2f83172A49584C017F2B256F0FB2Dca14126Ba9C --chain base --env-file a.env --env-file b.env --env DB_PASSWORD --env STRIPE_KEY --env OTHER --yes --wait --json"},
		{"deploy dry run with a review page (no --wait)", map[string]string{
			"INPUT_COMMAND": "deploy", "INPUT_COMPOSE": "c.yml", "INPUT_DRY_RUN": "True", "INPUT_WAIT": "true", "INPUT_REVIEW_PAGE": "review.html",
		}, "", "deploy --compose c.yml --review review.html --dry-run --json"},
		{"update prepared, the CVM found by name", map[string]string{
			"INPUT_COMMAND": "update", "INPUT_NAME": "my-app", "INPUT_COMPOSE": "v2.yml", "INPUT_PREPARE_ONLY": "TRUE", "INPUT_WAIT": "true",
		}, "", "update --cvm my-app --compose v2.yml --prepare-only --json"},
		{"commit-update takes the token from the environment", map[string]string{
			"INPUT_COMMAND": "commit-update", "INPUT_CVM": "42", "INPUT_COMPOSE_HASH": "0xab", "INPUT_TRANSACTION_HASH": "0xcd", "INPUT_WAIT": "true",
		}, "tok-1", "commit-update --cvm 42 --token tok-1 --compose-hash 0xab --transaction-hash 0xcd --json"},
		{"status with extra args", map[string]string{
			"INPUT_COMMAND": "status", "INPUT_CVM": "42", "INPUT_WAIT": "false", "INPUT_EXTRA_ARGS": `--wait-timeout 20m --rpc-timeout "90s" --quiet`,
		}, "", "status --cvm 42 --wait-timeout 20m --rpc-timeout 90s --quiet --json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := FromEnv(env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			args, err := in.Args(tt.token)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(args, " "); got != tt.want {
				t.Fatalf("args\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestInputsRefused(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		token string
		want  string
	}{
		{"a value in env", map[string]string{"INPUT_COMPOSE": "c.yml", "INPUT_ENV": "A, DB_PASSWORD=s3cret-value"}, "", "env: entry 2 (DB_PASSWORD=…) has a value"},
		{"not a name in env", map[string]string{"INPUT_COMPOSE": "c.yml", "INPUT_ENV": "9LIVES"}, "", "env: entry 1 is not a variable name"},
		{"--env with a value in extra args", map[string]string{"INPUT_COMPOSE": "c.yml", "INPUT_EXTRA_ARGS": "--env A=s3cret-value"}, "", "--env with a value is refused"},
		{"--env= with a value in extra args", map[string]string{"INPUT_COMPOSE": "c.yml", "INPUT_EXTRA_ARGS": "--env=A=s3cret-value"}, "", "--env with a value is refused"},
		{"--token in extra args", map[string]string{"INPUT_COMMAND": "status", "INPUT_CVM": "1", "INPUT_EXTRA_ARGS": "--token s3cret-value"}, "", "--token is refused"},
		{"unknown command", map[string]string{"INPUT_COMMAND": "destroy"}, "", `command: want one of deploy, update, commit-update, status, got "destroy"`},
		{"deploy without compose", map[string]string{}, "", "compose is required to deploy"},
		{"dry-run on update", map[string]string{"INPUT_COMMAND": "update", "INPUT_CVM": "1", "INPUT_DRY_RUN": "true"}, "", "dry-run goes with deploy, not update"},
		{"prepare-only on deploy", map[string]string{"INPUT_COMPOSE": "c.yml", "INPUT_PREPARE_ONLY": "true"}, "", "prepare-only goes with update, not deploy"},
		{"kms on update", map[string]string{"INPUT_COMMAND": "update", "INPUT_CVM": "1", "INPUT_KMS": "base"}, "", "kms goes with deploy, not update"},
		{"update without a CVM", map[string]string{"INPUT_COMMAND": "update"}, "", "cvm (or name) is required for update"},
		{"commit-update without the token", map[string]string{"INPUT_COMMAND": "commit-update", "INPUT_CVM": "1", "INPUT_COMPOSE_HASH": "h", "INPUT_TRANSACTION_HASH": "x"}, "", "CVMDEPLOY_COMMIT_TOKEN environment variable"},
		{"a boolean that is not one", map[string]string{"INPUT_COMPOSE": "c.yml", "INPUT_WAIT": "yes"}, "", `wait: want true or false, got "yes"`},
		{"an open quote", map[string]string{"INPUT_COMPOSE": "c.yml", "INPUT_EXTRA_ARGS": `--name "x`}, "", "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := FromEnv(env(tt.env))
			if err == nil {
				_, err = in.Args(tt.token)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("%T is not an *InputError", err)
			}
			if strings.Contains(err.Error(), "s3cret-value") {
				t.Fatalf("the error repeats the value: %v", err)
			}
		})
	}
}

func TestSplitArgs(t *testing.T) {
	for in, want := range map[string][]string{
		"":                          nil,
		"  a  b\n c\t":              {"a", "b", "c"},
		`--x 'a b' --y "c 'd'" e""`: {"--x", "a b", "--y", "c 'd'", "e"},
		`''`:                        {""},
	} {
		got, err := SplitArgs(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
