package testutil

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// JWTPattern matches a compact JWS or JWE (a base64url JSON header starting
// with "eyJ", a dot, and a base64url JSON payload). Client assertions and the
// STS's access tokens both have this shape, so finding it in anything the
// operator publishes means a credential leaked, whichever one it was.
var JWTPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.?[A-Za-z0-9_-]*`)

// privateKeyMembers are the RSA JWK members that reveal the private key.
var privateKeyMembers = []string{"d", "p", "q", "dp", "dq", "qi"}

// SecretMaterial lists what must never be published for a connection file and
// the tokens issued from it: the APIKey, every private-key member of the JWK
// (whole and as a 16-character prefix, so a truncated value is caught too),
// the start of the file itself, and the tokens. Members are found with
// patterns rather than a JSON parser, so deliberately broken files yield
// their secrets as well. Each value is also listed base64-encoded (at the
// three possible alignments), the form Secret data takes in JSON, so a
// logged Secret body is caught too.
func SecretMaterial(connectionFile []byte, tokens ...string) []string {
	var out []string
	add := func(v string) {
		if len(v) < 8 {
			return
		}
		out = append(out, v)
		for skip := 0; skip < 3 && len(v)-skip >= 12; skip++ {
			aligned := v[skip:]
			aligned = aligned[:len(aligned)/3*3]
			out = append(out, base64.StdEncoding.EncodeToString([]byte(aligned)))
		}
	}
	text := string(connectionFile)
	for _, m := range memberPattern("APIKey").FindAllStringSubmatch(text, -1) {
		add(m[1])
	}
	for _, name := range privateKeyMembers {
		for _, m := range memberPattern(name).FindAllStringSubmatch(text, -1) {
			add(m[1])
			if len(m[1]) > 16 {
				add(m[1][:16])
			}
		}
	}
	if trimmed := strings.TrimSpace(text); len(trimmed) >= 40 {
		add(trimmed[:40])
	}
	for _, t := range tokens {
		add(t)
	}
	return out
}

// memberPattern matches a JSON string member by exact name, capturing its value.
func memberPattern(name string) *regexp.Regexp {
	return regexp.MustCompile(`"` + regexp.QuoteMeta(name) + `"\s*:\s*"([^"\\]+)"`)
}

// FindSecretMaterial searches every source (a name and its published text,
// e.g. "status of ns/cred", "manager log") for the needles and for anything
// shaped like a JWT. It describes each finding by source, the needle's
// position in needles and the byte offset, never by the secret itself, so a
// failure message does not spread what it found.
func FindSecretMaterial(sources map[string]string, needles []string) []string {
	names := make([]string, 0, len(sources))
	for name := range sources {
		names = append(names, name)
	}
	sort.Strings(names)
	var found []string
	for _, name := range names {
		text := sources[name]
		if raw := UndumpHex(text); raw != "" {
			text += "\n" + raw
		}
		for i, n := range needles {
			if n == "" {
				continue
			}
			if at := strings.Index(text, n); at >= 0 {
				found = append(found, fmt.Sprintf("%s: secret #%d (%d characters) at byte %d", name, i, len(n), at))
			}
		}
		if loc := JWTPattern.FindStringIndex(text); loc != nil {
			found = append(found, fmt.Sprintf("%s: a JWT-shaped string (%d characters) at byte %d", name, loc[1]-loc[0], loc[0]))
		}
	}
	return found
}

// hexDumpRow matches a row of a hex dump as encoding/hex.Dump writes it
// (client-go logs protobuf request and response bodies that way), whether
// its line breaks are real or escaped as "\n" inside a structured log field.
var hexDumpRow = regexp.MustCompile(`[0-9a-f]{8}  ((?:[0-9a-f]{2}  ?){1,16}) *\|`)

// UndumpHex returns the bytes of every hex dump row in text, concatenated in
// order ("" when there is none), so that secrets split across the rows of a
// dump can be searched for.
func UndumpHex(text string) string {
	var b strings.Builder
	for _, m := range hexDumpRow.FindAllStringSubmatch(text, -1) {
		raw, err := hex.DecodeString(strings.ReplaceAll(m[1], " ", ""))
		if err == nil {
			b.Write(raw)
		}
	}
	return b.String()
}
