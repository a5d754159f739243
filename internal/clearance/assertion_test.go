package clearance

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestNewAssertionClaims(t *testing.T) {
	g := NewWithT(t)
	conn := mustConnection(t, nil)
	signed, err := newAssertion(conn, "https://clearance-a-sts.example/connect/token", testNow)
	g.Expect(err).NotTo(HaveOccurred())
	parts := strings.Split(signed, ".")
	g.Expect(parts).To(HaveLen(3))

	var header, claims map[string]any
	g.Expect(json.Unmarshal(must(base64.RawURLEncoding.DecodeString(parts[0])), &header)).To(Succeed())
	g.Expect(json.Unmarshal(must(base64.RawURLEncoding.DecodeString(parts[1])), &claims)).To(Succeed())
	g.Expect(header).To(Equal(map[string]any{"alg": "RS256", "typ": "JWT", "kid": testKID}))

	iat := float64(testNow.Truncate(time.Second).Unix())
	g.Expect(claims).To(HaveKeyWithValue("iss", "151@tenant123"))
	g.Expect(claims).To(HaveKeyWithValue("sub", "151@tenant123"))
	g.Expect(claims).To(HaveKeyWithValue("aud", "https://clearance-a-sts.example/connect/token"), "a single string, not an array")
	g.Expect(claims).To(HaveKeyWithValue("iat", iat))
	g.Expect(claims).To(HaveKeyWithValue("nbf", iat))
	g.Expect(claims).To(HaveKeyWithValue("exp", iat+AssertionLifetime.Seconds()))
	g.Expect(claims["jti"]).To(MatchRegexp(`^[0-9a-f]{32}$`))
	g.Expect(claims).To(HaveLen(7))

	again, err := newAssertion(conn, "", testNow)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).NotTo(Equal(signed))
	claims = nil
	g.Expect(json.Unmarshal(must(base64.RawURLEncoding.DecodeString(strings.Split(again, ".")[1])), &claims)).To(Succeed())
	g.Expect(claims).NotTo(HaveKey("aud"))
}
