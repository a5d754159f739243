package testutil

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

const testFile = `{
  "APIKey": "APIKEYVALUE1234567890ABCDEF",
  "ServicePrincipalId": "151",
  "ServicePrincipalKey": {"kty": "RSA", "n": "public-modulus-is-not-secret", "e": "AQAB",
    "d": "private-exponent-d-0123456789abcdef", "p": "prime-p-0123456789abcdef", "q": "prime-q-0123456789abcdef",
    "dp": "crt-dp-0123456789abcdef", "dq": "crt-dq-0123456789abcdef", "qi": "crt-qi-0123456789abcdef"}
}`

func TestFindSecretMaterial(t *testing.T) {
	needles := SecretMaterial([]byte(testFile), "access-token-value-0123456789")
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxNTEifQ.c2lnbmF0dXJl"
	tests := []struct {
		name      string
		published string
		leaks     bool
	}{
		{name: "clean", published: `Ready False ConnectionInvalid: connection file: ServicePrincipalKey.kty: must be "RSA"`, leaks: false},
		{name: "public members are not secret", published: "n=public-modulus-is-not-secret e=AQAB", leaks: false},
		{name: "APIKey", published: "key APIKEYVALUE1234567890ABCDEF", leaks: true},
		{name: "private exponent", published: "d=private-exponent-d-0123456789abcdef", leaks: true},
		{name: "a truncated private member", published: "qi starts crt-qi-012345678", leaks: true},
		{name: "the file's start", published: strings.TrimSpace(testFile)[:60], leaks: true},
		{name: "a token", published: "token access-token-value-0123456789 written", leaks: true},
		{name: "any JWT", published: "assertion " + jwt, leaks: true},
		{name: "a token base64-encoded, as Secret data in JSON", published: `"data":{"token":"` +
			base64.StdEncoding.EncodeToString([]byte("xx access-token-value-0123456789")) + `"}`, leaks: true},
		{name: "the APIKey inside a hex dump with escaped newlines", published: strings.ReplaceAll(
			hex.Dump([]byte("k8s\x00....APIKEYVALUE1234567890ABCDEF....")), "\n", `\n`), leaks: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			found := FindSecretMaterial(map[string]string{"source": tt.published}, needles)
			if (len(found) > 0) != tt.leaks {
				t.Fatalf("found %v, want a leak: %v", found, tt.leaks)
			}
			for _, f := range found {
				for _, n := range needles {
					if strings.Contains(f, n) {
						t.Fatalf("the finding %q repeats the secret", f)
					}
				}
			}
		})
	}
}

func TestSecretMaterialOfABrokenFile(t *testing.T) {
	broken := testFile[:len(testFile)/2]
	needles := SecretMaterial([]byte(broken))
	if found := FindSecretMaterial(map[string]string{"log": "APIKEYVALUE1234567890ABCDEF"}, needles); len(found) == 0 {
		t.Fatal("the APIKey of a truncated file is not among the needles")
	}
}
