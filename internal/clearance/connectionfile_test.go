package clearance

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
)

func TestParseConnectionFileDotNetShape(t *testing.T) {
	g := NewWithT(t)
	key := testKey(t)
	cf, err := ParseConnectionFile(connectionFileJSON(t, key, nil,
		"https://clearance-a-sts.example/connect/", "https://clearance-b-sts.example/connect"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cf.ServicePrincipalID).To(Equal(testSPID))
	g.Expect(cf.TenantID).To(Equal(testTenant))
	g.Expect(cf.ClientID()).To(Equal("151@tenant123"))
	g.Expect(cf.KeyID).To(Equal(testKID))
	g.Expect(cf.PrivateKey.Equal(key)).To(BeTrue())
	g.Expect(cf.STSBaseAddresses).To(Equal([]string{"https://clearance-a-sts.example/connect", "https://clearance-b-sts.example/connect"}))
	g.Expect(cf.FirstAddresses).To(Equal(map[string]string{ //nolint:gosec // URLs, not credentials
		"DocumentStoreBaseAddresses":        "https://clearance-a-ds.example/api/v1",
		"SecurityTokenServiceBaseAddresses": "https://clearance-a-sts.example/connect/",
		"KeyStoreBaseAddresses":             "https://clearance-a-ks.example/api/v1",
		"DeviceServiceBaseAddresses":        "https://clearance-a-dev.example/api/v1",
		"CaseServiceBaseAddresses":          "https://clearance-a-case.example/api/v1",
		"SearchServiceBaseAddresses":        "https://clearance-a-search.example/api/v1",
		"UserServiceBaseAddresses":          "https://clearance-a-user.example/api/v1",
		"ApiBaseAddresses":                  "https://clearance-a-api.example/api/v1",
		"CADApiAddresses":                   "https://clearance-a-cad.example/api",
	}))
	for _, v := range cf.FirstAddresses {
		g.Expect(v).NotTo(ContainSubstring(testAPIKey))
	}
	// Formatting the connection file must not print key material.
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		s := fmt.Sprintf(format, cf)
		g.Expect(s).NotTo(ContainSubstring(key.D.String()), format)
		g.Expect(s).NotTo(ContainSubstring(b64(key.D)), format)
		g.Expect(s).To(ContainSubstring("151@tenant123"), format)
	}
}

// TestParseConnectionFileLiteral uses the exact member order and spelling of a
// file downloaded from Clearance, with a BOM and Windows line endings.
func TestParseConnectionFileLiteral(t *testing.T) {
	g := NewWithT(t)
	key := testKey(t)
	key.Precompute()
	doc := fmt.Sprintf("\xEF\xBB\xBF{\r\n"+
		`  "DocumentStoreBaseAddresses": ["https://clearance-a-ds.example/api/v1"],`+"\r\n"+
		`  "SecurityTokenServiceBaseAddresses": ["https://clearance-a-sts.example/connect"],`+"\r\n"+
		`  "KeyStoreBaseAddresses": null, "DeviceServiceBaseAddresses": [], "CaseServiceBaseAddresses": [null, "https://case.example"],`+"\r\n"+
		`  "SearchServiceBaseAddresses": ["not a url"], "UserServiceBaseAddresses": ["https://user:pw@users.example"],`+"\r\n"+
		`  "ApiBaseAddresses": "https://api.example", "CADApiAddresses": ["https://cad.example"],`+"\r\n"+
		`  "APIKey": %q, "CertificateThumbprints": [], "DisableEncryption": false,`+"\r\n"+
		`  "ServicePrincipalId": "151",`+"\r\n"+
		`  "ServicePrincipalKey": {`+"\r\n"+
		`    "k": null, "kid": %q, "kty": "RSA", "use": null,`+"\r\n"+
		`    "n": %q, "e": "AQAB", "x5t": null, "d": %q, "p": %q, "q": %q,`+"\r\n"+
		`    "dp": %q, "dq": %q, "qi": %q, "nbf": "0001-01-01T00:00:00", "exp": "0001-01-01T00:00:00"`+"\r\n"+
		`  },`+"\r\n"+
		`  "TenantId": "tenant123", "SomeFutureField": {"nested": [1, 2, {"x": null}]}`+"\r\n"+
		"}\r\n",
		testAPIKey, testKID, b64(key.N), b64(key.D), b64(key.Primes[0]), b64(key.Primes[1]),
		b64(key.Precomputed.Dp), b64(key.Precomputed.Dq), b64(key.Precomputed.Qinv))
	cf, err := ParseConnectionFile([]byte(doc))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cf.ClientID()).To(Equal("151@tenant123"))
	g.Expect(cf.PrivateKey.Equal(key)).To(BeTrue())
	g.Expect(cf.FirstAddresses).To(Equal(map[string]string{ //nolint:gosec // URLs, not credentials
		"DocumentStoreBaseAddresses":        "https://clearance-a-ds.example/api/v1",
		"SecurityTokenServiceBaseAddresses": "https://clearance-a-sts.example/connect",
		"CaseServiceBaseAddresses":          "https://case.example",
		"ApiBaseAddresses":                  "https://api.example",
		"CADApiAddresses":                   "https://cad.example",
	}), "null/empty lists, non-URLs and URLs with credentials are left out")
}

