package v1alpha1

import "testing"

func TestAddressDataKey(t *testing.T) {
	tests := map[string]string{
		"SecurityTokenServiceBaseAddresses": "securityTokenServiceBaseAddress",
		"DocumentStoreBaseAddresses":        "documentStoreBaseAddress",
		"CADApiAddresses":                   "cadApiAddress",
		"ApiBaseAddresses":                  "apiBaseAddress",
		"APIBaseAddresses":                  "apiBaseAddress",
		"URL":                               "url",
		"already":                           "already",
	}
	for in, want := range tests {
		if got := AddressDataKey(in); got != want {
			t.Errorf("AddressDataKey(%q) = %q, want %q", in, got, want)
		}
	}
}
