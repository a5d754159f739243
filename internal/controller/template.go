package controller

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
)

// Bounds of spec.secretTemplate.data. The CRD enforces the number of keys
// and the template length too; they are checked here again for objects
// stored before the CRD knew them, and for the unit that renders them.
const (
	maxTemplateKeys = 32
	// maxTemplateSource bounds one template's text.
	maxTemplateSource = 8 << 10
	// maxRenderedValue bounds one rendered value.
	maxRenderedValue = 16 << 10
	// maxRenderedTotal bounds all rendered values of a Secret together,
	// far below the apiserver's 1 MiB per Secret.
	maxRenderedTotal = 64 << 10
)

// fixedDataKeys are the operator's own data keys; a template cannot replace them.
var fixedDataKeys = []string{
	clearancev1alpha1.SecretKeyToken, clearancev1alpha1.SecretKeyExpiresAt, clearancev1alpha1.SecretKeyTokenType,
	clearancev1alpha1.SecretKeyTenantID, clearancev1alpha1.SecretKeyClientID,
}

// secretDataKey is what the apiserver accepts as a Secret data key.
var secretDataKey = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// templateValues is everything a data template can see: the token, its
// expiry and type, and the non-secret fields of the connection file. There
// is deliberately no field for the private key, the APIKey or the file: a
// template naming anything else fails with "can't evaluate field".
type templateValues struct {
	Token     string
	ExpiresAt string // RFC 3339, UTC
	TokenType string
	TenantID  string
	ClientID  string
	// Addresses maps the address data keys (documentStoreBaseAddress, ...) to the first address of each list.
	Addresses map[string]string
}

// templateValuesFor is what the templates see for a token and the connection file it was minted from.
func templateValuesFor(token *clearance.Token, conn *clearance.ConnectionFile) templateValues {
	v := templateValues{
		Token: token.AccessToken, ExpiresAt: formatTime(token.ExpiresAt), TokenType: token.TokenType,
		TenantID: conn.TenantID, ClientID: conn.ClientID(), Addresses: map[string]string{},
	}
	for member, addr := range conn.FirstAddresses {
		v.Addresses[clearancev1alpha1.AddressDataKey(member)] = addr
	}
	return v
}

// placeholderToken stands in for the token when templates are tried before
// a token is requested, so a template that cannot render costs no request.
var placeholderToken = &clearance.Token{AccessToken: "placeholder", TokenType: "Bearer"}

// templateFuncs are the functions a data template may call besides the
// text/template builtins. The argument order follows sprig's, so the last
// argument is the piped value: {{ .Addresses.apiBaseAddress | trimSuffix "/" }}.
var templateFuncs = template.FuncMap{
	"toJson": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"quote":      func(s string) string { return strconv.Quote(s) },
	"b64enc":     func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
	"upper":      strings.ToUpper,
	"lower":      strings.ToLower,
	"trim":       strings.TrimSpace,
	"trimPrefix": func(prefix, s string) string { return strings.TrimPrefix(s, prefix) },
	"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
	"replace":    func(old, replacement, s string) string { return strings.ReplaceAll(s, old, replacement) },
}

// templateError is a data template that cannot be used: the key and the problem.
type templateError struct {
	key, problem string
}

func (e *templateError) Error() string {
	return fmt.Sprintf("spec.secretTemplate.data[%q]: %s", e.key, e.problem)
}

// parsedTemplates are the checked templates of spec.secretTemplate.data.
type parsedTemplates map[string]*template.Template

