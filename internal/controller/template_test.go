package controller

import (
	"strings"
	"testing"
	"time"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
)

func TestRenderDataTemplates(t *testing.T) {
	token := &clearance.Token{AccessToken: "eyJ.tok.en", TokenType: "Bearer", ExpiresAt: time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC)}
	conn := &clearance.ConnectionFile{ServicePrincipalID: "151", TenantID: "tenant-a", FirstAddresses: map[string]string{
		"DocumentStoreBaseAddresses": "https://ds.example/api/v1/",
		"CADApiAddresses":            "https://cad.example/api",
	}}
	values := templateValuesFor(token, conn)

	cases := []struct {
		name string
		data map[string]string
		want map[string]string
		// err is a substring of the error; "" expects success.
		err string
	}{
		{
			name: "authorization header",
			data: map[string]string{"authorization": "Bearer {{ .Token }}"},
			want: map[string]string{"authorization": "Bearer eyJ.tok.en"},
		},
		{
			name: "JSON config file with an address",
			data: map[string]string{"config.json": `{"documentStore": {{ .Addresses.documentStoreBaseAddress | trimSuffix "/" | toJson }}, "token": {{ toJson .Token }}, "expires": "{{ .ExpiresAt }}"}`},
			want: map[string]string{"config.json": `{"documentStore": "https://ds.example/api/v1", "token": "eyJ.tok.en", "expires": "2026-12-07T11:00:00Z"}`},
		},
		{
			name: ".netrc",
			data: map[string]string{".netrc": "machine {{ .Addresses.cadApiAddress | trimPrefix \"https://\" | replace \"/api\" \"\" }} login {{ .ClientID }} password {{ .Token }}\n"},
			want: map[string]string{".netrc": "machine cad.example login 151@tenant-a password eyJ.tok.en\n"},
		},
		{
			name: "functions and builtins",
			data: map[string]string{
				"a": `{{ quote .TenantID }} {{ upper .TokenType }} {{ lower "ABC" }} {{ trim "  x  " }} {{ b64enc "151:x" }}`,
				"b": `{{ if eq .TokenType "Bearer" }}yes{{ else }}no{{ end }} {{ with .TenantID }}{{ . }}{{ end }} {{ printf "%s@%d" "n" 3 }} {{ len .Addresses }}`,
			},
			want: map[string]string{
				"a": `"tenant-a" BEARER abc x MTUxOng=`,
				"b": "yes tenant-a n@3 2",
			},
		},
		{name: "syntax error", data: map[string]string{"bad": "{{ .Token "}, err: `data["bad"]: template: bad:1: unclosed action`},
		{name: "the private key is no field", data: map[string]string{"k": "{{ .PrivateKey }}"}, err: `data["k"]`},
		{name: "the APIKey is no field", data: map[string]string{"k": "{{ .APIKey }}"}, err: "can't evaluate field APIKey"},
		{name: "no connection file either", data: map[string]string{"k": "{{ .Connection }}"}, err: "can't evaluate field Connection"},
		{name: "unknown address", data: map[string]string{"k": "{{ .Addresses.nowhere }}"}, err: `map has no entry for key "nowhere"`},
		{name: "unknown function", data: map[string]string{"k": `{{ env "HOME" }}`}, err: `function "env" not defined`},
		{name: "range is refused", data: map[string]string{"k": "{{ range 1000000000 }}{{ end }}"}, err: "range is not supported"},
		{name: "range nested in if is refused", data: map[string]string{"k": "{{ if .Token }}{{ range .Addresses }}{{ . }}{{ end }}{{ end }}"}, err: "range is not supported"},
		{name: "recursion is refused", data: map[string]string{"k": `{{ define "x" }}{{ template "x" }}{{ end }}{{ template "x" }}`}, err: "not supported"},
		{name: "fixed key token", data: map[string]string{"token": "x"}, err: "operator's own keys"},
		{name: "fixed key expiresAt", data: map[string]string{"expiresAt": "x"}, err: "operator's own keys"},
		{name: "fixed key clientId", data: map[string]string{"clientId": "x"}, err: "operator's own keys"},
		{name: "an address key", data: map[string]string{"documentStoreBaseAddress": "x"}, err: "address key"},
		{name: "invalid key", data: map[string]string{"a/b": "x"}, err: "not a valid Secret data key"},
		{name: "dot key", data: map[string]string{"..": "x"}, err: "not a valid Secret data key"},
		{name: "long key", data: map[string]string{strings.Repeat("k", 254): "x"}, err: "not a valid Secret data key"},
		{name: "template too long", data: map[string]string{"k": strings.Repeat("x", maxTemplateSource+1)}, err: "template is 8193 bytes"},
		{name: "rendered value too large", data: map[string]string{"k": `{{ printf "%0999999d" 1 }}`}, err: "rendered value exceeds"},
		{
			name: "all values together too large",
			data: func() map[string]string {
				m := map[string]string{}
				for _, k := range []string{"a", "b", "c", "d", "e"} {
					m[k] = `{{ printf "%015000d" 1 }}`
				}
				return m
			}(),
			err: `data["e"]: rendered value exceeds`,
		},
		{
			name: "too many keys",
			data: func() map[string]string {
				m := map[string]string{}
				for i := range maxTemplateKeys + 1 {
					m[strings.Repeat("k", i+1)] = "x"
				}
				return m
			}(),
			err: "33 keys",
		},
		{name: "an error does not carry the token", data: map[string]string{"k": "{{ index .Token 1 }}{{ call .Token }}"}, err: `data["k"]`},
		{name: "no templates", data: nil, want: map[string]string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := renderDataTemplates(&clearancev1alpha1.SecretTemplate{Data: tc.data}, values)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				if strings.Contains(err.Error(), values.Token) {
					t.Fatalf("error carries the token: %v", err)
				}
				if p := templateProblem(err); p.reason != clearancev1alpha1.ReasonTemplateInvalid {
					t.Fatalf("reason %q", p.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("rendered %d keys, want %d: %q", len(got), len(tc.want), got)
			}
			for k, w := range tc.want {
				if string(got[k]) != w {
					t.Errorf("%s = %q, want %q", k, got[k], w)
				}
			}
		})
	}
}