func TestParseConnectionFileQuirks(t *testing.T) {
	key := testKey(t)
	tests := []struct {
		name   string
		mutate func(top, jwk map[string]any)
		check  func(g Gomega, cf *ConnectionFile)
	}{
		{
			name: "camelCase member names",
			mutate: func(top, _ map[string]any) {
				for _, k := range []string{"ServicePrincipalId", "TenantId", "ServicePrincipalKey", "SecurityTokenServiceBaseAddresses"} {
					top[strings.ToLower(k[:1])+k[1:]] = top[k]
					delete(top, k)
				}
			},
			check: func(g Gomega, cf *ConnectionFile) { g.Expect(cf.ClientID()).To(Equal("151@tenant123")) },
		},
		{
			name:   "numeric ServicePrincipalId",
			mutate: func(top, _ map[string]any) { top["ServicePrincipalId"] = 151 },
			check:  func(g Gomega, cf *ConnectionFile) { g.Expect(cf.ServicePrincipalID).To(Equal("151")) },
		},
		{
			name:   "surrounding whitespace in ids",
			mutate: func(top, _ map[string]any) { top["TenantId"] = " tenant123\n" },
			check:  func(g Gomega, cf *ConnectionFile) { g.Expect(cf.TenantID).To(Equal("tenant123")) },
		},
		{
			name:   "no kid",
			mutate: func(_, jwk map[string]any) { jwk["kid"] = nil },
			check:  func(g Gomega, cf *ConnectionFile) { g.Expect(cf.KeyID).To(BeEmpty()) },
		},
		{
			name:   "use sig and alg RS256",
			mutate: func(_, jwk map[string]any) { jwk["use"] = "sig"; jwk["alg"] = "RS256" },
		},
		{
			name: "padded base64url",
			mutate: func(_, jwk map[string]any) {
				for _, m := range []string{"n", "d", "p", "q", "dp", "dq", "qi"} {
					s := jwk[m].(string)
					for len(s)%4 != 0 {
						s += "="
					}
					jwk[m] = s
				}
			},
		},
		{
			name:   "x5t as empty string and unknown JWK members",
			mutate: func(_, jwk map[string]any) { jwk["x5t"] = ""; jwk["key_ops"] = []string{"sign"}; jwk["oth"] = nil },
		},
		{
			name: "JWK stored as a JSON string",
			mutate: func(top, jwk map[string]any) {
				top["ServicePrincipalKey"] = string(must(jsonMarshal(jwk)))
			},
		},
		{
			name: "STS list with null, empty and duplicate entries",
			mutate: func(top, _ map[string]any) {
				top["SecurityTokenServiceBaseAddresses"] = []any{nil, "", "http://sts.example:8090/connect//", "http://sts.example:8090/connect"}
			},
			check: func(g Gomega, cf *ConnectionFile) {
				g.Expect(cf.STSBaseAddresses).To(Equal([]string{"http://sts.example:8090/connect"}))
			},
		},
		{
			name:   "STS address as a bare string",
			mutate: func(top, _ map[string]any) { top["SecurityTokenServiceBaseAddresses"] = "https://sts.example" },
			check: func(g Gomega, cf *ConnectionFile) {
				g.Expect(cf.STSBaseAddresses).To(Equal([]string{"https://sts.example"}))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			cf, err := ParseConnectionFile(connectionFileJSON(t, key, tt.mutate))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cf.PrivateKey.Equal(key)).To(BeTrue())
			if tt.check != nil {
				tt.check(g, cf)
			}
		})
	}
}