// parseDataTemplates checks the keys and parses the templates. Besides
// syntax, it refuses what would make rendering cost more than the
// template's length: range (range 1000000000 loops without output) and
// template calls (recursion). Templates run in the operator for every
// tenant, so rendering time must stay linear in the template text.
func parseDataTemplates(data map[string]string) (parsedTemplates, error) {
	if len(data) > maxTemplateKeys {
		return nil, &templateError{key: "", problem: fmt.Sprintf("%d keys, at most %d are allowed", len(data), maxTemplateKeys)}
	}
	out := make(parsedTemplates, len(data))
	for _, key := range slices.Sorted(maps.Keys(data)) {
		text := data[key]
		switch {
		case len(key) > 253 || !secretDataKey.MatchString(key) || key == "." || key == "..":
			return nil, &templateError{key, "not a valid Secret data key (alphanumerics, '-', '_' or '.', at most 253 characters)"}
		case slices.Contains(fixedDataKeys, key):
			return nil, &templateError{key, "is one of the operator's own keys and cannot be templated"}
		case len(text) > maxTemplateSource:
			return nil, &templateError{key, fmt.Sprintf("template is %d bytes, at most %d are allowed", len(text), maxTemplateSource)}
		}
		t, err := template.New(key).Funcs(templateFuncs).Option("missingkey=error").Parse(text)
		if err != nil {
			return nil, &templateError{key, err.Error()}
		}
		if len(t.Templates()) > 1 {
			return nil, &templateError{key, "define and block are not supported"}
		}
		if t.Tree != nil {
			if node := forbiddenNode(t.Root); node != "" {
				return nil, &templateError{key, node + " is not supported"}
			}
		}
		out[key] = t
	}
	return out, nil
}

// forbiddenNode returns the first construct of the tree that rendering does
// not allow ("range", "template"), or "".
func forbiddenNode(n parse.Node) string {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return ""
		}
		for _, c := range n.Nodes {
			if f := forbiddenNode(c); f != "" {
				return f
			}
		}
	case *parse.RangeNode:
		return "range"
	case *parse.TemplateNode:
		return "template"
	case *parse.IfNode:
		return firstOf(forbiddenNode(n.List), forbiddenNode(n.ElseList))
	case *parse.WithNode:
		return firstOf(forbiddenNode(n.List), forbiddenNode(n.ElseList))
	}
	return ""
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// render executes the templates with v. A key that collides with an address
// key of the connection file is refused: the operator writes that one.
// Rendered values are capped per key and in total; a render stops as soon as
// it passes the cap. Error messages never carry the token.
func (p parsedTemplates) render(v templateValues) (map[string][]byte, error) {
	out := make(map[string][]byte, len(p))
	total := 0
	for _, key := range slices.Sorted(maps.Keys(p)) {
		if _, ok := v.Addresses[key]; ok {
			return nil, &templateError{key, "is the address key the operator writes from the connection file and cannot be templated"}
		}
		w := &cappedBuffer{limit: min(maxRenderedValue, maxRenderedTotal-total)}
		if err := p[key].Execute(w, v); err != nil {
			msg := err.Error()
			if errors.Is(err, errRenderTooLarge) {
				msg = fmt.Sprintf("rendered value exceeds %d bytes (%d for all keys together)", maxRenderedValue, maxRenderedTotal)
			}
			if v.Token != "" {
				msg = strings.ReplaceAll(msg, v.Token, "[token]")
			}
			return nil, &templateError{key, msg}
		}
		total += w.Len()
		out[key] = w.Bytes()
	}
	return out, nil
}

// errRenderTooLarge stops a render that passed its cap.
var errRenderTooLarge = errors.New("rendered value too large")

// cappedBuffer is a buffer that refuses to grow past limit.
type cappedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, errRenderTooLarge
	}
	return b.Buffer.Write(p)
}

// templateData returns the data templates of a secretTemplate (nil for none).
func templateData(t *clearancev1alpha1.SecretTemplate) map[string]string {
	if t == nil {
		return nil
	}
	return t.Data
}

// renderDataTemplates parses and renders a secretTemplate's data templates.
func renderDataTemplates(t *clearancev1alpha1.SecretTemplate, v templateValues) (map[string][]byte, error) {
	p, err := parseDataTemplates(templateData(t))
	if err != nil {
		return nil, err
	}
	return p.render(v)
}

// templateProblem turns a template error into the condition it causes.
func templateProblem(err error) *sourceProblem {
	return &sourceProblem{clearancev1alpha1.ReasonTemplateInvalid,
		err.Error() + "; the target Secret is left as it is until spec.secretTemplate.data is fixed"}
}
