package v1alpha1

import "strings"

// AddressDataKey is the target Secret data key holding the first address of
// a connection-file address list: "DocumentStoreBaseAddresses" ->
// "documentStoreBaseAddress", "CADApiAddresses" -> "cadApiAddress".
func AddressDataKey(member string) string {
	return strings.TrimSuffix(lowerCamel(member), "es")
}

// lowerCamel turns a .NET member name into lowerCamel case, keeping the
// capital that starts the word after a leading acronym.
func lowerCamel(s string) string {
	r := []rune(s)
	i := 0
	for i < len(r) && r[i] >= 'A' && r[i] <= 'Z' {
		i++
	}
	switch {
	case i == 0:
		return s
	case i == 1 || i == len(r):
		return strings.ToLower(string(r[:i])) + string(r[i:])
	default:
		return strings.ToLower(string(r[:i-1])) + string(r[i-1:])
	}
}