func TestTemplateHashCoversData(t *testing.T) {
	cred := &clearancev1alpha1.ClearanceCredential{}
	if templateHash(cred) != "" {
		t.Fatal("no template must hash empty")
	}
	cred.Spec.SecretTemplate = &clearancev1alpha1.SecretTemplate{Labels: map[string]string{"a": "b"}}
	labelsOnly := templateHash(cred)
	cred.Spec.SecretTemplate.Data = map[string]string{"k": "{{ .Token }}"}
	withData := templateHash(cred)
	cred.Spec.SecretTemplate.Data["k"] = "Bearer {{ .Token }}"
	if labelsOnly == withData || withData == templateHash(cred) {
		t.Fatal("a data template change must change the hash")
	}
	cred.Spec.SecretTemplate = &clearancev1alpha1.SecretTemplate{Data: map[string]string{"k": "x"}}
	if templateHash(cred) == "" {
		t.Fatal("a data template alone must hash")
	}
}

func TestTargetContentKeepsFixedKeys(t *testing.T) {
	m := &mintedToken{
		token:      &clearance.Token{AccessToken: "tok", TokenType: "Bearer", ExpiresAt: time.Now()},
		connection: &clearance.ConnectionFile{TenantID: "t", FirstAddresses: map[string]string{"ApiBaseAddresses": "https://api.example"}},
	}
	data, _ := targetContent(m, map[string][]byte{"token": []byte("forged"), "apiBaseAddress": []byte("forged"), "extra": []byte("x")})
	if string(data["token"]) != "tok" || string(data["apiBaseAddress"]) != "https://api.example" || string(data["extra"]) != "x" {
		t.Fatalf("data %q", data)
	}
}
