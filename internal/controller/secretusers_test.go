package controller

import (
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
)

func TestSecretUsers(t *testing.T) {
	g := NewWithT(t)
	nn := func(ns, name string) types.NamespacedName { return types.NamespacedName{Namespace: ns, Name: name} }
	u := newSecretUsers()

	u.set(nn("a", "one"), "conn", "token-one")
	u.set(nn("a", "two"), "conn", "token-two")
	u.set(nn("b", "one"), "conn", "token-one")
	g.Expect(u.of(nn("a", "conn"))).To(ConsistOf(nn("a", "one"), nn("a", "two")))
	g.Expect(u.of(nn("a", "token-one"))).To(ConsistOf(nn("a", "one")))
	g.Expect(u.of(nn("b", "conn"))).To(ConsistOf(nn("b", "one")), "namespaces are apart")
	g.Expect(u.of(nn("a", "unrelated"))).To(BeEmpty())

	// setting the same names again changes nothing
	u.set(nn("a", "one"), "conn", "token-one")
	g.Expect(u.of(nn("a", "conn"))).To(HaveLen(2))

	// a spec change moves the credential
	u.set(nn("a", "one"), "conn-new", "token-one")
	g.Expect(u.of(nn("a", "conn"))).To(ConsistOf(nn("a", "two")))
	g.Expect(u.of(nn("a", "conn-new"))).To(ConsistOf(nn("a", "one")))
	g.Expect(u.of(nn("a", "token-one"))).To(ConsistOf(nn("a", "one")))

	// a credential naming one Secret twice is listed once (the API forbids it;
	// the map must not care)
	u.set(nn("a", "odd"), "same", "same")
	g.Expect(u.of(nn("a", "same"))).To(ConsistOf(nn("a", "odd")))
	u.forget(nn("a", "odd"))
	g.Expect(u.of(nn("a", "same"))).To(BeEmpty())

	// forgetting drops every entry
	u.forget(nn("a", "one"))
	u.forget(nn("a", "two"))
	u.forget(nn("b", "one"))
	u.forget(nn("b", "never-set"))
	g.Expect(u.users).To(BeEmpty())
	g.Expect(u.names).To(BeEmpty())
}