func TestParseConnectionFileErrors(t *testing.T) {
	key, small := testKeys(t)
	plusOne := func(s string) string {
		n := new(big.Int).SetBytes(must(b64decode(s)))
		return b64(n.Add(n, big.NewInt(1)))
	}
	tests := []struct {
		name        string
		data        []byte // used instead of the generated file when set
		mutate      func(top, jwk map[string]any)
		wantField   string
		wantProblem string
	}{
		{name: "EC key", mutate: func(_, jwk map[string]any) {
			clear(jwk)
			jwk["kty"], jwk["crv"], jwk["x"], jwk["y"], jwk["d"] = "EC", "P-256", "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "jpsQnnGQmL-YBIffH1136cLSuIyO1JEG6TGzp8iUeQ4"
		}, wantField: "ServicePrincipalKey.kty", wantProblem: `key type "EC" is not supported`},
		{name: "oct key", mutate: func(_, jwk map[string]any) {
			clear(jwk)
			jwk["kty"], jwk["k"] = "oct", "GawgguFyGrWKav7AX4VKUg"
		}, wantField: "ServicePrincipalKey.kty", wantProblem: `key type "oct" is not supported`},
		{name: "unknown kty is not echoed", mutate: func(_, jwk map[string]any) { jwk["kty"] = "SECRET-KTY" },
			wantField: "ServicePrincipalKey.kty", wantProblem: "unsupported key type"},
		{name: "missing kty", mutate: func(_, jwk map[string]any) { jwk["kty"] = nil },
			wantField: "ServicePrincipalKey.kty", wantProblem: "missing"},
		{name: "public key only", mutate: func(_, jwk map[string]any) {
			for _, m := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				jwk[m] = nil
			}
		}, wantField: "ServicePrincipalKey", wantProblem: "contains only a public key"},
		{name: "missing dp", mutate: func(_, jwk map[string]any) { delete(jwk, "dp") },
			wantField: "ServicePrincipalKey.dp", wantProblem: "missing"},
		{name: "missing qi (null)", mutate: func(_, jwk map[string]any) { jwk["qi"] = nil },
			wantField: "ServicePrincipalKey.qi", wantProblem: "missing"},
		{name: "inconsistent CRT dp", mutate: func(_, jwk map[string]any) { jwk["dp"] = plusOne(jwk["dp"].(string)) },
			wantField: "ServicePrincipalKey", wantProblem: "inconsistent"},
		{name: "inconsistent CRT qi", mutate: func(_, jwk map[string]any) { jwk["qi"] = plusOne(jwk["qi"].(string)) },
			wantField: "ServicePrincipalKey", wantProblem: "inconsistent"},
		{name: "wrong private exponent", mutate: func(_, jwk map[string]any) { jwk["d"] = plusOne(jwk["d"].(string)) },
			wantField: "ServicePrincipalKey", wantProblem: "inconsistent"},
		{name: "p*q != n", mutate: func(_, jwk map[string]any) { jwk["p"] = plusOne(plusOne(jwk["p"].(string))) },
			wantField: "ServicePrincipalKey", wantProblem: "inconsistent"},
		{name: "1024-bit key", mutate: func(_, jwk map[string]any) {
			for k, v := range jwkMap(small, testKID) {
				jwk[k] = v
			}
		}, wantField: "ServicePrincipalKey.n", wantProblem: "RSA key is 1024 bits; at least 2048 bits are required"},
		{name: "oversized modulus", mutate: func(_, jwk map[string]any) { jwk["n"] = b64bytes(bytes.Repeat([]byte{0xff}, 1025)) },
			wantField: "ServicePrincipalKey.n", wantProblem: "RSA key is 8200 bits; at most 8192 bits are supported"},
		{name: "bad base64url in d", mutate: func(_, jwk map[string]any) { jwk["d"] = "!!not+base64/" },
			wantField: "ServicePrincipalKey.d", wantProblem: "not valid base64url"},
		{name: "standard base64 alphabet in n", mutate: func(_, jwk map[string]any) { jwk["n"] = "ab+/cd" },
			wantField: "ServicePrincipalKey.n", wantProblem: "not valid base64url"},
		{name: "number instead of string", mutate: func(_, jwk map[string]any) { jwk["e"] = 65537 },
			wantField: "ServicePrincipalKey.e", wantProblem: "must be a string"},
		{name: "empty modulus", mutate: func(_, jwk map[string]any) { jwk["n"] = "" },
			wantField: "ServicePrincipalKey.n", wantProblem: "not valid base64url"},
		{name: "key is an array", mutate: func(top, _ map[string]any) { top["ServicePrincipalKey"] = []int{1} },
			wantField: "ServicePrincipalKey", wantProblem: "must be a JSON Web Key object"},
		{name: "missing key", mutate: func(top, _ map[string]any) { delete(top, "ServicePrincipalKey") },
			wantField: "ServicePrincipalKey", wantProblem: "missing"},
		{name: "null key", mutate: func(top, _ map[string]any) { top["ServicePrincipalKey"] = nil },
			wantField: "ServicePrincipalKey", wantProblem: "missing"},
		{name: "missing ServicePrincipalId", mutate: func(top, _ map[string]any) { delete(top, "ServicePrincipalId") },
			wantField: "ServicePrincipalId", wantProblem: "missing"},
		{name: "empty ServicePrincipalId", mutate: func(top, _ map[string]any) { top["ServicePrincipalId"] = "  " },
			wantField: "ServicePrincipalId", wantProblem: "must not be empty"},
		{name: "ServicePrincipalId object", mutate: func(top, _ map[string]any) { top["ServicePrincipalId"] = map[string]int{"a": 1} },
			wantField: "ServicePrincipalId", wantProblem: "must be a string"},
		{name: "missing TenantId", mutate: func(top, _ map[string]any) { top["TenantId"] = nil },
			wantField: "TenantId", wantProblem: "missing"},
		{name: "control character in TenantId", mutate: func(top, _ map[string]any) { top["TenantId"] = "ten\x00ant" },
			wantField: "TenantId", wantProblem: "control characters"},
		{name: "missing STS addresses", mutate: func(top, _ map[string]any) { delete(top, "SecurityTokenServiceBaseAddresses") },
			wantField: "SecurityTokenServiceBaseAddresses", wantProblem: "missing"},
		{name: "empty STS addresses", mutate: func(top, _ map[string]any) { top["SecurityTokenServiceBaseAddresses"] = []string{} },
			wantField: "SecurityTokenServiceBaseAddresses", wantProblem: "at least one absolute http(s) URL"},
		{name: "relative STS address", mutate: func(top, _ map[string]any) { top["SecurityTokenServiceBaseAddresses"] = []string{"/connect"} },
			wantField: "SecurityTokenServiceBaseAddresses[0]", wantProblem: "not an absolute http(s) URL"},
		{name: "STS address without scheme", mutate: func(top, _ map[string]any) {
			top["SecurityTokenServiceBaseAddresses"] = []string{"https://ok.example/connect", "clearance-a-sts.example/connect"}
		}, wantField: "SecurityTokenServiceBaseAddresses[1]", wantProblem: "not an absolute http(s) URL"},
		{name: "non-http STS address", mutate: func(top, _ map[string]any) {
			top["SecurityTokenServiceBaseAddresses"] = []string{"ftp://sts.example/connect"}
		},
			wantField: "SecurityTokenServiceBaseAddresses[0]", wantProblem: "not an absolute http(s) URL"},
		{name: "opaque STS address", mutate: func(top, _ map[string]any) { top["SecurityTokenServiceBaseAddresses"] = []string{"https:sts.example"} },
			wantField: "SecurityTokenServiceBaseAddresses[0]", wantProblem: "missing host"},
		{name: "STS address with credentials", mutate: func(top, _ map[string]any) {
			top["SecurityTokenServiceBaseAddresses"] = []string{"https://user:" + testAPIKey + "@sts.example/connect"}
		}, wantField: "SecurityTokenServiceBaseAddresses[0]", wantProblem: "must not contain user info"},
		{name: "STS address with query", mutate: func(top, _ map[string]any) {
			top["SecurityTokenServiceBaseAddresses"] = []string{"https://sts.example/connect?x=1"}
		},
			wantField: "SecurityTokenServiceBaseAddresses[0]", wantProblem: "query or fragment"},
		{name: "STS address not a string", mutate: func(top, _ map[string]any) { top["SecurityTokenServiceBaseAddresses"] = []any{"https://a.example", 5} },
			wantField: "SecurityTokenServiceBaseAddresses[1]", wantProblem: "must be a string"},
		{name: "STS addresses object", mutate: func(top, _ map[string]any) { top["SecurityTokenServiceBaseAddresses"] = map[string]string{"a": "b"} },
			wantField: "SecurityTokenServiceBaseAddresses", wantProblem: "must be an array of URLs"},
		{name: "too large", data: append(connectionFileJSON(t, key, nil), bytes.Repeat([]byte(" "), MaxConnectionFileSize)...),
			wantField: "", wantProblem: "larger than the 1048576-byte limit"},
		{name: "syntax error", data: []byte(`{"APIKey": "` + testAPIKey + `" "ServicePrincipalId": "151"}`),
			wantField: "", wantProblem: "invalid JSON at byte offset 39"},
		{name: "syntax error after BOM counts the BOM", data: []byte("\xEF\xBB\xBF{\"APIKey\": \"" + testAPIKey + "\",}"),
			wantField: "", wantProblem: "invalid JSON at byte offset 42"},
		{name: "truncated", data: connectionFileJSON(t, key, nil)[:500], wantField: "", wantProblem: "invalid JSON"},
		{name: "array", data: []byte(`["` + testAPIKey + `"]`), wantField: "", wantProblem: "must be a JSON object"},
		{name: "null", data: []byte(`null`), wantField: "", wantProblem: "must be a JSON object"},
		{name: "empty", data: nil, wantField: "", wantProblem: "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			data := tt.data
			if data == nil && tt.mutate != nil {
				data = connectionFileJSON(t, key, tt.mutate)
			}
			cf, err := ParseConnectionFile(data)
			g.Expect(cf).To(BeNil())
			var cfErr *ConnectionFileError
			g.Expect(errors.As(err, &cfErr)).To(BeTrue(), "error %v is not a *ConnectionFileError", err)
			g.Expect(cfErr.Field).To(Equal(tt.wantField))
			g.Expect(cfErr.Problem).To(ContainSubstring(tt.wantProblem))
			if tt.wantField == "" {
				g.Expect(err.Error()).To(Equal("connection file: " + cfErr.Problem))
			} else {
				g.Expect(err.Error()).To(Equal("connection file: " + tt.wantField + ": " + cfErr.Problem))
			}
			g.Expect(err.Error()).NotTo(ContainSubstring("SECRET-KTY"))
			g.Expect(Hint(err)).To(Equal(HintConnectionFile))
			assertNoSecrets(t, err, append(secretsOf(key), secretsOf(small)...)...)
		})
	}
}

