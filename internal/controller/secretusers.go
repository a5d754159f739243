package controller

import (
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// secretUsers maps each Secret to the credentials of its namespace that name
// it (as connection or target Secret), for the Secret watch to find whom an
// event concerns. It is kept up to date by the reconciles themselves: every
// spec change brings one. A cache field index would do the same with four
// index sets per credential, several times the memory of one map entry.
type secretUsers struct {
	mu sync.Mutex
	// names is what each credential named when last reconciled: its
	// connection and target Secret names.
	names map[types.NamespacedName][2]string
	// users holds, per Secret, the names of the credentials naming it.
	users map[types.NamespacedName][]string
}

func newSecretUsers() *secretUsers {
	return &secretUsers{names: map[types.NamespacedName][2]string{}, users: map[types.NamespacedName][]string{}}
}

// set records that credential cred names the Secrets connection and target.
func (u *secretUsers) set(cred types.NamespacedName, connection, target string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	names := [2]string{connection, target}
	if old, ok := u.names[cred]; ok {
		if old == names {
			return
		}
		u.removeLocked(cred, old)
	}
	u.names[cred] = names
	for _, name := range names {
		key := types.NamespacedName{Namespace: cred.Namespace, Name: name}
		if !slices.Contains(u.users[key], cred.Name) {
			u.users[key] = append(u.users[key], cred.Name)
		}
	}
}

// forget drops a deleted credential.
func (u *secretUsers) forget(cred types.NamespacedName) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if old, ok := u.names[cred]; ok {
		u.removeLocked(cred, old)
		delete(u.names, cred)
	}
}

func (u *secretUsers) removeLocked(cred types.NamespacedName, names [2]string) {
	for _, name := range names {
		key := types.NamespacedName{Namespace: cred.Namespace, Name: name}
		rest := slices.DeleteFunc(u.users[key], func(n string) bool { return n == cred.Name })
		if len(rest) == 0 {
			delete(u.users, key)
		} else {
			u.users[key] = rest
		}
	}
}

// of returns the credentials naming the Secret.
func (u *secretUsers) of(secret types.NamespacedName) []types.NamespacedName {
	u.mu.Lock()
	defer u.mu.Unlock()
	creds := make([]types.NamespacedName, 0, len(u.users[secret]))
	for _, name := range u.users[secret] {
		creds = append(creds, types.NamespacedName{Namespace: secret.Namespace, Name: name})
	}
	return creds
}
