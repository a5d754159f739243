package testutil

import (
	"fmt"
	"os"
	"path/filepath"

	lua "github.com/yuin/gopher-lua"
)

// ArgoHealthScript is the Argo CD health check shipped for ClearanceCredential.
func ArgoHealthScript() (string, error) {
	b, err := os.ReadFile(filepath.Join(RepoRoot(), "config", "argocd", "clearancecredential-health.lua")) //nolint:gosec // a fixed file of this repository
	return string(b), err
}

// ArgoHealth runs an Argo CD resource health script against obj (an object
// as JSON decodes it, e.g. unstructured content) the way Argo CD does: obj is
// a global table, the script returns a table with status and message. Only
// the base, table and string libraries are open, a subset of what Argo CD
// grants, so a script passing here does not depend on anything more.
func ArgoHealth(script string, obj map[string]any) (status, message string, err error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return "", "", err
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the script returned %s, not a table", L.Get(-1).Type())
	}
	st, ok := ret.RawGetString("status").(lua.LString)
	if !ok {
		return "", "", fmt.Errorf("the returned table has no string status")
	}
	msg, _ := ret.RawGetString("message").(lua.LString)
	return string(st), string(msg), nil
}

// toLua converts JSON-decoded values as Argo CD does: objects and arrays
// become tables (arrays 1-based), numbers LNumber, null nil.
func toLua(L *lua.LState, v any) lua.LValue {
	switch val := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(val)
	case string:
		return lua.LString(val)
	case int64:
		return lua.LNumber(val)
	case int:
		return lua.LNumber(val)
	case int32:
		return lua.LNumber(val)
	case float64:
		return lua.LNumber(val)
	case map[string]any:
		t := L.NewTable()
		for k, e := range val {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range val {
			t.Append(toLua(L, e))
		}
		return t
	}
	panic(fmt.Sprintf("testutil: no Lua form for %T", v))
}