func TestLoadConnectionFileCache(t *testing.T) {
	g := NewWithT(t)
	c := NewClient()
	data := connectionFileJSON(t, testKey(t), nil)

	first, err := c.LoadConnectionFile(data)
	g.Expect(err).NotTo(HaveOccurred())
	second, err := c.LoadConnectionFile(bytes.Clone(data))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(second.PrivateKey).To(BeIdenticalTo(first.PrivateKey), "the JWK is decoded once per content")
	g.Expect(c.cache.size()).To(Equal(1))

	// Callers get their own copies of the slices and maps.
	first.STSBaseAddresses[0] = "mutated"
	first.FirstAddresses["DocumentStoreBaseAddresses"] = "mutated"
	third, err := c.LoadConnectionFile(data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(third.STSBaseAddresses[0]).To(Equal("https://clearance-a-sts.example/connect"))
	g.Expect(third.FirstAddresses["DocumentStoreBaseAddresses"]).To(Equal("https://clearance-a-ds.example/api/v1"))

	// A different version of the file is parsed anew.
	other, err := c.LoadConnectionFile(connectionFileJSON(t, testKey(t), func(top, _ map[string]any) { top["TenantId"] = "other" }))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(other.TenantID).To(Equal("other"))
	g.Expect(c.cache.size()).To(Equal(2))

	// Errors are reported and not cached.
	_, err = c.LoadConnectionFile([]byte(`{`))
	g.Expect(err).To(HaveOccurred())
	_, err = c.LoadConnectionFile(make([]byte, MaxConnectionFileSize+1))
	var cfErr *ConnectionFileError
	g.Expect(errors.As(err, &cfErr)).To(BeTrue())
	g.Expect(c.cache.size()).To(Equal(2))
}

func TestConnectionCacheEviction(t *testing.T) {
	g := NewWithT(t)
	cache := newConnectionCache(3)
	key := testKey(t)
	files := make([][]byte, 5)
	for i := range files {
		files[i] = connectionFileJSON(t, key, func(top, _ map[string]any) { top["TenantId"] = fmt.Sprintf("t%d", i) })
	}
	load := func(i int) *ConnectionFile {
		cf, err := cache.load(files[i])
		g.Expect(err).NotTo(HaveOccurred())
		return cf
	}
	k0 := load(0).PrivateKey
	load(1)
	load(2)
	g.Expect(load(0).PrivateKey).To(BeIdenticalTo(k0)) // 0 becomes most recently used
	load(3)                                            // evicts 1, the least recently used
	g.Expect(cache.size()).To(Equal(3))
	g.Expect(load(0).PrivateKey).To(BeIdenticalTo(k0))

	// Concurrent use is safe (run with -race).
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				if _, err := cache.load(files[(i+j)%len(files)]); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	g.Expect(cache.size()).To(Equal(3))
}
